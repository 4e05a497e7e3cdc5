"""AVA-Captions' reference text: `reference_field` picks raw, clean or tokens (joined by spaces), refuses
anything else in one line, and is recorded with the task (so with every result) even when left out."""

from __future__ import annotations

import json

import pytest
from conftest import natural_image

from aesbench.datasets import read_dataset
from aesbench.errors import AesbenchError
from aesbench.task import load_task

# Sentences in the released file's layout (Karpathy/COCO style, as Ghosal et al.'s AVA-Captions JSON).
ENTRIES = [
    {
        "filename": "953619.jpg",
        "imgid": 0,
        "split": "test",
        "sentids": [0, 1],
        "sentences": [
            {
                "raw": "Great colours!! Don't crop it :)",
                "clean": "great colours dont crop it",
                "tokens": ["great", "colours", "dont", "crop", "it"],
                "imgid": 0,
                "sentid": 0,
            },
            {"raw": "Too DARK.", "clean": "too dark", "tokens": ["too", "dark"], "imgid": 0, "sentid": 1},
        ],
    },
    {
        "filename": "953958.jpg",
        "imgid": 1,
        "split": "test",
        "sentids": [2, 3],
        "sentences": [
            {"raw": "Nice (sharp) focus.", "tokens": ["nice", "sharp", "focus"], "imgid": 1, "sentid": 2},
            {"raw": "", "clean": "", "tokens": [], "imgid": 1, "sentid": 3},
        ],
    },
    {
        "filename": "954184.jpg",
        "imgid": 2,
        "split": "train",
        "sentids": [4],
        "sentences": [
            {"raw": "train only", "clean": "train only", "tokens": ["train", "only"], "imgid": 2, "sentid": 4}
        ],
    },
]


def project(tmp_path, field: str | None):
    (tmp_path / "images").mkdir(exist_ok=True)
    for n, entry in enumerate(ENTRIES):
        natural_image(n).save(tmp_path / "images" / entry["filename"])
    (tmp_path / "captions.json").write_text(json.dumps({"images": ENTRIES, "dataset": "AVA"}))
    extra = f", reference_field: {field}" if field is not None else ""
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: c\nfamily: comment\n"
        f"dataset: {{format: ava-captions, path: captions.json, images: images, split: test{extra}}}\n"
    )
    return load_task(str(path))


def references(task):
    data = read_dataset(task)
    return {it.id: it.label["references"] for it in data.items}, data.skipped


def test_raw_is_the_default_and_recorded(tmp_path):
    task = project(tmp_path, None)
    assert task.dataset["reference_field"] == "raw" and task.to_dict()["dataset"]["reference_field"] == "raw"
    refs, skipped = references(task)
    assert refs == {"953619": ["Great colours!! Don't crop it :)", "Too DARK."], "953958": ["Nice (sharp) focus."]}
    assert skipped == []


def test_tokens_are_joined_by_spaces(tmp_path):
    refs, _ = references(project(tmp_path, "tokens"))
    assert refs == {"953619": ["great colours dont crop it", "too dark"], "953958": ["nice sharp focus"]}


def test_clean_leaves_out_sentences_without_it(tmp_path):
    refs, skipped = references(project(tmp_path, "clean"))
    assert refs == {"953619": ["great colours dont crop it", "too dark"]}
    assert skipped == [{"id": "953958", "reason": "no reference sentences with a non-empty 'clean'"}]


@pytest.mark.parametrize("value", ["Tokens", "sentence", "[raw]"])
def test_other_fields_are_one_line_errors(tmp_path, value):
    with pytest.raises(AesbenchError, match=r"dataset.reference_field must be raw or clean or tokens") as e:
        project(tmp_path, value)
    assert "\n" not in str(e.value)


def test_shipped_tasks_name_their_field():
    assert load_task("ava-comment").dataset["reference_field"] == "tokens"
    assert "tokens" in load_task("ava-comment").notes["references"]
    assert load_task("tiny-ava-comment").dataset["reference_field"] == "tokens"
