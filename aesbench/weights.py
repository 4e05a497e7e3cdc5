"""What every adapter with weights needs: optional imports with a one-line install hint, local-only
loading, weight hashes for provenance, and the image preprocessing steps the field's readouts use.

Heavy dependencies are optional extras (`pip install 'aesbench[vlm]'`); they are imported only when a
model that needs them is built. Weights come from local folders; nothing is downloaded unless the
user passes `online=True` to a model (and HF_HUB_OFFLINE, when set, still wins).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .provenance import sha256_file
from .errors import AesbenchError
from .options import parse_bool

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npz")


def optional_import(module: str, extra: str, model: str):
    """Import `module`, or explain in one line which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise AesbenchError(
            f"model {model!r} needs the {extra!r} extra: pip install 'aesbench[{extra}]' ({e})"
        ) from None


def local_only(online: bool = False) -> bool:
    """`local_files_only` for Hugging Face loaders: offline unless asked, and HF_HUB_OFFLINE=1 always wins."""
    return not parse_bool(online, "online") or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def require_files(folder: str | Path, names: list[str], model: str, what: str = "a checkpoint folder") -> Path:
    """A local folder holding the given files, or one line saying which are missing where."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise AesbenchError(f"model {model!r}: {folder} is not a folder; point it at {what}")
    missing = [n for n in names if not any(folder.glob(n))]
    if missing:
        raise AesbenchError(f"model {model!r}: {folder} lacks {', '.join(missing)}; it should be {what}")
    return folder


def weight_hashes(path: str | Path) -> dict[str, str]:
    """sha256 of each weight file in a folder (or of one file), keyed by relative path."""
    path = Path(path)
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.suffix in WEIGHT_SUFFIXES}


def pad_to_square(img: Image.Image, fill: str | tuple = "mean") -> Image.Image:
    """Centre the image on a square canvas filled with `fill` (an RGB tuple) or, with "mean", the image's own mean
    colour. Q-Align's and ArtQuant's expand2square fill with a fixed colour, the processor's mean:
    tuple(int(x*255) for x in image_processor.image_mean), (122, 116, 104) for CLIP's; it places the image as
    this does ((side - w) // 2, (side - h) // 2), one of the two offsets being 0."""
    w, h = img.size
    if w == h:
        return img
    if fill == "mean":
        fill = tuple(int(round(c)) for c in np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(axis=0))
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas
