"""`aesbench tasks` sizes come from a cache keyed by the task and label files' size and mtime."""

import os

import pytest

from aesbench import sizes
from aesbench.task import load_task


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AESBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_size_is_cached_until_a_label_file_changes(cache, monkeypatch):
    task = load_task("tiny-ava-score")
    task.resolve_root()
    first = sizes.task_size(task)
    reads = []
    real = sizes.read_dataset
    monkeypatch.setattr(sizes, "read_dataset", lambda t: reads.append(t) or real(t))
    assert sizes.task_size(task) == first and reads == []  # from the cache, no label file read
    label = real(task).label_files[0]
    st = os.stat(label)
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        assert sizes.task_size(task) == first and len(reads) == 1  # changed mtime: read again
        assert sizes.task_size(task) == first and len(reads) == 1
    finally:
        os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_sizes_equal_a_fresh_read_for_every_tiny_task(cache):
    for name in ("tiny-ava-score", "tiny-flickr-aes-piaa", "tiny-ava-comment"):
        task = load_task(name)
        task.resolve_root()
        data = sizes.read_dataset(task)
        plain = f"{len(data.groups)} people, {len(data.items)} ratings" if data.groups else str(len(data.items))
        assert sizes.task_size(task) == plain == sizes.task_size(task)


def test_unwritable_cache_still_gives_sizes(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("AESBENCH_CACHE", str(blocker / "sub"))
    task = load_task("tiny-ava-score")
    task.resolve_root()
    assert sizes.task_size(task).isdigit()
