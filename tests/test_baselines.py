"""The measures and the weight-free baselines on synthetic natural-looking images.

Images are synthesised (1/f colour fields with a few sharp-edged shapes) so the tests need nothing
outside the repository; their measures sit where clean photographs' do, so a degradation has to
move the handcrafted model the way it moves it on real photographs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from scipy.stats import spearmanr

from aesbench.adapter import Request, load_model

# Imported by module so every model used through load_model is registered, whatever else the
# test session imported first (registry() discovers baselines only while the registry is empty).
from aesbench.baselines import constant, random_baseline  # noqa: F401
from aesbench.baselines.handcrafted import SUGGESTION_BY_KIND, Handcrafted
from aesbench.degradations import SUGGEST_KINDS, degrade, item_rng
from aesbench.measures import MEASURE_KEYS, measure

REQUEST = Request()


def natural_image(seed: int, width: int = 384, height: int = 256) -> Image.Image:
    """A 1/f^1.4 colour field, like natural scenes' spectra, with three flat-coloured ellipses for edges."""
    rng = np.random.default_rng(seed)
    freq = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :])
    freq[0, 0] = 1.0

    def field():
        spectrum = (rng.normal(size=freq.shape) + 1j * rng.normal(size=freq.shape)) / freq**1.4
        spectrum[0, 0] = 0.0
        x = np.fft.ifft2(spectrum).real
        return (x - x.mean()) / x.std()

    rgb = 0.45 + 0.12 * field()[..., None] + 0.1 * np.stack([field(), field(), field()], axis=-1)
    rows, cols = np.mgrid[:height, :width]
    for _ in range(3):
        cy, cx = rng.uniform(0.2, 0.8, 2) * (height, width)
        ry, rx = rng.uniform(0.08, 0.25, 2) * (height, width)
        inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
        rgb[inside] = rng.uniform(0.15, 0.85, 3) + 0.3 * (rgb[inside] - 0.45)
    return Image.fromarray(np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def images():
    return [natural_image(seed) for seed in range(8)]


def score_of(model, img, request=REQUEST):
    return model.score([img], request)[0]["score"]


# --- measures ---------------------------------------------------------------------------------


def test_measures_have_fixed_keys_and_sensible_values(images):
    m = measure(images[0])
    assert tuple(m) == MEASURE_KEYS
    assert 0.3 < m["mean_luminance"] < 0.6
    assert 0.0 <= m["dark_clip"] < 0.05 and 0.0 <= m["bright_clip"] < 0.05
    assert m["colourfulness"] > 30 and m["saturation"] > 0.2
    assert m["noise"] < 6


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (384, 256)])
def test_measures_finite_on_grey_and_tiny_images(images, size):
    grey = images[0].resize(size).convert("L").convert("RGB")
    m = measure(grey)
    assert all(math.isfinite(v) for v in m.values())
    assert m["saturation"] == 0.0 and m["colourfulness"] == pytest.approx(0.0, abs=1e-9)


def test_measures_follow_their_attribute(images):
    img = images[1]
    base = measure(img)
    assert measure(ImageEnhance.Brightness(img).enhance(0.4))["mean_luminance"] < 0.5 * base["mean_luminance"]
    assert measure(degrade(img, "gaussian_noise", 0.5, item_rng(0, "n")))["noise"] > 3 * base["noise"]
    assert measure(degrade(img, "defocus_blur", 0.5, item_rng(0, "b")))["sharpness"] < base["sharpness"] - 1
    assert measure(degrade(img, "low_contrast", 0.8, item_rng(0, "c")))["contrast"] < 0.6 * base["contrast"]
    assert measure(degrade(img, "bright", 1.0, item_rng(0, "br")))["bright_clip"] > 0.1


def test_large_images_are_measured_downscaled(images):
    big = images[2].resize((1536, 1024), Image.BILINEAR)
    assert measure(big)["mean_luminance"] == pytest.approx(measure(images[2])["mean_luminance"], abs=0.01)


# --- handcrafted --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dark", "bright", "blur", "gaussian_noise", "salt_pepper_noise", "desaturated"])
def test_handcrafted_score_drops_under_degradation(images, kind):
    model = Handcrafted()
    for seed, img in enumerate(images):
        degraded = degrade(img, kind, 0.9, item_rng(seed, kind))
        assert score_of(model, degraded) < score_of(model, img) - 0.5, (kind, seed)


def test_handcrafted_score_stays_in_range(images):
    model = Handcrafted()
    request = Request(score_range=(0.0, 1.0))
    worst = degrade(degrade(images[0], "dark", 1.0, item_rng(0, "d")), "noise", 1.0, item_rng(0, "n"))
    for img in (images[0], worst, Image.new("RGB", (1, 1))):
        assert 0.0 < score_of(model, img, request) < 1.0


@pytest.mark.parametrize("kind", SUGGEST_KINDS)
def test_handcrafted_suggestion_addresses_the_degradation(images, kind):
    model = Handcrafted()
    degraded = [degrade(img, kind, 0.9, item_rng(seed, kind)) for seed, img in enumerate(images)]
    hits = sum(SUGGESTION_BY_KIND[kind] in s for s in model.suggest(degraded, REQUEST))
    assert hits >= 6, f"{kind}: {hits}/8"


def test_darkened_image_gets_told_to_brighten(images):
    dark = ImageEnhance.Brightness(images[3]).enhance(0.25)
    (suggestion,) = Handcrafted().suggest([dark], REQUEST)
    (comment,) = Handcrafted().comment([dark], REQUEST)
    assert "brighten" in suggestion.lower()
    assert "too dark" in comment


def test_handcrafted_comment_is_deterministic_and_names_strengths(images):
    comments = Handcrafted().comment(images[:3], REQUEST)
    assert comments == Handcrafted().comment(images[:3], REQUEST)
    assert all("vivid colours" in c for c in comments)
    grey = images[0].convert("L").convert("RGB")
    assert "colours are dull" in Handcrafted().comment([grey], REQUEST)[0]


def test_handcrafted_caches_by_content(images):
    model = Handcrafted()
    model.score([images[0], images[0].copy(), images[1]], REQUEST)
    assert len(model.measures._items) == 2


def test_measure_cache_is_bounded(images):
    model = Handcrafted()
    model.measures.max_items = 3
    model.score(images[:5], REQUEST)
    assert len(model.measures._items) == 3


def luminance_spread(seed: int) -> Image.Image:
    factor = np.random.default_rng(1000 + seed).uniform(0.35, 1.6)
    return ImageEnhance.Brightness(natural_image(100 + seed)).enhance(factor)


def test_personalize_learns_a_person_who_likes_bright_images():
    support = [luminance_spread(i) for i in range(10)]
    fresh = [luminance_spread(i) for i in range(10, 40)]
    likes_bright = [measure(img)["mean_luminance"] for img in support]
    personal = Handcrafted().personalize(support, likes_bright, REQUEST)
    assert personal.capabilities == {"score"}
    predicted = [r["score"] for r in personal.score(fresh, REQUEST)]
    truth = [measure(img)["mean_luminance"] for img in fresh]
    assert spearmanr(predicted, truth)[0] > 0.8
    assert set(personal.describe()["weights"]) == set(MEASURE_KEYS) | {"generic_score"}


def test_personalize_handles_constant_features_and_constant_scores(images):
    greys = [
        ImageEnhance.Brightness(img.convert("L").convert("RGB")).enhance(0.5 + 0.1 * i) for i, img in enumerate(images)
    ]
    model = Handcrafted()
    personal = model.personalize(greys, list(range(len(greys))), REQUEST)
    assert all(math.isfinite(r["score"]) for r in personal.score(images, REQUEST))
    assert model.personalize(greys, [3.0] * len(greys), REQUEST) is model
    with pytest.raises(ValueError):
        model.personalize(greys, [1.0, 2.0], REQUEST)


# --- constant and random ----------------------------------------------------------------------


def test_constant_scores_the_middle_and_round_trips(images, tmp_path):
    model = load_model("constant")
    assert [r["score"] for r in model.score(images[:2], Request(score_range=(1.0, 5.0)))] == [3.0, 3.0]
    assert model.personalize(images[:2], [1.0, 2.0], REQUEST) is model
    assert len(set(model.comment(images[:3], REQUEST))) == 1

    load_model("constant", {"value": 4.5}).save_pretrained(tmp_path / "c")
    restored = load_model(str(tmp_path / "c"))
    assert restored.name == "constant" and restored.config() == {"value": 4.5}
    assert restored.score(images[:1], REQUEST) == [{"score": 4.5}]


def test_handcrafted_round_trips(tmp_path):
    Handcrafted(ridge_alpha=3.0).save_pretrained(tmp_path / "h")
    assert load_model(str(tmp_path / "h")).describe() == {"name": "handcrafted", "config": {"ridge_alpha": 3.0}}


def test_random_is_deterministic_per_seed(images):
    def run(seed):
        model = load_model("random", seed=seed)
        return model.score(images, REQUEST), model.comment(images, REQUEST), model.suggest(images, REQUEST)

    assert run(7) == run(7)
    assert run(7)[0] != run(8)[0]


def test_random_score_is_the_distribution_mean(images):
    for result in load_model("random").score(images, Request(score_range=(0.0, 9.0))):
        distribution = np.array(result["distribution"])
        assert len(distribution) == 10 and distribution.sum() == pytest.approx(1.0)
        assert result["score"] == pytest.approx(distribution @ np.arange(10))


def test_random_suggestions_cover_the_six_kinds(images):
    suggestions = set(load_model("random").suggest(images * 20, REQUEST))
    assert suggestions == set(SUGGESTION_BY_KIND.values())


def test_random_personalize_gives_a_new_seeded_model(images):
    model = load_model("random", seed=3)
    first = model.personalize(images[:2], [1.0, 2.0], REQUEST)
    again = load_model("random", seed=3).personalize(images[:2], [1.0, 2.0], REQUEST)
    assert first is not model and first.config() == again.config()
    assert first.score(images, REQUEST) == again.score(images, REQUEST)
