"""The CLIP baselines (laion-aesthetic, clip-iqa) on a tiny random CLIP built offline.

The checkpoint, tokenizer and image processor are saved with save_pretrained, so the adapters go
through the same loading code as a real checkpoint folder. Random weights mean the scores say nothing
about aesthetics; the tests check the arithmetic against a hand computation, batching, head
detection, and that every broken input is one line.
"""

from __future__ import annotations

import math
import string

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from aesbench.adapter import Request, load_model  # noqa: E402
from aesbench.provenance import sha256_file  # noqa: E402
from aesbench.errors import AesbenchError  # noqa: E402
from aesbench.runs import PREDICTIONS, evaluate  # noqa: E402
from aesbench.task import load_task  # noqa: E402
from conftest import natural_image, prediction_records  # noqa: E402

EMBED_DIM = 16
TWO_PAIRS = [["Good photo.", "Bad photo."], ["A beautiful picture.", "An ugly picture."]]


def tiny_tokenizer():
    """Character-level BPE (no merges): every lower-case word and the prompts' punctuation is covered."""
    symbols = list(string.ascii_lowercase) + list(".,!'")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for s in symbols:
        vocab.setdefault(s, len(vocab))
        vocab.setdefault(s + "</w>", len(vocab))
    return transformers.CLIPTokenizer(vocab=vocab, merges=[]), len(vocab)


def mlp_state(dim: int, seed: int = 1) -> dict:
    """The improved predictor's layout and key names, centred near 5.5 so scores land inside 1-10."""
    torch.manual_seed(seed)
    nn = torch.nn
    layers = nn.Sequential(
        nn.Linear(dim, 1024),
        nn.Dropout(0.2),
        nn.Linear(1024, 128),
        nn.Dropout(0.2),
        nn.Linear(128, 64),
        nn.Dropout(0.1),
        nn.Linear(64, 16),
        nn.Linear(16, 1),
    )
    with torch.no_grad():
        layers[7].weight.mul_(20.0)
        layers[7].bias.fill_(5.5)
    return {f"layers.{k}": v.clone() for k, v in layers.state_dict().items()}


def linear_state(dim: int, seed: int = 2) -> dict:
    torch.manual_seed(seed)
    return {"weight": torch.randn(1, dim), "bias": torch.tensor([5.5])}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny CLIP folder and LAION heads as .pth and .safetensors."""
    root = tmp_path_factory.mktemp("clip")
    tokenizer, vocab_size = tiny_tokenizer()
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
        ),
        projection_dim=EMBED_DIM,
    )
    torch.manual_seed(0)
    clip_dir = root / "tiny-clip"
    transformers.CLIPModel(config).save_pretrained(clip_dir)
    tokenizer.save_pretrained(clip_dir)
    transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(clip_dir)
    mlp, linear = mlp_state(EMBED_DIM), linear_state(EMBED_DIM)
    torch.save(mlp, root / "mlp.pth")
    safetensors_torch.save_file(mlp, root / "mlp.safetensors")
    torch.save(linear, root / "linear.pth")
    torch.save(mlp_state(EMBED_DIM + 8), root / "wrong-dim.pth")
    return {"root": root, "clip": clip_dir, "mlp": mlp, "linear": linear}


@pytest.fixture(scope="module")
def reference(files):
    """The checkpoint loaded plainly, for hand computations independent of the adapters."""
    return (
        transformers.CLIPModel.from_pretrained(files["clip"]).eval(),
        transformers.CLIPImageProcessorPil.from_pretrained(files["clip"]),
        transformers.AutoTokenizer.from_pretrained(files["clip"]),
    )


@pytest.fixture(scope="module")
def images():
    return [natural_image(seed, size) for seed, size in enumerate([(96, 64), (64, 96), (80, 80), (120, 50), (40, 70)])]


def laion(files, head_file="mlp.pth", **options):
    return load_model(
        "laion-aesthetic", {"clip_path": str(files["clip"]), "head_path": str(files["root"] / head_file), **options}
    )


def clip_iqa(files, **options):
    return load_model("clip-iqa", {"path": str(files["clip"]), **options})


def hand_embedding(reference, img):
    model, processor, _ = reference
    with torch.no_grad():
        pixels = processor(images=[img], return_tensors="pt")["pixel_values"]
        emb = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)[0]
    return emb / emb.norm()


def hand_mlp(state, x):
    """The head without dropout (eval) is a chain of affine maps, no activations."""
    for i in (0, 2, 4, 6, 7):
        x = state[f"layers.{i}.weight"] @ x + state[f"layers.{i}.bias"]
    return float(x)


def tiny_ava_score():
    """tiny-ava-score with a short bootstrap: the adapters are under test here, not the CIs (1000 cost ~8 s)."""
    task = load_task("tiny-ava-score")
    task.protocol.bootstrap = {**task.protocol.bootstrap, "resamples": 20}
    return task


@pytest.mark.parametrize("name", ["laion-aesthetic", "clip-iqa"])
def test_end_to_end_on_tiny_ava(files, tmp_path, name):
    model = laion(files) if name == "laion-aesthetic" else clip_iqa(files)
    results = evaluate(tiny_ava_score(), tmp_path / "run", model=model, limit=10, batch_size=4)
    scores = [line["score"] for line in prediction_records(tmp_path / "run" / PREDICTIONS)]
    assert results["n"] == 10 and len(scores) == 10
    assert all(math.isfinite(s) and 1.0 <= s <= 10.0 for s in scores)
    described = results["provenance"]["model"]
    assert described["clip"]["weights_sha256"] == {
        "model.safetensors": sha256_file(files["clip"] / "model.safetensors")
    }
    assert described["clip"]["image_size"] == 32 and described["clip"]["preprocessing"]["resample"] == "bicubic"
    if name == "laion-aesthetic":
        head_file = files["root"] / "mlp.pth"
        assert described["head"] == {"path": str(head_file), "sha256": sha256_file(head_file), "kind": "mlp"}
    else:
        assert described["prompts"] == [["Good photo.", "Bad photo."]]


def test_laion_equals_hand_computation(files, reference, images):
    img = images[0]
    expected = hand_mlp(files["mlp"], hand_embedding(reference, img))
    assert laion(files).score([img], Request())[0]["score"] == pytest.approx(expected, abs=1e-5)
    on_unit = laion(files).score([img], Request(score_range=(0.0, 1.0)))[0]["score"]
    assert on_unit == pytest.approx((expected - 1.0) / 9.0, abs=1e-5)  # the documented map of 1-10


def test_head_kind_is_detected_from_the_keys(files, reference, images):
    mlp, mlp_safetensors, linear = laion(files), laion(files, "mlp.safetensors"), laion(files, "linear.pth")
    assert [m.describe()["head"]["kind"] for m in (mlp, mlp_safetensors, linear)] == ["mlp", "mlp", "linear"]
    assert mlp_safetensors.score(images, Request()) == mlp.score(images, Request())
    emb = hand_embedding(reference, images[1])
    expected = float(files["linear"]["weight"][0] @ emb + files["linear"]["bias"][0])
    assert linear.score([images[1]], Request())[0]["score"] == pytest.approx(expected, abs=1e-5)
    with pytest.raises(AesbenchError, match="holds the mlp head"):
        laion(files, head="linear")


@pytest.mark.parametrize("prompts", [None, TWO_PAIRS])
def test_clip_iqa_equals_hand_computation(files, reference, images, prompts):
    model, _, tokenizer = reference
    pairs = prompts or [["Good photo.", "Bad photo."]]
    img = hand_embedding(reference, images[2])
    p_positive = []
    with torch.no_grad():
        for pair in pairs:
            sims = []
            for text in pair:  # one prompt at a time: no padding at all
                ids = tokenizer(text, return_tensors="pt")["input_ids"]
                t = model.text_projection(model.text_model(input_ids=ids).pooler_output)[0]
                sims.append(float(img @ t / t.norm()))
            scale = float(model.logit_scale.exp())
            p_positive.append(1.0 / (1.0 + math.exp(-scale * (sims[0] - sims[1]))))  # 2-way softmax
    expected = sum(p_positive) / len(p_positive)
    got = clip_iqa(files, prompts=prompts).score([images[2]], Request(score_range=(0.0, 1.0)))[0]["score"]
    assert got == pytest.approx(expected, abs=1e-5)
    on_ten = clip_iqa(files, prompts=prompts).score([images[2]], Request())[0]["score"]
    assert on_ten == pytest.approx(1.0 + 9.0 * expected, abs=1e-4)


@pytest.mark.parametrize(
    "make", [laion, lambda files: laion(files, "linear.pth"), clip_iqa], ids=["mlp", "linear", "clip-iqa"]
)
def test_batch_size_does_not_change_scores(files, images, make):
    model = make(files)
    one_by_one = [model.score([img], Request())[0]["score"] for img in images]
    batched = [out["score"] for chunk in (images[:4], images[4:]) for out in model.score(chunk, Request())]
    assert batched == pytest.approx(one_by_one, abs=1e-5)


def test_heads_on_one_clip_share_the_feature_cache(files, images, tmp_path):
    """The LAION heads and CLIP-IQA read the same cached embeddings and score as without the cache."""
    plain = {name: make(files).score(images, Request()) for name, make in (("mlp", laion), ("clip-iqa", clip_iqa))}
    first, second, third = laion(files), laion(files, "linear.pth"), clip_iqa(files)
    for model in (first, second, third):
        assert model.use_feature_cache(tmp_path)
    assert first.score(images, Request()) == plain["mlp"]
    assert third.score(images, Request()) == plain["clip-iqa"]
    second.score(images, Request())
    assert first.feature_cache.folder == second.feature_cache.folder == third.feature_cache.folder
    assert (first.feature_cache.misses, second.feature_cache.hits, third.feature_cache.hits) == (len(images),) * 3
    float16 = laion(files, dtype="float16")
    float16.use_feature_cache(tmp_path)
    assert float16.feature_cache.folder != first.feature_cache.folder  # another dtype: other numbers, other entries


def one_line_error(make) -> str:
    with pytest.raises(AesbenchError) as caught:
        make()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_broken_inputs_are_one_line(files, tmp_path):
    assert "is not a folder" in one_line_error(
        lambda: load_model(
            "laion-aesthetic", {"clip_path": str(tmp_path / "nope"), "head_path": str(files["root"] / "mlp.pth")}
        )
    )
    assert "is not a folder" in one_line_error(lambda: load_model("clip-iqa", {"path": str(tmp_path / "nope")}))
    assert "not found" in one_line_error(lambda: laion(files, "missing.pth"))
    assert "takes 24-dim embeddings but the CLIP gives 16" in one_line_error(lambda: laion(files, "wrong-dim.pth"))
    (files["root"] / "junk.pth").write_bytes(b"not a checkpoint")
    assert "cannot read head file" in one_line_error(lambda: laion(files, "junk.pth"))
    assert "lacks config.json" in one_line_error(lambda: load_model("clip-iqa", {"path": str(tmp_path)}))
    assert "pairs" in one_line_error(lambda: clip_iqa(files, prompts=["only one"]))


def relu_mlp_state(dim: int, seed: int = 3) -> dict:
    """avaclipmlp_inf_wds-relu.py's MLP (the `ava+logos-l14-reluMSE.pth` layout): keys layers.{0,3,6,9,11}."""
    torch.manual_seed(seed)
    nn = torch.nn
    layers = nn.Sequential(
        nn.Linear(dim, 1024),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(1024, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(64, 16),
        nn.ReLU(),
        nn.Linear(16, 1),
    )
    with torch.no_grad():
        layers[11].weight.mul_(20.0)
        layers[11].bias.fill_(5.5)
    return {f"layers.{k}": v.clone() for k, v in layers.state_dict().items()}


def test_laion_relu_mlp_head_equals_hand_computation(files, reference, images, tmp_path):
    state = relu_mlp_state(EMBED_DIM)
    assert {k.rsplit(".", 1)[0] for k in state} == {f"layers.{i}" for i in (0, 3, 6, 9, 11)}
    torch.save(state, tmp_path / "ava+logos-l14-reluMSE.pth")
    model = load_model(
        "laion-aesthetic", {"clip_path": str(files["clip"]), "head_path": str(tmp_path / "ava+logos-l14-reluMSE.pth")}
    )
    assert model.describe()["head"]["kind"] == "relu-mlp"
    for img in images[:3]:
        x = hand_embedding(reference, img)
        linear_chain = x
        for i in (0, 3, 6, 9):  # eval: dropout is the identity; a ReLU after each of these four
            x = torch.relu(state[f"layers.{i}.weight"] @ x + state[f"layers.{i}.bias"])
            linear_chain = state[f"layers.{i}.weight"] @ linear_chain + state[f"layers.{i}.bias"]
        expected = float(state["layers.11.weight"] @ x + state["layers.11.bias"])
        without_relu = float(state["layers.11.weight"] @ linear_chain + state["layers.11.bias"])
        got = model.score([img], Request())[0]["score"]
        assert got == pytest.approx(expected, abs=1e-5) and abs(got - without_relu) > 1e-3
    with pytest.raises(AesbenchError, match="holds the relu-mlp head"):
        load_model(
            "laion-aesthetic",
            {"clip_path": str(files["clip"]), "head": "mlp", "head_path": str(tmp_path / "ava+logos-l14-reluMSE.pth")},
        )
