"""A transparent baseline built on the interpretable measures of `aesbench.measures`.

It gives every task family a floor that needs no weights and whose every output can be traced to a
number: a score from a fixed formula, comments and suggestions from thresholds, and personalization
by ridge regression on the measures.

Derived quantities (m = measure(img), all thresholds set by eye from measures of clean and degraded
photographs):

    relative_sharpness = sharpness − 2·log(1 + 255·contrast)
        the log ratio of Laplacian variance to luminance variance, so darkening or flat light, which
        shrink both, do not read as blur.

    quality z = 1.0 − 5·|mean_luminance − 0.45| − 3·(dark_clip + bright_clip)
                − 2·max(0, 1 − contrast/0.12) − 1·max(0, 1 − colourfulness/30)
                − 0.5·max(0, −2 − relative_sharpness) − 0.1·max(0, noise − 3)
    score = lo + (hi − lo) · 1 / (1 + e^(−z))          for request.score_range = (lo, hi)

Each flaw below is 0 where the attribute is fine and 1 where it is clearly wrong; suggest names the
worst flaw (and a second one also ≥ 1), or a reframing when none reaches FLAW_SHOWN:

    noise        (noise − 6) / 10
    blur         (−3.5 − relative_sharpness) / 1.5
    dark         max((0.30 − mean_luminance) / 0.15, (dark_clip − 0.05) / 0.2)
    bright       max((mean_luminance − 0.62) / 0.15, (bright_clip − 0.05) / 0.15)
    desaturated  min((0.15 − saturation) / 0.1, (20 − colourfulness) / 10)
                 (both must be low: darkening lowers colourfulness, blown highlights lower saturation)
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from aesbench.adapter import Model, Request, register
from aesbench.measures import MEASURE_KEYS, measure

FLAW_SHOWN = 0.5
CACHE_ITEMS = 4096

SUGGESTION_BY_KIND = {
    "noise": "Reduce the noise: shoot at a lower ISO with more light, or apply noise reduction to remove the grain.",
    "blur": "Sharpen the focus: hold the camera steady or use a faster shutter speed so the details are crisp, not blurry.",
    "dark": "Brighten the exposure: the image is underexposed; add light or lift the shadows.",
    "bright": "Reduce the exposure: the image is overexposed and the highlights are blown out; tone it down to recover detail.",
    "desaturated": "Increase the colour saturation so the colours look vivid rather than dull and grey.",
    "crop": "Reframe the shot: the crop cuts the subject; leave more room around it.",
}

# What each flaw sounds like in a critique, completing a sentence about the image.
FLAW_CLAUSE = {
    "dark": "the image is too dark",
    "bright": "the image is overexposed and the highlights are blown",
    "noise": "there is visible noise",
    "blur": "the details are blurred",
    "desaturated": "the colours are dull",
}
FLAT_CONTRAST = 0.08
STRONG_CONTRAST = 0.22
SHARP_DETAIL = -2.0
VIVID_COLOURFULNESS = 45.0


def relative_sharpness(m: dict[str, float]) -> float:
    return m["sharpness"] - 2.0 * float(np.log1p(255.0 * m["contrast"]))


def quality_logit(m: dict[str, float]) -> float:
    """The score formula before squashing; see the module docstring."""
    return (
        1.0
        - 5.0 * abs(m["mean_luminance"] - 0.45)
        - 3.0 * (m["dark_clip"] + m["bright_clip"])
        - 2.0 * max(0.0, 1.0 - m["contrast"] / 0.12)
        - 1.0 * max(0.0, 1.0 - m["colourfulness"] / 30.0)
        - 0.5 * max(0.0, -2.0 - relative_sharpness(m))
        - 0.1 * max(0.0, m["noise"] - 3.0)
    )


def generic_score(m: dict[str, float], score_range: tuple[float, float]) -> float:
    lo, hi = score_range
    return lo + (hi - lo) / (1.0 + float(np.exp(-quality_logit(m))))


def flaws(m: dict[str, float]) -> dict[str, float]:
    """How clearly each correctable attribute is wrong (0 fine, 1 clearly wrong); see the module docstring."""
    return {
        "noise": (m["noise"] - 6.0) / 10.0,
        "blur": (-3.5 - relative_sharpness(m)) / 1.5,
        "dark": max((0.30 - m["mean_luminance"]) / 0.15, (m["dark_clip"] - 0.05) / 0.2),
        "bright": max((m["mean_luminance"] - 0.62) / 0.15, (m["bright_clip"] - 0.05) / 0.15),
        "desaturated": min((0.15 - m["saturation"]) / 0.1, (20.0 - m["colourfulness"]) / 10.0),
    }


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def critique(m: dict[str, float]) -> str:
    """One or two sentences: what is wrong first, then what stands out as good."""
    flaw = flaws(m)
    problems = [FLAW_CLAUSE[kind] for kind in FLAW_CLAUSE if flaw[kind] >= FLAW_SHOWN]
    if m["contrast"] < FLAT_CONTRAST and flaw["dark"] < FLAW_SHOWN:  # darkness alone shrinks contrast
        problems.append("the contrast is flat")
    strengths = []
    if relative_sharpness(m) >= SHARP_DETAIL and flaw["noise"] < 0:
        strengths.append("sharp details")
    if m["contrast"] >= STRONG_CONTRAST:
        strengths.append("strong contrast")
    # Noise and blown highlights inflate colourfulness, so vivid colour counts only without them.
    if (
        m["colourfulness"] >= VIVID_COLOURFULNESS
        and max(flaw["desaturated"], flaw["bright"], flaw["noise"]) < FLAW_SHOWN
    ):
        strengths.append("pleasant, vivid colours")
    well_exposed = flaw["dark"] < 0 and flaw["bright"] < 0
    sentences = []
    if problems:
        sentences.append(_join(problems) + ".")
    if strengths:
        sentences.append(_join(strengths) + ("; well exposed." if well_exposed else "."))
    elif well_exposed and not problems:
        sentences.append("well exposed, with no obvious technical flaw.")
    if not sentences:
        sentences.append("an unremarkable image with no strong technical point either way.")
    return " ".join(s[0].upper() + s[1:] for s in sentences)


def improvement(m: dict[str, float]) -> str:
    """Fix the worst flaw, and a second one when it is also clear; reframe when nothing is clearly wrong."""
    ranked = sorted(flaws(m).items(), key=lambda kv: kv[1], reverse=True)
    if ranked[0][1] < FLAW_SHOWN:
        return SUGGESTION_BY_KIND["crop"]
    fixes = [SUGGESTION_BY_KIND[ranked[0][0]]]
    if ranked[1][1] >= 1.0:
        fixes.append(SUGGESTION_BY_KIND[ranked[1][0]])
    return " ".join(fixes)


class MeasureCache:
    """Measures keyed by image content, least recently used dropped first.

    The PIAA protocol scores the same images once per worker and repeat, so measuring each only once
    is most of the work saved.
    """

    def __init__(self, max_items: int = CACHE_ITEMS):
        self.max_items = max_items
        self._items: dict[tuple, dict[str, float]] = {}

    def __call__(self, img: Image.Image) -> dict[str, float]:
        key = (img.size, img.mode, hashlib.blake2b(img.tobytes(), digest_size=16).digest())
        m = self._items.pop(key, None)
        if m is None:
            m = measure(img)
            if len(self._items) >= self.max_items:
                del self._items[next(iter(self._items))]
        self._items[key] = m
        return m


@register("handcrafted")
class Handcrafted(Model):
    """Score, comment, suggest and personalize from interpretable measures; no weights."""

    capabilities = frozenset({"score", "comment", "suggest", "personalize"})

    def __init__(self, ridge_alpha: float = 1.0):
        self.ridge_alpha = ridge_alpha
        self.measures = MeasureCache()

    def config(self) -> dict:
        return {"ridge_alpha": self.ridge_alpha}

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        return [{"score": generic_score(self.measures(img), request.score_range)} for img in images]

    def comment(self, images: list[Image.Image], request: Request) -> list[str]:
        return [critique(self.measures(img)) for img in images]

    def suggest(self, images: list[Image.Image], request: Request) -> list[str]:
        return [improvement(self.measures(img)) for img in images]

    def personalize(self, images: list[Image.Image], scores: list[float], request: Request) -> Model:
        """Ridge regression from the measures plus the generic score to this person's scores.

        Features are standardised over the support set (a constant feature is left at zero), the
        person's mean is the intercept and alpha = ridge_alpha shrinks every weight alike. A person
        whose support scores are all equal gives no ranking to learn, so the generic model is kept.
        """
        if len(images) != len(scores):
            raise ValueError(f"personalize got {len(images)} images but {len(scores)} scores")
        targets = np.asarray(scores, dtype=np.float64)
        if np.ptp(targets) == 0:
            return self
        features = np.array([self._features(img, request.score_range) for img in images])
        mean = features.mean(axis=0)
        std = features.std(axis=0)
        std[std == 0] = 1.0
        x = (features - mean) / std
        weights = np.linalg.solve(x.T @ x + self.ridge_alpha * np.eye(x.shape[1]), x.T @ (targets - targets.mean()))
        return PersonalizedHandcrafted(self, request.score_range, mean, std, weights, float(targets.mean()))

    def _features(self, img: Image.Image, score_range: tuple[float, float]) -> np.ndarray:
        m = self.measures(img)
        return np.array([m[k] for k in MEASURE_KEYS] + [generic_score(m, score_range)])


class PersonalizedHandcrafted(Model):
    """The ridge fit of `Handcrafted.personalize`; scores on the person's own scale.

    The generic-score feature is computed on the score range seen at fitting time, so the fit means
    the same thing whatever range a later request names. Not registered: it exists only in memory.
    """

    name = "handcrafted-personalized"
    capabilities = frozenset({"score"})

    def __init__(self, generic: Handcrafted, score_range, mean, std, weights, intercept):
        self.generic = generic
        self.score_range = tuple(score_range)
        self.mean, self.std, self.weights, self.intercept = mean, std, weights, intercept

    def describe(self) -> dict:
        names = list(MEASURE_KEYS) + ["generic_score"]
        return {
            "name": self.name,
            "config": self.generic.config(),
            "intercept": self.intercept,
            "weights": dict(zip(names, self.weights.round(6).tolist())),
        }

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        features = np.array([self.generic._features(img, self.score_range) for img in images]).reshape(
            len(images), len(self.weights)
        )
        predictions = self.intercept + ((features - self.mean) / self.std) @ self.weights
        return [{"score": float(p)} for p in predictions]
