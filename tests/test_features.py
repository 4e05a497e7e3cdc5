"""The on-disk feature cache: hits give back exactly what was computed, stale or damaged entries are
never used, and a model without a frozen backbone says the cache has no effect."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from aesbench.errors import AesbenchError
from aesbench.features import FeatureCache, image_key
from conftest import natural_image, run_cli

IDENTITY = {"backbone": "test", "backbone_sha256": "0" * 64, "layers": [1]}


def _counting(calls: list):
    def compute(images):
        calls.append(len(images))
        return np.stack([np.asarray(img, dtype=np.float32).mean(axis=(0, 1)) for img in images])

    return compute


def test_hits_return_what_was_computed_and_only_misses_are_computed(tmp_path):
    images = [natural_image(i) for i in range(4)]
    calls = []
    cache = FeatureCache(tmp_path, IDENTITY)
    first = cache.get(images[:3], _counting(calls))
    again = FeatureCache(tmp_path, IDENTITY).get(images, _counting(calls))  # a new process: from disk
    assert calls == [3, 1]  # the fourth image only
    np.testing.assert_array_equal(again[:3], first)
    np.testing.assert_array_equal(again, _counting([])(images))
    assert (cache.hits, cache.misses) == (0, 3)


def test_changed_weights_or_settings_use_another_folder(tmp_path):
    images = [natural_image(0)]
    calls = []
    FeatureCache(tmp_path, IDENTITY).get(images, _counting(calls))
    FeatureCache(tmp_path, {**IDENTITY, "backbone_sha256": "1" * 64}).get(images, _counting(calls))
    FeatureCache(tmp_path, {**IDENTITY, "layers": [1, 2]}).get(images, _counting(calls))
    assert calls == [1, 1, 1]
    folders = sorted(p for p in tmp_path.iterdir())
    assert len(folders) == 3
    assert {json.loads((f / "identity.json").read_text())["layers"][-1] for f in folders} == {1, 2}


def test_pixels_decide_the_key():
    img = natural_image(0)
    edited = img.copy()
    edited.putpixel((0, 0), (0, 0, 0) if img.getpixel((0, 0)) != (0, 0, 0) else (1, 1, 1))
    assert image_key(img) == image_key(img.copy())
    assert image_key(img) != image_key(edited)
    assert image_key(img) != image_key(img.convert("L").convert("RGB"))
    assert image_key(Image.new("RGB", (4, 2))) != image_key(Image.new("RGB", (2, 4)))


def test_damaged_entries_are_recomputed_and_counted(tmp_path):
    images = [natural_image(i) for i in range(3)]
    cache = FeatureCache(tmp_path, IDENTITY)
    expected = cache.get(images, _counting([]))
    entries = sorted(cache.folder.glob("*/*.npy"))
    entries[0].write_bytes(entries[0].read_bytes()[:20])  # truncated
    np.save(entries[1], np.zeros(7, dtype=np.float32))  # wrong shape
    calls = []
    cache = FeatureCache(tmp_path, IDENTITY)
    got = cache.get(images, _counting(calls))
    np.testing.assert_array_equal(got, expected)
    assert calls == [2] and cache.repaired == 2 and cache.hits == 1
    assert not list(cache.folder.glob("*/*.tmp"))


def test_a_folder_that_lies_about_its_identity_is_refused(tmp_path):
    cache = FeatureCache(tmp_path, IDENTITY)
    (cache.folder / "identity.json").write_text(json.dumps({"format": 1, "backbone": "other"}))
    with pytest.raises(AesbenchError, match="holds other features than its name says; delete that folder"):
        FeatureCache(tmp_path, IDENTITY)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AesbenchError, match="cannot be used .*pick a writable folder for --feature-cache"):
        FeatureCache(blocker, IDENTITY)


def test_cli_says_a_model_without_backbone_ignores_the_cache(tmp_path):
    proc = run_cli(
        "eval",
        "--task",
        "tiny-ava-score",
        "--model",
        "handcrafted",
        "--limit",
        "4",
        "--output",
        str(tmp_path / "run"),
        "--feature-cache",
        str(tmp_path / "cache"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "model 'handcrafted' has no frozen backbone to cache; --feature-cache has no effect" in proc.stderr
