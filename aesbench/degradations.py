"""Controlled image degradations: the suggest protocol's six kinds and the edits behind the tiny labels.

One implementation serves the suggest task (CALM's protocol), the tiny-split builder and, later,
self-supervised augmentations. Every function takes an RGB PIL image, a severity in [0, 1] and a
numpy Generator, and is deterministic given those. Sizes scale with the image's short side so the
same severity means the same thing at any resolution.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageEnhance
from scipy import ndimage


def _short_side(img: Image.Image) -> int:
    return min(img.size)


def _to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def gaussian_noise(img, severity, rng):
    """Additive Gaussian noise, sigma up to 50 grey levels."""
    arr = np.asarray(img, dtype=np.float64)
    return _to_image(arr + rng.normal(0.0, 50.0 * severity, arr.shape))


def salt_pepper_noise(img, severity, rng):
    """Up to 12% of pixels set to black or white."""
    arr = np.asarray(img).copy()
    hit = rng.random(arr.shape[:2]) < 0.12 * severity
    salt = rng.random(arr.shape[:2]) < 0.5
    arr[hit & salt] = 255
    arr[hit & ~salt] = 0
    return Image.fromarray(arr, "RGB")


def _convolve(img, kernel):
    arr = np.asarray(img, dtype=np.float64)
    kernel = kernel / kernel.sum()
    out = np.stack([ndimage.convolve(arr[..., c], kernel, mode="reflect") for c in range(3)], axis=-1)
    return _to_image(out)


def defocus_blur(img, severity, rng):
    """Disk kernel, radius up to 3% of the short side."""
    r = max(1, round(0.03 * severity * _short_side(img)))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return _convolve(img, (x * x + y * y <= r * r).astype(np.float64))


def motion_blur(img, severity, rng):
    """Line kernel at a random angle, length up to 8% of the short side."""
    length = max(3, round(0.08 * severity * _short_side(img)) | 1)
    half = length // 2
    angle = rng.uniform(0, np.pi)
    kernel = np.zeros((length, length))
    for t in np.linspace(-half, half, 4 * length):
        kernel[half + int(round(t * np.sin(angle))), half + int(round(t * np.cos(angle)))] = 1.0
    return _convolve(img, kernel)


def darken(img, severity, rng):
    """Brightness factor down to 0.2."""
    return ImageEnhance.Brightness(img).enhance(1.0 - 0.8 * severity)


def brighten(img, severity, rng):
    """Brightness factor up to 2.5."""
    return ImageEnhance.Brightness(img).enhance(1.0 + 1.5 * severity)


def desaturate(img, severity, rng):
    """Colour factor down to 0 (greyscale)."""
    return ImageEnhance.Color(img).enhance(1.0 - severity)


def low_contrast(img, severity, rng):
    """Contrast factor down to 0.3."""
    return ImageEnhance.Contrast(img).enhance(1.0 - 0.7 * severity)


def jpeg_damage(img, severity, rng):
    """Re-encode at JPEG quality from 60 down to 3."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=max(3, round(60 - 57 * severity)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def pixelate(img, severity, rng):
    """Down-sample by up to 12x with box filtering, then nearest-neighbour back up."""
    factor = 1 + 11 * severity
    w, h = img.size
    small = img.resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.BOX)
    return small.resize((w, h), Image.NEAREST)


def bad_crop(img, severity, rng):
    """Keep an off-centre window whose sides shrink to 45%: the kind of crop that cuts the subject."""
    w, h = img.size
    keep = 1.0 - 0.55 * severity
    cw, ch = max(8, round(w * keep)), max(8, round(h * keep))
    # Push the window towards a corner so the centre of the frame (usually the subject) is cut.
    x0 = (w - cw) * rng.choice([0.0, 1.0])
    y0 = (h - ch) * rng.choice([0.0, 1.0])
    return img.crop((round(x0), round(y0), round(x0) + cw, round(y0) + ch))


def saliency_box(img: Image.Image) -> tuple[int, int, int, int]:
    """The salient region's bounding box by spectral residual (Hou & Zhang, CVPR 2007) at 64 px.

    The box is the saliency-weighted centroid plus or minus one weighted standard deviation per
    axis (at least a fifth of each side), so scattered responses do not stretch it to the frame.
    """
    w, h = img.size
    small = np.asarray(img.convert("L").resize((64, 64), Image.BILINEAR), dtype=np.float64)
    spectrum = np.fft.fft2(small)
    log_amp, phase = np.log1p(np.abs(spectrum)), np.angle(spectrum)
    residual = log_amp - ndimage.uniform_filter(log_amp, size=3, mode="wrap")
    sal = ndimage.gaussian_filter(np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2, sigma=3)
    sal = sal / sal.sum()
    ys, xs = (np.arange(64) + 0.5) / 64, (np.arange(64) + 0.5) / 64
    py, px = sal.sum(axis=1), sal.sum(axis=0)
    cy, cx = py @ ys, px @ xs
    sy, sx = max(np.sqrt(py @ (ys - cy) ** 2), 0.1), max(np.sqrt(px @ (xs - cx) ** 2), 0.1)
    x0, x1 = max(0.0, cx - sx), min(1.0, cx + sx)
    y0, y1 = max(0.0, cy - sy), min(1.0, cy + sy)
    return round(x0 * w), round(y0 * h), max(round(x1 * w), round(x0 * w) + 1), max(round(y1 * h), round(y0 * h) + 1)


def subject_blur(img, severity, rng):
    """Defocus blur on the salient region only (the subject group of CALM's augmentations)."""
    box = saliency_box(img)
    out = img.copy()
    out.paste(defocus_blur(img.crop(box), severity, rng), box[:2])
    return out


def subject_mask(img, severity, rng):
    """The centre of the salient region covered by a grey block, up to the whole region."""
    x0, y0, x1, y1 = saliency_box(img)
    shrink = 0.5 * (1 - severity)
    dx, dy = round((x1 - x0) * shrink / 2), round((y1 - y0) * shrink / 2)
    out = img.copy()
    out.paste((128, 128, 128), (x0 + dx, y0 + dy, max(x0 + dx + 1, x1 - dx), max(y0 + dy + 1, y1 - dy)))
    return out


def noise(img, severity, rng):
    """Gaussian or salt-and-pepper noise, chosen at random (CALM: 'Gaussian or salt-and-pepper')."""
    return (gaussian_noise if rng.random() < 0.5 else salt_pepper_noise)(img, severity, rng)


def blur(img, severity, rng):
    """Motion or defocus blur, chosen at random (CALM: 'motion or defocus')."""
    return (motion_blur if rng.random() < 0.5 else defocus_blur)(img, severity, rng)


DEGRADATIONS = {
    "noise": noise,
    "blur": blur,
    "dark": darken,
    "bright": brighten,
    "desaturated": desaturate,
    "crop": bad_crop,
    "gaussian_noise": gaussian_noise,
    "salt_pepper_noise": salt_pepper_noise,
    "motion_blur": motion_blur,
    "defocus_blur": defocus_blur,
    "low_contrast": low_contrast,
    "jpeg": jpeg_damage,
    "pixelate": pixelate,
    "subject_blur": subject_blur,
    "subject_mask": subject_mask,
}

# The suggest protocol's six kinds, in CALM's reporting order.
SUGGEST_KINDS = ("noise", "blur", "dark", "bright", "desaturated", "crop")


def item_rng(seed: int, key: str) -> np.random.Generator:
    """A generator fixed by (seed, key), stable across platforms and Python hash seeds."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def degrade(img: Image.Image, kind: str, severity: float, rng: np.random.Generator) -> Image.Image:
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}")
    return DEGRADATIONS[kind](img.convert("RGB"), float(severity), rng)
