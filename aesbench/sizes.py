"""Task sizes for `aesbench tasks`, remembered per task so listing does not read every label file.

An entry holds the size and the size and mtime of the task file and of every label file the size was
read from; it is used only while all of them are unchanged, otherwise the labels are read again. The
cache is one JSON file under $AESBENCH_CACHE (default ~/.cache/aesbench); when it cannot be written,
sizes are simply read every time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .datasets import read_dataset
from .task import Task

CACHE_NAME = "task-sizes.json"


def cache_file() -> Path:
    return Path(os.environ.get("AESBENCH_CACHE") or Path.home() / ".cache" / "aesbench").expanduser() / CACHE_NAME


def _stamp(path: Path) -> list:
    st = os.stat(path)
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def _load() -> dict:
    try:
        entries = json.loads(cache_file().read_text(encoding="utf-8"))
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(entries: dict) -> None:
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=0), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def task_size(task: Task) -> str:
    """'N' items or 'P people, N ratings'; read from the labels unless a cached entry's files are unchanged.
    The task's root must be resolved; a dataset that cannot be read raises as read_dataset does."""
    key = f"{_stamp(task.path)[0]}::{task.name}::{task.data_root}"
    entries = _load()
    entry = entries.get(key)
    if isinstance(entry, dict):
        try:
            if [_stamp(Path(f[0])) for f in entry["files"]] == entry["files"]:
                return str(entry["size"])
        except (OSError, KeyError, TypeError, IndexError):
            pass
    data = read_dataset(task)
    size = f"{len(data.groups)} people, {len(data.items)} ratings" if data.groups else str(len(data.items))
    try:
        files = [_stamp(task.path)] + [_stamp(f) for f in data.label_files]
    except OSError:
        return size
    entries[key] = {"size": size, "files": files}
    _save(entries)
    return size
