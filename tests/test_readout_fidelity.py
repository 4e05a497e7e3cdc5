"""Readouts as the original code computes them, on the tiny LLaVA checkpoints of test_mllm_readout.py (built from
configs, saved and loaded back), each compared with a hand computation written from the original file:

- padding: Q-Align's `q_align/evaluate/scorer.py` and `iaa_eval.py` and ArtQuant's `src/evaluate/iqa_eval.py` pad
  with expand2square(img, tuple(int(x*255) for x in image_processor.image_mean)): a fixed colour, not the image's;
- text without a chat template: scorer.py's "USER: {q}\\n<|image|>\\nASSISTANT: {prefix}", iaa_eval.py's
  "USER: <|image|>{q} ASSISTANT: {prefix}" (conv mplug_owl2, TWO_NO_SYS), ArtQuant's "USER: {q}\\n<|image|> ASSISTANT:";
- precision=original: scorer.py runs the model in float16 and takes softmax @ weights in float16; ArtQuant's
  iqa_eval.py keeps float16 logits and eval.py takes the softmax in numpy float64; ArtiMuse runs bfloat16 with the
  softmax and the expectation in bfloat16.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import natural_image
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from aesbench.baselines.mllm_readout import QALIGN_PREFIX, QALIGN_PROMPT  # noqa: E402
from aesbench.baselines.token_score import SCORE_TOKENS  # noqa: E402
from test_mllm_readout import ARTQUANT_PREFIX, ARTQUANT_PROMPT, build_checkpoint  # noqa: E402

from aesbench.adapter import Request, load_model  # noqa: E402
from aesbench.errors import AesbenchError  # noqa: E402
from aesbench.models.readout import LEVEL_WORDS  # noqa: E402


def expand2square(pil_img, background_color):
    """Q-Align scorer.py's expand2square, as written there."""
    width, height = pil_img.size
    if width == height:
        return pil_img
    elif width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    else:
        result = Image.new(pil_img.mode, (height, height), background_color)
        result.paste(pil_img, ((height - width) // 2, 0))
        return result


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return str(build_checkpoint(tmp_path_factory.mktemp("plain"), "plain"))


def forward_logits(model, text, image, dtype):
    """The original's forward: processor pixels cast to the model dtype (`.half()`), logits at the last position."""
    inputs = model.processor(images=[image], text=[text], return_tensors="pt")
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    with torch.no_grad():
        return model.model(**inputs).logits[0, -1]


def level_ids(model, words=LEVEL_WORDS):
    return model.processor.tokenizer.convert_tokens_to_ids(list(words))


@pytest.mark.parametrize("name", ["qalign", "artquant-readout"])
def test_padding_is_the_processors_mean_colour(plain, name):
    model = load_model(name, {"path": plain})
    mean = model.processor.image_processor.image_mean
    assert model.pad_colour == tuple(int(x * 255) for x in mean) == (122, 116, 104)
    assert "(122, 116, 104)" in model.describe()["preprocessing"]["pad_square"]
    request = Request(score_range=(1.0, 5.0))
    for n, size in enumerate([(80, 48), (40, 90), (17, 9)]):
        img = natural_image(n, size)
        by_hand = expand2square(img, tuple(int(x * 255) for x in mean))
        assert model.score([img], request) == model.score([by_hand], request)
        own_mean = expand2square(img, tuple(round(c) for c in np.asarray(img, float).reshape(-1, 3).mean(0)))
        assert model.score([own_mean], request) != model.score([img], request)  # the old fill scores otherwise


def test_plain_layouts_are_the_original_texts(plain):
    assert (
        load_model("qalign", {"path": plain}).score_text
        == f"USER: {QALIGN_PROMPT}\n<image>\nASSISTANT: {QALIGN_PREFIX}"
    )
    iaa = load_model("qalign", {"path": plain, "template": "qalign-iaa"})
    assert iaa.score_text == f"USER: <image>{QALIGN_PROMPT} ASSISTANT: {QALIGN_PREFIX}"
    artquant = load_model("artquant-readout", {"path": plain})
    assert artquant.score_text == f"USER: {ARTQUANT_PROMPT}\n<image> ASSISTANT: {ARTQUANT_PREFIX}"
    generic = load_model("mllm-readout", {"path": plain})
    assert generic.score_text == f"USER: <image>\n{QALIGN_PROMPT} ASSISTANT: {QALIGN_PREFIX}"
    assert artquant.describe()["template"].startswith("plain artquant: ")


def test_qalign_original_precision_is_scorer_py(plain):
    model = load_model("qalign", {"path": plain, "precision": "original"})
    assert model.model.dtype == torch.float16 and model.describe()["config"]["readout_dtype"] == "float16"
    weights = torch.Tensor([1, 0.75, 0.5, 0.25, 0.0]).half()
    for n, size in enumerate([(80, 48), (48, 48)]):
        img = natural_image(10 + n, size)
        logits = forward_logits(model, model.score_text, expand2square(img, (122, 116, 104)), torch.float16)
        expected = torch.softmax(logits[level_ids(model)], -1) @ weights  # float16, as scorer.py
        assert expected.dtype == torch.float16
        assert model.score([img], Request(score_range=(0.0, 1.0)))[0]["score"] == float(expected)


def test_artquant_original_precision_is_float16_logits_then_numpy(plain):
    model = load_model("artquant-readout", {"path": plain, "precision": "original"})
    img = natural_image(12, (60, 90))
    logits = forward_logits(model, model.score_text, expand2square(img, (122, 116, 104)), torch.float16)
    logprobs = np.array([logits[i].item() for i in level_ids(model)])  # .item() of float16 logits, as iqa_eval.py
    probs = np.exp(logprobs) / np.sum(np.exp(logprobs))  # eval.py's cal_score
    expected = np.inner(probs, np.array([10.0, 7.5, 5.0, 3.5, 1.0]))
    got = model.score([img], Request(score_range=(1.0, 10.0)))[0]["score"]
    assert got == pytest.approx(float(expected), abs=1e-12)


def test_artimuse_original_precision_is_bfloat16_with_its_ties(plain):
    model = load_model("artimuse-readout", {"path": plain, "resize": 48, "precision": "original"})
    assert model.model.dtype == torch.bfloat16
    scores = []
    for n in range(4):
        img = natural_image(20 + n, (70, 40))
        logits = forward_logits(model, model.score_text, img.resize((48, 48), Image.BICUBIC), torch.bfloat16)
        ids = level_ids(model, SCORE_TOKENS)
        expected = logits[ids].softmax(-1) @ torch.arange(101, dtype=torch.bfloat16)  # all in bfloat16
        got = model.score([img], Request(score_range=(0.0, 100.0)))[0]["score"]
        assert got == float(expected)
        assert float(torch.tensor(got).to(torch.bfloat16)) == got  # a bfloat16 value: steps of 0.125-0.5
        scores.append(got)
    float32 = load_model("artimuse-readout", {"path": plain, "resize": 48})
    assert float32.model.dtype == torch.float32 and float32.describe()["config"]["precision"] == "float32"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"precision": "half"}, "precision must be one of float32, original"),
        ({"precision": "original", "dtype": "float32"}, "precision=original runs float16"),
        ({"template": "vicuna"}, "template must be one of llava, qalign, qalign-iaa, artquant"),
    ],
)
def test_bad_options_are_one_line(plain, options, message):
    with pytest.raises(AesbenchError, match=message) as e:
        load_model("qalign", {"path": plain, **options})
    assert "\n" not in str(e.value)
    with pytest.raises(AesbenchError, match="no original code"):
        load_model("mllm-readout", {"path": plain, "precision": "original"})
