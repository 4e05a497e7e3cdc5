"""Image decoding that never stops a run: every failure becomes an ImageError with a one-line reason.

What the harness does to an image before a model sees it is a protocol choice, so it lives in the
task's `preprocessing` block and is recorded with the results: EXIF orientation, how alpha is
flattened, how high-bit-depth images are brought to 8 bits, the decompression-bomb limit, and
whether large JPEGs are decoded at reduced size (`draft_size`).

load_image is safe to call from many threads at once (the harness decodes a batch on a thread
pool; Pillow releases the GIL while it decodes, converts and resizes), and a thread gives the same
pixels as a serial call.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageOps, JpegImagePlugin, UnidentifiedImageError

from .errors import AesbenchError


class ImageError(Exception):
    """An image that cannot be used; the message is the reason recorded in `skipped`."""


@dataclass(frozen=True)
class Preprocessing:
    exif_transpose: bool = True  # apply the EXIF orientation tag, as viewers do
    alpha: str = "white"  # flatten transparency onto this background colour
    max_pixels: int = 89_478_485  # Pillow's default decompression-bomb limit (width x height)
    # 0: JPEGs decode at full size. N: a JPEG (or a camera's MPO) decodes at 1/2, 1/4 or 1/8 scale
    # (libjpeg's DCT scaling, Pillow's Image.draft), the smallest that keeps both sides at least N px;
    # set it to the side the model resizes to. Other formats and smaller JPEGs are unaffected.
    draft_size: int = 0

    @classmethod
    def from_dict(cls, data: dict | None) -> "Preprocessing":
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise AesbenchError(
                f"unknown preprocessing option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        prep = cls(**data)
        if not isinstance(prep.exif_transpose, bool):
            raise AesbenchError(f"preprocessing.exif_transpose must be true or false, not {prep.exif_transpose!r}")
        if isinstance(prep.max_pixels, bool) or not isinstance(prep.max_pixels, int) or prep.max_pixels <= 0:
            raise AesbenchError(f"preprocessing.max_pixels must be a positive whole number, not {prep.max_pixels!r}")
        if isinstance(prep.draft_size, bool) or not isinstance(prep.draft_size, int) or prep.draft_size < 0:
            raise AesbenchError(
                f"preprocessing.draft_size must be 0 (off) or a side in pixels, not {prep.draft_size!r}"
            )
        try:
            ImageColor.getrgb(str(prep.alpha))
        except ValueError:
            raise AesbenchError(
                f"preprocessing.alpha {prep.alpha!r} is not a colour (e.g. white, black, #808080)"
            ) from None
        return prep

    def to_dict(self) -> dict:
        return asdict(self)


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale scaled by their bit depth, not clipped as Image.convert would."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        scale = 65535.0
    elif img.mode == "F":
        scale = max(float(np.nanmax(arr)), 1.0) if arr.size else 1.0
    else:  # "I": 32-bit ints, commonly holding 16-bit data
        scale = 65535.0 if arr.size and arr.max() <= 65535 else float(arr.max())
    return Image.fromarray(np.clip(np.rint(arr.astype(np.float64) / scale * 255.0), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image, prep: Preprocessing) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: CMYK, palette, greyscale, 16-bit, with or without alpha."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, prep.alpha)
        img = Image.alpha_composite(background, img)
    return img.convert("RGB") if img.mode != "RGB" else img


_limit_lock = threading.Lock()
_limit_users = 0
_pillow_limit = None


@contextmanager
def _own_bomb_limit():
    """Pillow's global decompression-bomb limit is off while any load_image runs (max_pixels replaces
    it) and back to what it was when the last one ends; counted, so concurrent threads cannot leave it off."""
    global _limit_users, _pillow_limit
    with _limit_lock:
        if _limit_users == 0:
            _pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                Image.MAX_IMAGE_PIXELS = _pillow_limit


def load_image(path: str | Path, prep: Preprocessing = Preprocessing()) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"missing image file {path}")
    try:
        with _own_bomb_limit(), Image.open(path) as img:
            pixels = img.size[0] * img.size[1]
            if pixels > prep.max_pixels:
                raise ImageError(
                    f"image has {pixels} pixels, over the decompression-bomb limit {prep.max_pixels}"
                    " (raise preprocessing.max_pixels in the task if the file is trusted)"
                )
            if prep.draft_size and isinstance(img, JpegImagePlugin.JpegImageFile):  # JPEG and MPO (cameras)
                img.draft(img.mode, (prep.draft_size, prep.draft_size))
            img.load()
            if prep.exif_transpose:
                img = ImageOps.exif_transpose(img)
            return to_rgb(img, prep)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"not a readable image (corrupt or unknown format): {path.name}") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"cannot decode {path.name}: {reason}") from None


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers set), not the host's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
