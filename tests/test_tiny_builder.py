"""The committed tiny data is exactly what tools/build_tiny_splits.py makes from the corpus: a rebuild
gives byte-identical files, so every label and description can be traced to the documented rules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CORPUS = Path(os.environ.get("AESBENCH_CORPUS", REPO.parent / "shared" / "corpus"))


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.skipif(
    not (CORPUS / "SOURCES.csv").is_file(), reason=f"needs the image corpus at {CORPUS} (or AESBENCH_CORPUS)"
)
def test_rebuilding_the_tiny_data_gives_the_committed_bytes(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_tiny_splits.py"), "--corpus", str(CORPUS), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    built, committed = files_under(tmp_path), files_under(REPO / "tasks" / "data")
    assert built.keys() == committed.keys()
    assert [name for name in built if built[name] != committed[name]] == []
    assert sum(name.startswith("tiny-art/images/") for name in built) == 93
