"""Readers for the artistic datasets' own files: BAID, APDDv2 and ArtiMuse-10K, through the shipped task
YAMLs pointed at small files written in each release's exact layout, and the tiny-art twin.

The layouts follow the public releases: BAID's dataset/{train,val,test}_set.csv (`image,score`), APDDv2's
APDDv2-10023.csv (blank attribute cells, quoted comments with commas, "Reviewed" placeholders, numbers
without trailing zeros) with ArtCLIP's csvfiles/*.csv split lists, and ArtiMuse-10K's score/test.json.
Expected values are written out here or recomputed from the files without the readers' code.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from scipy import stats

from aesbench.datasets import APDD_ATTRIBUTES, attribute_key, read_dataset
from aesbench.descriptions import read_descriptions, score_sentence
from aesbench.errors import AesbenchError
from aesbench.task import load_task

from conftest import REPO

TINY_ART = REPO / "tasks" / "data" / "tiny-art"


def real_task(name: str, root: Path, **dataset):
    """A shipped task reading files under `root`, as --data-root does; dataset keys overridden for a case."""
    task = load_task(name)
    task.dataset.update(dataset)
    task.resolve_root(root)
    return task


def reasons(data) -> dict[str, str]:
    return {s["id"]: s["reason"] for s in data.skipped}


# --------------------------------------------------------------------------- BAID


@pytest.fixture
def baid(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "dataset").mkdir()
    # The release's three files: header `image,score`, numeric names, 6 decimals in train/val, 4 in test.
    (tmp_path / "dataset" / "train_set.csv").write_text(
        "image,score\n24001.jpg,4.034603\n55002.jpg,3.672703\n42003.jpg,10.0\n46004.jpg,9.631597\n"
    )
    (tmp_path / "dataset" / "val_set.csv").write_text("image,score\n241005.jpg,9.999043\n27006.jpg,4.544847\n")
    (tmp_path / "dataset" / "test_set.csv").write_text(
        "image,score\n"
        "12938.jpg,5.1598\n"
        "61963.jpg,5.3349\n"
        "49509.jpg,7.8236\n"
        "12938.jpg,4.0\n"  # duplicate image: the first row wins
        "77777.jpg,n/a\n"  # not a number
        ",5.5\n"  # no image
        "88888.jpg,4.5,extra\n"  # one field too many
        "214060.jpg,9.9999\n"
    )
    return tmp_path


def test_baid_reads_the_test_file_of_the_release(baid):
    data = read_dataset(real_task("baid-score", baid))
    assert [(it.id, it.label["mos"]) for it in data.items] == [
        ("12938.jpg", 5.1598),
        ("61963.jpg", 5.3349),
        ("49509.jpg", 7.8236),
        ("214060.jpg", 9.9999),
    ]
    assert all(it.image == baid / "images" / it.id for it in data.items)
    why = reasons(data)
    assert set(why) == {"12938.jpg", "77777.jpg", "test_set.csv:7", "test_set.csv:8"}
    assert "duplicate" in why["12938.jpg"] and "not a number" in why["77777.jpg"]
    assert "empty image" in why["test_set.csv:7"] and "fields expected" in why["test_set.csv:8"]
    assert data.label_files == [baid / "dataset" / "test_set.csv"]


def test_baid_training_split_reads_its_own_file(baid):
    data = read_dataset(real_task("baid-score", baid, split="train"))
    assert [(it.id, it.label["mos"]) for it in data.items] == [
        ("24001.jpg", 4.034603),
        ("55002.jpg", 3.672703),
        ("42003.jpg", 10.0),
        ("46004.jpg", 9.631597),
    ]
    assert data.skipped == []
    assert len(read_dataset(real_task("baid-score", baid, split="val")).items) == 2


def test_baid_unknown_split_or_missing_file_is_one_line(baid):
    with pytest.raises(AesbenchError, match=r"split 'dev' is not in dataset.split_files \(it has train, val, test\)"):
        read_dataset(real_task("baid-score", baid, split="dev"))
    (baid / "dataset" / "val_set.csv").unlink()
    with pytest.raises(AesbenchError, match=r"val_set.csv not found \(dataset.split_files.val") as caught:
        read_dataset(real_task("baid-score", baid, split="val"))
    assert "\n" not in str(caught.value)


def test_baid_task_without_its_root_names_the_variable_and_files(monkeypatch):
    monkeypatch.delenv("AESBENCH_BAID_ROOT", raising=False)
    with pytest.raises(AesbenchError, match="AESBENCH_BAID_ROOT.*dataset/test_set.csv"):
        load_task("baid-score").resolve_root()


# --------------------------------------------------------------------------- APDDv2

APDD_HEADER = (
    "filename,Artistic Categories,Total aesthetic score,Theme and logic,Creativity,Layout and composition,"
    "Space and perspective,The sense of order,Light and shadow,Color,Details and texture,The overall,Mood,"
    "Language Comment"
)
# Rows in the release's layout: classicism leaves Creativity blank, romanticism Space and perspective and
# Light and shadow, sketching Color, portraiture Theme, Creativity, order and Mood; comments are quoted when
# they hold commas, often empty, sometimes the placeholder "Reviewed".
APDD_ROWS = [
    "a1b2c3d4e5f60718293a4b5c6d7e8f90.png,traditional Chinese painting*meticulous*mountains and water,65.83,7.17,,6,5.83,6,6.17,5.67,6.5,6.5,6.67,"
    '"The layout is full, the brushwork regular, and the colour calm, though the distant hills lack levels."',
    "b2c3d4e5f60718293a4b5c6d7e8f90a1.jpg,oil painting*romanticism*landscapes,65,6.2,5.6,6.2,,6.8,,6.6,6.4,6.6,6.4,",
    "c3d4e5f60718293a4b5c6d7e8f90a1b2.jpg,sketching*symbolism*portraiture,83.33,,,8,7.5,,8.17,,8.33,7.83,,",
    "d4e5f60718293a4b5c6d7e8f90a1b2c3.jpg,sketching*romanticism*portraiture,21.67,3.33,3,2.83,,3,,,2.67,2.83,,Reviewed",
    "e5f60718293a4b5c6d7e8f90a1b2c3d4.jpg,oil painting*classicism*landscapes,,7.69,,7.38,7.69,7.62,7.69,7.62,6.92,7.54,7.15,",  # no total
    "f60718293a4b5c6d7e8f90a1b2c3d4e5.jpg,oil painting*classicism*still life,70,6.17,,7,5.83,x,6.5,6.33,6.67,6.17,6,",  # bad cell
    "b2c3d4e5f60718293a4b5c6d7e8f90a1.jpg,oil painting*romanticism*landscapes,11,1,1,1,,1,,1,1,1,1,",  # duplicate
]
# ArtCLIP's split lists (csvfiles/): the same columns with Score = total / 10 and no comment.
SPLIT_HEADER = (
    "filename,Artistic Categories,Score,Theme and logic,Creativity,Layout and composition,Space and perspective,"
    "The sense of order,Light and shadow,Color,Details and texture,The overall,Mood"
)


@pytest.fixture
def apdd(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "csvfiles").mkdir()
    comment_with_latin1 = "0718293a4b5c6d7e8f90a1b2c3d4e5f6.jpg,oil painting*classicism*portraiture,80.83,,,8.17,7.5,,7.67,7.5,7.67,7,,Tr\xe8s bien\n"
    (tmp_path / "APDDv2-10023.csv").write_bytes(
        ("\n".join([APDD_HEADER, *APDD_ROWS]) + "\n").encode() + comment_with_latin1.encode("latin-1")
    )
    (tmp_path / "csvfiles" / "test.csv").write_text(
        "\n".join(
            [
                SPLIT_HEADER,
                "c3d4e5f60718293a4b5c6d7e8f90a1b2.jpg,sketching*symbolism*portraiture,8.333,,,8,7.5,,8.17,,8.33,7.83,",
                "a1b2c3d4e5f60718293a4b5c6d7e8f90.png,traditional Chinese painting*meticulous*mountains and water,6.583,7.17,,6,5.83,6,6.17,5.67,6.5,6.5,6.67",
                "e5f60718293a4b5c6d7e8f90a1b2c3d4.jpg,oil painting*classicism*landscapes,7.423,7.69,,7.38,7.69,7.62,7.69,7.62,6.92,7.54,7.15",
                "f60718293a4b5c6d7e8f90a1b2c3d4e5.jpg,oil painting*classicism*still life,7,6.17,,7,5.83,6,6.5,6.33,6.67,6.17,6",
                "0718293a4b5c6d7e8f90a1b2c3d4e5f6.jpg,oil painting*classicism*portraiture,8.083,,,8.17,7.5,,7.67,7.5,7.67,7,",
                "99999999999999999999999999999999.jpg,oil painting*classicism*portraiture,5,,,5,5,,5,5,5,5,",  # not in the labels
            ]
        )
        + "\n"
    )
    (tmp_path / "csvfiles" / "train.csv").write_text(
        "\n".join(
            [
                SPLIT_HEADER,
                "b2c3d4e5f60718293a4b5c6d7e8f90a1.jpg,oil painting*romanticism*landscapes,6.5,6.2,5.6,6.2,,6.8,,6.6,6.4,6.6,6.4",
                "d4e5f60718293a4b5c6d7e8f90a1b2c3.jpg,sketching*romanticism*portraiture,2.167,3.33,3,2.83,,3,,,2.67,2.83,",
            ]
        )
        + "\n"
    )
    (tmp_path / "csvfiles" / "valid.csv").write_text(SPLIT_HEADER + "\n")
    return tmp_path


def test_apdd_reads_labels_from_the_release_and_membership_from_the_split_list(apdd):
    data = read_dataset(real_task("apdd-score", apdd))
    by_id = data.by_id()
    assert [it.id for it in data.items] == [
        "c3d4e5f60718293a4b5c6d7e8f90a1b2.jpg",
        "a1b2c3d4e5f60718293a4b5c6d7e8f90.png",
        "0718293a4b5c6d7e8f90a1b2c3d4e5f6.jpg",
    ]  # the split list's order
    first = by_id["a1b2c3d4e5f60718293a4b5c6d7e8f90.png"].label
    assert first["mos"] == 65.83  # the release's total, not ArtCLIP's 6.583
    assert first["attributes"] == {
        "theme_and_logic": 7.17,
        "layout_and_composition": 6.0,
        "space_and_perspective": 5.83,
        "the_sense_of_order": 6.0,
        "light_and_shadow": 6.17,
        "color": 5.67,
        "details_and_texture": 6.5,
        "the_overall": 6.5,
        "mood": 6.67,
    }  # Creativity blank
    portrait = by_id["c3d4e5f60718293a4b5c6d7e8f90a1b2.jpg"].label
    assert portrait == {
        "mos": 83.33,
        "attributes": {
            "layout_and_composition": 8.0,
            "space_and_perspective": 7.5,
            "light_and_shadow": 8.17,
            "details_and_texture": 8.33,
            "the_overall": 7.83,
        },
    }
    assert by_id["0718293a4b5c6d7e8f90a1b2c3d4e5f6.jpg"].label["mos"] == 80.83  # a non-UTF-8 comment does not matter
    why = reasons(data)
    assert (
        "not a finite number" in why["e5f60718293a4b5c6d7e8f90a1b2c3d4.jpg"]
        and "Total aesthetic score" in why["e5f60718293a4b5c6d7e8f90a1b2c3d4.jpg"]
    )
    assert "The sense of order 'x'" in why["f60718293a4b5c6d7e8f90a1b2c3d4e5.jpg"]
    assert "duplicate" in why["b2c3d4e5f60718293a4b5c6d7e8f90a1.jpg"]
    assert "listed in test.csv" in why["99999999999999999999999999999999.jpg"]
    assert [p.name for p in data.label_files] == ["APDDv2-10023.csv", "test.csv"]


def test_apdd_training_split_and_category_blanks(apdd):
    data = read_dataset(real_task("apdd-score", apdd, split="train"))
    assert [(it.id, it.label["mos"]) for it in data.items] == [
        ("b2c3d4e5f60718293a4b5c6d7e8f90a1.jpg", 65.0),
        ("d4e5f60718293a4b5c6d7e8f90a1b2c3.jpg", 21.67),
    ]
    romantic_sketch = data.items[1].label["attributes"]
    assert set(romantic_sketch) == {
        "theme_and_logic",
        "creativity",
        "layout_and_composition",
        "the_sense_of_order",
        "details_and_texture",
        "the_overall",
    }
    assert read_dataset(real_task("apdd-score", apdd, split="val")).items == []


def test_apdd_header_and_attribute_errors_are_one_line(apdd, tmp_path):
    task = real_task("apdd-score", apdd)
    task.protocol.attributes = ["colour"]
    with pytest.raises(
        AesbenchError, match="APDD has no attribute 'colour'; its attributes are theme_and_logic, creativity"
    ):
        read_dataset(task)
    (apdd / "APDDv2-10023.csv").write_text("filename,Score\nx.jpg,5\n")
    with pytest.raises(
        AesbenchError, match="header must have columns filename,Artistic Categories,Total aesthetic score"
    ) as caught:
        read_dataset(real_task("apdd-score", apdd))
    assert "\n" not in str(caught.value)


def test_attribute_keys_are_the_column_names_lower_cased():
    assert [attribute_key(c) for c in APDD_ATTRIBUTES] == load_task("apdd-score").protocol.attributes
    assert attribute_key("The sense of order") == "the_sense_of_order"


# --------------------------------------------------------------------------- ArtiMuse-10K


def artimuse_root(tmp_path: Path, text: str) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "score").mkdir()
    (tmp_path / "score" / "test.json").write_text(text)
    return tmp_path


RECORDS = [
    {"image": "photography_0001.jpg", "gt_score": 6.42},
    {"image": "painting_0002.png", "gt_score": 8},
    {"image": "design_0003.jpg", "gt_score": "7.1"},
    {"gt_score": 5.0},
    {"image": "photography_0001.jpg", "gt_score": 1.0},
    {"image": "aigc_0004.jpg", "gt_score": 3.25},
]


@pytest.mark.parametrize("layout", ["json list", "json lines"])
def test_artimuse_score_file_as_list_or_lines(tmp_path, layout):
    text = json.dumps(RECORDS, indent=2) if layout == "json list" else "".join(json.dumps(r) + "\n" for r in RECORDS)
    data = read_dataset(real_task("artimuse10k-score", artimuse_root(tmp_path, text)))
    assert [(it.id, it.label["mos"]) for it in data.items] == [
        ("photography_0001.jpg", 6.42),
        ("painting_0002.png", 8.0),
        ("aigc_0004.jpg", 3.25),
    ]
    why = reasons(data)
    assert "gt_score '7.1' is not a finite number" in why["design_0003.jpg"]
    assert "duplicate" in why["photography_0001.jpg"]
    assert any("needs a non-empty 'image'" in r for r in why.values())
    assert len(data.skipped) == 3


def test_artimuse_bad_files_and_training_split_are_one_line(tmp_path):
    root = artimuse_root(tmp_path, '[{"image": "a.jpg", "gt_score": 5}')  # truncated list
    with pytest.raises(AesbenchError, match="not valid JSON"):
        read_dataset(real_task("artimuse10k-score", root))
    (root / "score" / "test.json").write_text('{"image": "a.jpg", "gt_score": 5}\nnot json\n')
    data = read_dataset(real_task("artimuse10k-score", root))
    assert [it.id for it in data.items] == ["a.jpg"] and reasons(data) == {
        "test.json:2": "malformed line: not a JSON object"
    }
    with pytest.raises(AesbenchError, match="releases only its test set"):
        read_dataset(real_task("artimuse10k-score", root, split="train"))


# --------------------------------------------------------------------------- the tiny twin


def tiny_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_art_is_read_as_apdd_with_its_split_lists():
    task = load_task("tiny-art-score")
    data = read_dataset(task)
    labels = {r["filename"]: r for r in tiny_rows(TINY_ART / "APDDv2-tiny.csv")}
    listed = [r["filename"] for r in tiny_rows(TINY_ART / "csvfiles" / "test.csv")]
    assert [it.id for it in data.items] == listed and len(listed) == 36 and data.skipped == []
    for item in data.items:
        row = labels[item.id]
        assert item.label["mos"] == float(row["Total aesthetic score"]) and item.image.is_file()
        assert item.label["attributes"] == {attribute_key(c): float(row[c]) for c in APDD_ATTRIBUTES if row[c]}
        style = row["Artistic Categories"].split("*")[1]
        blank = {c for c in APDD_ATTRIBUTES if not row[c]}
        assert blank == ({"Space and perspective", "Light and shadow"} if style == "abstract" else {"Creativity"})
    train = read_dataset(real_task("tiny-art-score", TINY_ART, split="train"))
    assert len(train.items) == 45 and not {it.id for it in train.items} & set(listed)


def test_tiny_art_splits_keep_each_artwork_in_one_split():
    edits = tiny_rows(TINY_ART / "edits.csv")
    splits_of = {}
    for row in edits:
        splits_of.setdefault(row["source"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values()) and len(splits_of) == 31
    assert Counter(row["split"] for row in edits) == {"test": 36, "val": 12, "train": 45}
    totals = {r["filename"]: float(r["Total aesthetic score"]) for r in tiny_rows(TINY_ART / "APDDv2-tiny.csv")}
    damage = [-float(r["damage"]) for r in edits]
    assert stats.spearmanr(damage, [totals[r["filename"]] for r in edits])[0] > 0.5  # edits lower the total


def test_tiny_art_descriptions_cover_every_image():
    described = read_descriptions(TINY_ART / "descriptions.jsonl")
    totals = {r["filename"]: float(r["Total aesthetic score"]) for r in tiny_rows(TINY_ART / "APDDv2-tiny.csv")}
    assert described.skipped == [] and set(described.records) == set(totals) and len(totals) == 93
    assert described.header["score_range"] == [0, 100] and described.header["model"]["name"] == "template"
    for name, record in described.records.items():
        assert record["score"] == totals[name]
        assert record["score_sentence"] == score_sentence(totals[name], (0, 100))
    edited = {r["filename"] for r in tiny_rows(TINY_ART / "edits.csv") if r["edits"]}
    assert all(("No damage is visible." in described.records[n]["perception"]) == (n not in edited) for n in totals)
