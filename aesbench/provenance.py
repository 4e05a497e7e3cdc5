"""Provenance: what made a record (versions, the git state of the code, hashes of the files read,
times, the command), built in one place for evaluation runs and training runs alike."""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from . import __version__


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_state() -> dict:
    """Commit of the aesbench source tree when it is a git checkout (an editable install)."""
    src = Path(__file__).resolve().parent.parent
    try:
        top = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10
        )
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0 or Path(top.stdout.strip()).resolve() != src:  # not some enclosing repository
            return {"commit": None, "dirty": None, "note": "aesbench is not running from a git checkout"}
        status = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None, "note": "git not available"}


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")


def build(started: float, ended: float, packages: tuple[str, ...], fields: dict) -> dict:
    """A provenance record: aesbench's version and git state, the versions of `packages` (None when
    not installed), the record's own `fields`, then start, end, duration and the command line."""
    return {
        "aesbench": __version__,
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{package: package_version(package) for package in packages},
        **fields,
        "start": _utc(started),
        "end": _utc(ended),
        "duration_s": round(ended - started, 3),
        "command": " ".join(sys.argv),
    }
