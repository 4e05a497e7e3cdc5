"""Interpretable image measures: exposure, contrast, colour, sharpness and noise.

The handcrafted baseline scores, comments and suggests from these numbers, and the tiny labels are
built on them, so each one is a plain, documented statistic that a reader can check by hand rather
than a learned feature. `measure` converts the image to floats once and every measure reads that
array (held as three colour planes, which numpy reduces much faster than interleaved pixels).

Images are measured at most 512 px on the long side (larger ones are downscaled with bilinear
filtering first): that keeps a measurement to a few milliseconds, at the cost that sharpness and
noise of large images are read at the reduced scale. Luminance uses the ITU-R BT.601 weights.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

MAX_SIDE = 512
BT601_WEIGHTS = (0.299, 0.587, 0.114)
DARK_CLIP_LEVEL = 0.02
BRIGHT_CLIP_LEVEL = 0.98

# The order of `measure`'s keys; models that turn measures into feature vectors rely on it.
MEASURE_KEYS = (
    "mean_luminance",
    "dark_clip",
    "bright_clip",
    "contrast",
    "colourfulness",
    "saturation",
    "sharpness",
    "noise",
)


def float_rgb(img: Image.Image) -> np.ndarray:
    """3×H×W floats in [0, 1] (R, G, B planes), downscaled to at most MAX_SIDE on the long side."""
    img = img.convert("RGB")
    long_side = max(img.size)
    if long_side > MAX_SIDE:
        scale = MAX_SIDE / long_side
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    return np.stack([np.asarray(plane, dtype=np.float64) for plane in img.split()]) / 255.0


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 1]."""
    return BT601_WEIGHTS[0] * rgb[0] + BT601_WEIGHTS[1] * rgb[1] + BT601_WEIGHTS[2] * rgb[2]


def exposure(lum: np.ndarray) -> tuple[float, float, float]:
    """Mean luminance and the fractions of pixels clipped dark (< 0.02) and bright (> 0.98)."""
    return float(lum.mean()), float((lum < DARK_CLIP_LEVEL).mean()), float((lum > BRIGHT_CLIP_LEVEL).mean())


def rms_contrast(lum: np.ndarray) -> float:
    """Standard deviation of luminance, in [0, 0.5]."""
    return float(lum.std())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) M on the 0–255 scale, so their bands apply (< 15 'not colourful', > 59 'quite')."""
    r, g, b = rgb * 255.0
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def mean_saturation(rgb: np.ndarray) -> float:
    """Mean HSV saturation (max − min) / max, taking black pixels as unsaturated."""
    top = np.maximum(np.maximum(rgb[0], rgb[1]), rgb[2])
    spread = top - np.minimum(np.minimum(rgb[0], rgb[1]), rgb[2])
    return float(np.divide(spread, top, out=np.zeros_like(top), where=top > 0).mean())


def sharpness(lum: np.ndarray) -> float:
    """log(1 + variance of the Laplacian of luminance in grey levels); log1p keeps flat images finite."""
    return float(np.log1p(ndimage.laplace(lum * 255.0).var()))


def noise_sigma(lum: np.ndarray) -> float:
    """Immerkær (1996) fast noise estimate: sigma in grey levels from the image's second differences.

    The 3×3 mask [[1, −2, 1], [−2, 4, −2], [1, −2, 1]] cancels smooth structure, so the mean absolute
    response over the interior is proportional to the noise sigma. Strong edges and fine texture
    inflate it somewhat. Images smaller than 3×3 have no interior and read as noise-free.
    """
    h, w = lum.shape
    if h < 3 or w < 3:
        return 0.0
    y = lum * 255.0
    response = (
        y[:-2, :-2]
        - 2 * y[:-2, 1:-1]
        + y[:-2, 2:]
        - 2 * y[1:-1, :-2]
        + 4 * y[1:-1, 1:-1]
        - 2 * y[1:-1, 2:]
        + y[2:, :-2]
        - 2 * y[2:, 1:-1]
        + y[2:, 2:]
    )
    return float(np.sqrt(np.pi / 2) * np.abs(response).sum() / (6.0 * (w - 2) * (h - 2)))


def measure(img: Image.Image) -> dict[str, float]:
    """All measures of one image, keyed in MEASURE_KEYS order."""
    rgb = float_rgb(img)
    lum = luminance(rgb)
    mean_lum, dark_clip, bright_clip = exposure(lum)
    return {
        "mean_luminance": mean_lum,
        "dark_clip": dark_clip,
        "bright_clip": bright_clip,
        "contrast": rms_contrast(lum),
        "colourfulness": colourfulness(rgb),
        "saturation": mean_saturation(rgb),
        "sharpness": sharpness(lum),
        "noise": noise_sigma(lum),
    }
