"""Image decoding that never stops a run: every failure becomes an ImageError with a one-line reason.

What the harness does to an image before a model sees it is a protocol choice, so it lives in the
task's `preprocessing` block and is recorded with the results: EXIF orientation, how alpha is
flattened, how high-bit-depth images are brought to 8 bits, and the decompression-bomb limit.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageOps, UnidentifiedImageError

from .errors import AesbenchError


class ImageError(Exception):
    """An image that cannot be used; the message is the reason recorded in `skipped`."""


@dataclass(frozen=True)
class Preprocessing:
    exif_transpose: bool = True  # apply the EXIF orientation tag, as viewers do
    alpha: str = "white"  # flatten transparency onto this background colour
    max_pixels: int = 89_478_485  # Pillow's default decompression-bomb limit (width x height)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Preprocessing":
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise AesbenchError(f"unknown preprocessing option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        prep = cls(**data)
        if not isinstance(prep.exif_transpose, bool):
            raise AesbenchError(f"preprocessing.exif_transpose must be true or false, not {prep.exif_transpose!r}")
        if isinstance(prep.max_pixels, bool) or not isinstance(prep.max_pixels, int) or prep.max_pixels <= 0:
            raise AesbenchError(f"preprocessing.max_pixels must be a positive whole number, not {prep.max_pixels!r}")
        try:
            ImageColor.getrgb(str(prep.alpha))
        except ValueError:
            raise AesbenchError(f"preprocessing.alpha {prep.alpha!r} is not a colour (e.g. white, black, #808080)") from None
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


def load_image(path: str | Path, prep: Preprocessing = Preprocessing()) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"missing image file {path}")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # our own limit below replaces Pillow's global one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                pixels = img.size[0] * img.size[1]
                if pixels > prep.max_pixels:
                    raise ImageError(
                        f"image has {pixels} pixels, over the decompression-bomb limit {prep.max_pixels}"
                        " (raise preprocessing.max_pixels in the task if the file is trusted)"
                    )
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
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
