"""Text-guided self-supervised data (CALM's pre-training): augmented images with textual pseudo-labels.

Augmentations come in CALM's three groups and are the suggest task's own degradations
(aesbench/degradations.py). One sample applies one or two augmentations (from the groups enabled)
at a random severity in [0.4, 1.0], and is either

    single    the augmented image and "The image is blurred and noisy." (several phrasings), or
    pairwise  the original and the augmented image in random order and "The first image is blurrier
              and noisier than the second." (or "... the second image ... than the first").

The same pseudo-labels' words (`describe`: "blurred and noisy"; "clean", "sharp" or "well exposed"
for an image left as it is) are the targets of the alignment stage, in the LLM's embedding space.

Advice texts teach suggesting: a degraded training image and a sentence naming the problem and
its fix, for the six kinds of the suggest protocol. Everything is drawn from a generator the caller
seeds, so a sample is fixed by (seed, stage, epoch, index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..degradations import SUGGEST_KINDS, degrade
from ..errors import AesbenchError


@dataclass(frozen=True)
class Augmentation:
    group: str
    adjectives: tuple[str, ...]  # "The image is ___."
    comparatives: tuple[str, ...]  # "The first image is ___ than the second."


AUGMENTATIONS = {
    "noise": Augmentation("quality", ("noisy", "grainy"), ("noisier", "grainier")),
    "jpeg": Augmentation("quality", ("compressed", "blocky"), ("more compressed", "blockier")),
    "blur": Augmentation("quality", ("blurred", "blurry"), ("blurrier", "less sharp")),
    "pixelate": Augmentation("quality", ("pixelated",), ("more pixelated",)),
    "dark": Augmentation("colour", ("dark", "underexposed"), ("darker", "more underexposed")),
    "bright": Augmentation("colour", ("bright", "overexposed"), ("brighter", "more overexposed")),
    "desaturated": Augmentation("colour", ("desaturated", "washed out"), ("less colourful", "more washed out")),
    "low_contrast": Augmentation("colour", ("flat", "low in contrast"), ("flatter", "lower in contrast")),
    "subject_blur": Augmentation("subject", ("blurred on its subject",), ("blurrier on its subject",)),
    "subject_mask": Augmentation("subject", ("masked over its subject",), ("more hidden in its subject",)),
    "crop": Augmentation("subject", ("badly cropped", "cut off"), ("more tightly cropped", "more cut off")),
}
GROUPS = ("quality", "colour", "subject")
OPPOSED = {frozenset({"dark", "bright"})}  # never applied together

CLEAN = ("clean", "sharp", "well exposed")  # an image left as it is
SINGLE_PROMPT = "What has been done to this image?"
PAIR_PROMPT = "Compare the first image with the second."
SINGLE_FORMS = ("The image is {}.", "This image looks {}.", "It is {}.")
PAIR_FORMS = ("The {} image is {} than the {}.", "Compared with the {2}, the {0} image is {1}.")

ADVICE = {
    "noise": (
        "The image is noisy; reduce the noise with a lower ISO or denoising.",
        "There is too much grain and noise; shoot at a lower ISO.",
        "Remove the noise; the speckles distract from the subject.",
    ),
    "blur": (
        "The image is blurry; hold the camera steady and focus on the subject.",
        "Sharpen the image; it is out of focus and blurred.",
        "Use a faster shutter speed to avoid the blur.",
    ),
    "dark": (
        "The image is too dark; brighten the exposure.",
        "It is underexposed; increase the exposure or add light.",
        "Lift the shadows; the scene is too dark to read.",
    ),
    "bright": (
        "The image is too bright; reduce the exposure.",
        "It is overexposed and the highlights are blown; expose for the highlights.",
        "Lower the brightness; the scene is washed out by light.",
    ),
    "desaturated": (
        "The colours are washed out; boost the saturation.",
        "Add more colour; the image looks dull and desaturated.",
        "Increase the saturation to bring the colours back.",
    ),
    "crop": (
        "The crop cuts off the subject; recompose to include all of it.",
        "Reframe the shot; the subject is cut off at the edge.",
        "Crop more carefully so the subject is not cut off.",
    ),
}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{words[0]} and {words[1]}"


def check_groups(groups) -> None:
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        raise AesbenchError(f"unknown augmentation group {bad[0]!r}; groups: {', '.join(GROUPS)}")


def draw_kinds(rng: np.random.Generator, groups: tuple[str, ...], max_kinds: int = 2) -> list[str]:
    pool = [k for k, a in AUGMENTATIONS.items() if a.group in groups]
    n = 1 if max_kinds < 2 or rng.random() < 0.5 else 2
    while True:
        kinds = [str(k) for k in rng.choice(pool, size=min(n, len(pool)), replace=False)]
        if frozenset(kinds) not in OPPOSED:
            return kinds


def augment(img: Image.Image, kinds: list[str], rng: np.random.Generator) -> Image.Image:
    for kind in kinds:
        img = degrade(img, kind, float(rng.uniform(0.4, 1.0)), rng)
    return img


def describe(kinds: list[str], rng: np.random.Generator) -> str:
    """The augmentations' adjectives ("blurred and noisy"); an image with none is clean."""
    if not kinds:
        return str(rng.choice(CLEAN))
    return _join([str(rng.choice(AUGMENTATIONS[k].adjectives)) for k in kinds])


def single_text(kinds: list[str], rng: np.random.Generator) -> str:
    return str(rng.choice(SINGLE_FORMS)).format(describe(kinds, rng))


def pair_text(kinds: list[str], augmented_first: bool, rng: np.random.Generator) -> str:
    words = _join([str(rng.choice(AUGMENTATIONS[k].comparatives)) for k in kinds])
    a, b = ("first", "second") if augmented_first else ("second", "first")
    return str(rng.choice(PAIR_FORMS)).format(a, words, b)


def advice(kind: str, rng: np.random.Generator) -> str:
    return str(rng.choice(ADVICE[kind]))


def all_texts() -> list[str]:
    """Every word the pseudo-labels and advice can use (for training a tokenizer)."""
    texts = [SINGLE_PROMPT, PAIR_PROMPT, "first second than", *SINGLE_FORMS, *PAIR_FORMS, *CLEAN]
    for a in AUGMENTATIONS.values():
        texts += list(a.adjectives) + list(a.comparatives)
    for kind in SUGGEST_KINDS:
        texts += list(ADVICE[kind])
    return texts
