"""Deterministic inputs for the benchmark and the equality tests: a synthetic critique corpus and large JPEGs.

The critiques are built from clause templates over a few hundred words, so n-grams, lengths,
punctuation and METEOR's stem, synonym and paraphrase matches vary from image to image the way
real photo critiques do; a fixed share of candidates are edge cases (empty, exact copies of a
reference, punctuation only, METEOR's ||| separator, accents).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SUBJECTS = [
    "the photo",
    "this image",
    "the shot",
    "the picture",
    "the composition",
    "the portrait",
    "the landscape",
    "the subject",
    "the background",
    "the foreground",
    "the sky",
    "the model",
    "the flower",
    "the building",
    "the street scene",
    "the colours",
    "the colors",
    "the lighting",
    "the light",
    "the shadows",
    "the edit",
    "the framing",
    "the crop",
    "the texture",
    "the details",
    "the horizon",
    "the reflection",
    "the eyes",
]
ADJECTIVES = [
    "sharp",
    "soft",
    "blurry",
    "crisp",
    "dark",
    "bright",
    "overexposed",
    "underexposed",
    "dull",
    "vivid",
    "lovely",
    "beautiful",
    "gorgeous",
    "stunning",
    "boring",
    "flat",
    "noisy",
    "grainy",
    "clean",
    "harsh",
    "warm",
    "cold",
    "moody",
    "busy",
    "cluttered",
    "simple",
    "balanced",
    "tilted",
    "striking",
    "pleasing",
    "saturated",
    "washed out",
    "muddy",
    "punchy",
    "delicate",
    "dramatic",
    "calm",
    "awkward",
    "nice",
    "great",
]
ADVERBS = ["very", "a bit", "slightly", "really", "too", "quite", "so", "somewhat", "extremely", "rather", "nicely"]
NOUNS = [
    "composition",
    "focus",
    "depth of field",
    "exposure",
    "contrast",
    "colour balance",
    "color palette",
    "lighting",
    "white balance",
    "bokeh",
    "framing",
    "perspective",
    "symmetry",
    "leading lines",
    "texture",
    "detail",
    "tones",
    "highlights",
    "shadows",
    "noise",
    "grain",
    "saturation",
    "crop",
    "angle",
    "timing",
    "mood",
    "subject placement",
    "negative space",
    "rule of thirds",
    "processing",
    "vignette",
    "sharpness",
]
VERBS = ["like", "love", "enjoy", "appreciate", "admire", "dislike", "miss", "notice", "see", "prefer"]
FIXES = [
    "crop tighter",
    "lower the ISO",
    "use a tripod",
    "shoot earlier in the day",
    "fill the frame",
    "open up the shadows",
    "pull back the highlights",
    "straighten the horizon",
    "watch the background",
    "get closer",
    "try a lower angle",
    "use a faster shutter",
    "add some contrast",
    "tone down the saturation",
    "focus on the eyes",
    "wait for better light",
    "remove the distraction on the left",
    "simplify the scene",
]
TEMPLATES = [
    "{S} is {A} {adj}.",
    "{S} is {adj}.",
    "I {V} the {N}.",
    "I {V} the {N} and the {N2}.",
    "{S} looks {adj} and {adj2}.",
    "Great {N}, but {S} is {A} {adj}.",
    "The {N} is {adj}; {S} is {adj2}.",
    "You should {F}.",
    "Next time, {F}.",
    "Nice {N}! {S} is {adj}.",
    "{S} feels {A} {adj} -- maybe {F}?",
    "Well done... the {N} really works.",
    "Not sure about the {N}: {S} is {adj}.",
    "The {N} (and {N2}) could be better.",
    "{adj} {N}, {adj2} {N2}.",
    "Too {adj} for my taste.",
    "{S}'s {N} is {A} {adj}.",
    "Love it!!!",
    "Meh.",
    "What a {adj} {N}.",
]
ODD_CANDIDATES = [
    "",
    "!!! ... ???",
    "a ||| b |||",
    "Café crème, très jolie — naïve façade.",
    "  spaced   out   words  ",
    "ALL CAPS SHOUTING ABOUT THE EXPOSURE",
    "line one\nline two",
    "5/10, f/2.8 @ 1/250s, ISO-100",
]


def _sentence(rng: np.random.Generator) -> str:
    pick = lambda bank: bank[int(rng.integers(len(bank)))]
    text = pick(TEMPLATES).format(
        S=pick(SUBJECTS),
        A=pick(ADVERBS),
        adj=pick(ADJECTIVES),
        adj2=pick(ADJECTIVES),
        N=pick(NOUNS),
        N2=pick(NOUNS),
        V=pick(VERBS),
        F=pick(FIXES),
    )
    return text[0].upper() + text[1:]


def _critique(rng: np.random.Generator) -> str:
    return " ".join(_sentence(rng) for _ in range(int(rng.integers(1, 4))))


def caption_corpus(n: int, refs_per_image: int = 5, seed: int = 0) -> tuple[dict[str, list[str]], dict[str, str]]:
    """n images with `refs_per_image` references each, and one candidate per image; the same for the same arguments."""
    rng = np.random.default_rng(seed)
    refs = {f"{i:06d}": [_critique(rng) for _ in range(refs_per_image)] for i in range(n)}
    cands = {}
    for i, (k, r) in enumerate(refs.items()):
        if i < len(ODD_CANDIDATES):
            cands[k] = ODD_CANDIDATES[i]
        elif i % 10 == 0:
            cands[k] = r[int(rng.integers(refs_per_image))]  # an exact match
        else:
            cands[k] = _critique(rng)
    return refs, cands


def large_jpegs(source: Path, out: Path, side: int = 4000, count: int = 8, quality: int = 90) -> list[Path]:
    """The first `count` JPEGs of `source` (sorted), upscaled (bicubic) so the long side is `side`; reused if present."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for path in sorted(Path(source).glob("*.jpg"))[:count]:
        target = out / f"{path.stem}_{side}.jpg"
        if not target.exists():
            with Image.open(path) as img:
                scale = side / max(img.size)
                big = img.convert("RGB").resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
            big.save(target, quality=quality)
        made.append(target)
    return made


# AVA's images as photo.net served them: the long side mostly 500-800 px, landscape about twice as
# often as portrait, a few squares (sizes read off AVA's image files; JPEG quality about 90).
AVA_SIZES = [
    (640, 427),
    (800, 533),
    (500, 333),
    (640, 480),
    (800, 600),
    (750, 500),
    (427, 640),
    (533, 800),
    (333, 500),
    (480, 640),
    (600, 600),
    (700, 467),
    (800, 450),
    (500, 500),
    (640, 360),
    (600, 800),
]


def ava_shaped_jpegs(source: Path, out: Path, count: int = 2000, seed: int = 0, quality: int = 90) -> list[Path]:
    """`count` JPEGs of AVA's typical sizes: random crops of the photos in `source`, resized (bicubic),
    with a little noise so no two files are alike; the same for the same arguments, reused if present."""
    out.mkdir(parents=True, exist_ok=True)
    photos = sorted(Path(source).glob("*.jpg"))
    rng = np.random.default_rng(seed)
    made, opened = [], {}
    for i in range(count):
        w, h = AVA_SIZES[int(rng.integers(len(AVA_SIZES)))]
        photo = photos[int(rng.integers(len(photos)))]
        fx, fy, fs, noise = rng.random(), rng.random(), 0.5 + 0.5 * rng.random(), int(rng.integers(1 << 30))
        target = out / f"ava_{i:05d}_{w}x{h}.jpg"
        made.append(target)
        if target.exists():
            continue
        if photo not in opened:
            with Image.open(photo) as img:
                opened[photo] = img.convert("RGB")
        img = opened[photo]
        cw, ch = max(16, int(img.width * fs)), max(16, int(img.height * fs))
        left, top = int((img.width - cw) * fx), int((img.height - ch) * fy)
        pixels = np.asarray(img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BICUBIC), dtype=np.int16)
        pixels = pixels + np.random.default_rng(noise).integers(-3, 4, pixels.shape)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target, quality=quality)
    return made
