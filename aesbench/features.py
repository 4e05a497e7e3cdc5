"""An on-disk cache of frozen-backbone outputs, for models whose backbone never changes.

An entry is one image's features, found by the sha256 of its decoded pixels (mode, size, bytes: so
the task's preprocessing and any degradation are part of the key) inside a folder named by the
sha256 of the cache's identity: what else decides the numbers (the backbone's weights, hashed
tensor by tensor, its preprocessing, the layers read, dtype and device type). Changed weights or
settings give another folder, so a stale entry cannot be read by mistake; `identity.json` in each
folder says what it holds, and `entry.json` the shape and dtype of every entry (set by the first
one stored). Entries are written to a temporary file and renamed into place, so a killed run leaves
no torn entry; an unreadable or mis-shaped one is recomputed and counted.

The same images scored again (PIAA's repeats, several heads on one backbone, a second run) skip
the backbone: `aesbench eval --feature-cache DIR` turns it on for models that support it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .errors import AesbenchError

FORMAT = 1  # bump when the entry layout changes: old folders are then never matched


def image_key(img: Image.Image) -> str:
    """sha256 of the decoded pixels: equal keys mean equal model inputs."""
    h = hashlib.sha256(f"{img.mode}:{img.size[0]}x{img.size[1]}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def module_sha256(module) -> str:
    """sha256 over a torch module's state dict (names, dtypes, shapes and bytes), in name order."""
    import torch  # only models built on torch have modules to hash

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def module_cache(root: str | Path, module, identity: dict) -> "FeatureCache":
    """The FeatureCache of a frozen torch module's outputs: the module's weights hash, dtype and
    device join the caller's identity (name, preprocessing, what is read)."""
    param = next(module.parameters())
    return FeatureCache(
        root,
        {
            **identity,
            "backbone_sha256": module_sha256(module),
            "dtype": str(param.dtype).removeprefix("torch."),
            "device": param.device.type,
        },
    )


class FeatureCache:
    """Features per image under root/<identity hash>/<key[:2]>/<key>.npy; hit, miss and repair counts kept."""

    def __init__(self, root: str | Path, identity: dict):
        self.identity = {"format": FORMAT, **identity}
        text = json.dumps(self.identity, sort_keys=True, default=str)
        self.key = hashlib.sha256(text.encode()).hexdigest()[:24]
        self.folder = Path(root) / self.key
        self.hits = self.misses = self.repaired = 0
        self.entry: dict | None = None  # {"shape": [...], "dtype": "..."}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            marker = self.folder / "identity.json"
            if not marker.exists():
                _write_atomic(
                    marker, (json.dumps(self.identity, indent=2, sort_keys=True, default=str) + "\n").encode()
                )
            elif json.loads(marker.read_text()) != json.loads(text):
                raise AesbenchError(
                    f"feature cache {self.folder} holds other features than its name says; delete that folder"
                )
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AesbenchError(
                f"feature cache {root} cannot be used ({e}); pick a writable folder for --feature-cache"
            ) from None

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def _read(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        if not path.exists():
            return None
        if self.entry is None:  # stored by the first entry, here or by another process
            try:
                entry = json.loads((self.folder / "entry.json").read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                entry = None
            if not _valid_entry(entry):  # damaged: recomputed, and entry.json written again
                self.repaired += 1
                return None
            self.entry = entry
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            value = None
        if value is None or list(value.shape) != self.entry["shape"] or str(value.dtype) != self.entry["dtype"]:
            self.repaired += 1
            return None
        return value

    def get(self, images: list[Image.Image], compute: Callable[[list[Image.Image]], np.ndarray]) -> np.ndarray:
        """Features of each image, stacked: read where cached, else computed (one call for all the
        missing images, in order) and stored."""
        keys = [image_key(img) for img in images]
        rows = [self._read(key) for key in keys]
        todo = [i for i, row in enumerate(rows) if row is None]
        self.hits += len(images) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = np.asarray(compute([images[i] for i in todo]))
            if self.entry is None:
                self.entry = {"shape": list(fresh.shape[1:]), "dtype": str(fresh.dtype)}
                _write_atomic(self.folder / "entry.json", json.dumps(self.entry).encode())
            for i, value in zip(todo, fresh):
                rows[i] = value
                self._store(keys[i], value)
        return np.stack(rows)

    def _store(self, key: str, value: np.ndarray) -> None:
        path = self._path(key)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        try:
            path.parent.mkdir(exist_ok=True)
            _write_atomic(path, buffer.getvalue())
        except OSError as e:  # a full disk, say: what was predicted so far is already recorded
            raise AesbenchError(
                f"feature cache {self.folder}: cannot write an entry ({e}); free space or run without --feature-cache"
            ) from None

    def describe(self) -> dict:
        return {
            "folder": str(self.folder.resolve()),
            "identity": self.identity,
            "hits": self.hits,
            "misses": self.misses,
            "repaired": self.repaired,
        }


def _valid_entry(entry) -> bool:
    """entry.json as written: {"shape": [whole numbers], "dtype": text}."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("shape"), list)
        and isinstance(entry.get("dtype"), str)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in entry["shape"])
    )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
