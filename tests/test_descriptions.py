"""The hierarchical description format (perception, cognition, emotion, score) and `aesbench describe`:
the reader's checks, the prompt plumbing of generate -> critique -> refine, and the whole pipeline on a
tiny random Hugging Face VLM saved with save_pretrained, including resume after an interruption."""

from __future__ import annotations

import json
import os

import pytest

from aesbench.adapter import Model, load_model
from aesbench.descriptions import LEVELS, PROMPTS, describe, read_descriptions, score_sentence
from aesbench.errors import AesbenchError
from aesbench.store import PredictionStore
from aesbench.datasets import read_dataset
from aesbench.task import load_task

from conftest import natural_image, run_cli

GOOD = {
    "id": "a.jpg",
    "perception": "Warm reds, soft light.",
    "cognition": "A still life.",
    "emotion": "Calm.",
    "score": 7.5,
    "score_sentence": "The quality of the painting is good.",
}


# --------------------------------------------------------------------------- the format


def test_reader_keeps_good_records_and_says_why_it_skips_the_rest(tmp_path):
    lines = [
        json.dumps({"aesbench_descriptions": 1, "source": "elsewhere"}),
        json.dumps(GOOD),
        json.dumps({**GOOD, "id": "b.jpg", "score": None, "score_sentence": None, "trace": {"perception": []}}),
        "{not json",
        json.dumps({**GOOD, "id": "c.jpg", "emotion": "  "}),
        json.dumps({**GOOD, "id": "d.jpg", "score": "7.5"}),
        json.dumps({**GOOD, "id": "e.jpg", "mood": "calm"}),
        json.dumps({**GOOD, "id": "f.jpg", "cognition": None}),
        json.dumps({"id": "g.jpg", "skipped": "not a readable image"}),
        json.dumps({**GOOD, "id": ""}),
        json.dumps(GOOD),
        json.dumps([1, 2]),
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    read = read_descriptions(path)
    assert read.header == {"aesbench_descriptions": 1, "source": "elsewhere"}
    assert list(read.records) == ["a.jpg", "b.jpg"] and read.records["a.jpg"] == GOOD
    why = {s["id"]: s["reason"] for s in read.skipped}
    assert why == {
        "d.jsonl:4": "malformed line: not UTF-8 JSON",
        "c.jpg": "malformed line 5: no emotion text",
        "d.jpg": "malformed line 6: score '7.5' is neither a finite number nor null",
        "e.jpg": "malformed line 7: unknown key 'mood' (known: cognition, emotion, id, perception, score, score_sentence, trace)",
        "f.jpg": "malformed line 8: no cognition text",
        "g.jpg": "not a readable image",
        "d.jsonl:10": "malformed line: needs a non-empty text 'id'",
        "a.jpg": "duplicate id at line 11; the first was kept",
        "d.jsonl:12": "malformed line: needs a non-empty text 'id'",
    }


def test_reader_errors_are_one_line(tmp_path):
    with pytest.raises(AesbenchError, match="not found"):
        read_descriptions(tmp_path / "none.jsonl")
    late = tmp_path / "late.jsonl"
    late.write_text(json.dumps(GOOD) + "\n" + json.dumps({"aesbench_descriptions": 1}) + "\n")
    with pytest.raises(AesbenchError, match="may only open the file"):
        read_descriptions(late)
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({"aesbench_descriptions": 2}) + "\n")
    with pytest.raises(AesbenchError, match="format version 1"):
        read_descriptions(newer)


@pytest.mark.parametrize(
    "score, score_range, level",
    [
        (1.0, (0, 10), "bad"),
        (1.01, (0, 10), "poor"),
        (3.5, (0, 10), "poor"),
        (5.0, (0, 10), "fair"),
        (7.5, (0, 10), "good"),
        (7.51, (0, 10), "excellent"),
        (65.83, (0, 100), "good"),
        (1.0, (1, 10), "bad"),
    ],
)
def test_score_sentence_uses_artquants_bands(score, score_range, level):
    assert score_sentence(score, score_range) == f"The quality of the painting is {level}."


def test_store_with_a_header_writes_it_once_and_refuses_another_run(tmp_path):
    path = tmp_path / "d.jsonl"
    store = PredictionStore(path, {"aesbench_descriptions": 1, "rounds": (1,)})
    store.write([{"id": "a", "x": 1}])
    assert path.read_text().splitlines()[0] == '{"aesbench_descriptions": 1, "rounds": [1]}'
    again = PredictionStore(path, {"aesbench_descriptions": 1, "rounds": [1]})  # tuples read back as lists
    assert list(again.lines) == ["a"]
    with pytest.raises(AesbenchError, match=r"holds a different run \(rounds: \[1\], now 2\)"):
        PredictionStore(path, {"aesbench_descriptions": 1, "rounds": 2})
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"aesbench_desc')  # died while writing the header
    PredictionStore(torn, {"aesbench_descriptions": 1})
    assert torn.read_text() == '{"aesbench_descriptions": 1}\n'


# --------------------------------------------------------------------------- the loop, with a model that numbers its replies


class Numbered(Model):
    """Answers every prompt with "reply N" (N counts its calls) and keeps the prompts it was given."""

    name = "numbered"
    capabilities = frozenset({"comment"})

    def __init__(self, blank_after: int | None = None):
        self.prompts, self.blank_after = [], blank_after

    def comment(self, images, request):
        self.prompts.append(request.prompt)
        n = len(self.prompts)
        return ["" if self.blank_after is not None and n > self.blank_after else f"reply {n}"]


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    natural_image(1).save(images / "a.jpg")
    natural_image(2).save(images / "sub" / "b.png")
    (images / "notes.txt").write_text("not an image")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    return images


def test_each_level_is_drafted_critiqued_and_refined_with_the_levels_before_it(folder, tmp_path):
    model = Numbered()
    done = describe(str(folder), model, tmp_path / "d.jsonl", rounds=2, limit=1)
    assert done == {
        "output": str(tmp_path / "d.jsonl"),
        "images": 1,
        "described": 1,
        "skipped": 0,
        "resumed_from": 0,
        "reader_skips": 0,
    }
    p = model.prompts
    assert len(p) == 3 * (1 + 2 * 2)
    assert p[0] == PROMPTS["perception"]
    assert p[1] == PROMPTS["critique"].format(level="perception", draft="reply 1")
    assert p[2] == PROMPTS["refine"].format(level="perception", draft="reply 1", critique="reply 2")
    assert p[4] == PROMPTS["refine"].format(level="perception", draft="reply 3", critique="reply 4")
    assert p[5] == PROMPTS["cognition"].format(perception="reply 5")
    assert p[10] == PROMPTS["emotion"].format(perception="reply 5", cognition="reply 10")
    record = read_descriptions(tmp_path / "d.jsonl").records["a.jpg"]
    assert (record["perception"], record["cognition"], record["emotion"]) == ("reply 5", "reply 10", "reply 15")
    assert record["trace"]["perception"] == [
        {"draft": "reply 1", "critique": "reply 2"},
        {"draft": "reply 3", "critique": "reply 4"},
    ]
    assert record["score"] is None and record["score_sentence"] is None  # a folder has no labels


def test_folder_images_unreadable_files_and_empty_answers(folder, tmp_path):
    out = tmp_path / "d.jsonl"
    done = describe(str(folder), Numbered(blank_after=3), out, rounds=0)
    read = read_descriptions(out)
    assert done["images"] == 3 and done["described"] == 1 and done["skipped"] == 2  # notes.txt is not an image
    assert list(read.records) == ["a.jpg"]
    why = {s["id"]: s["reason"] for s in read.skipped}
    assert "not a readable image" in why["broken.jpg"]
    assert why["sub/b.png"] == "the model wrote an empty perception description"
    assert read.header["source"] == str(folder) and read.header["rounds"] == 0 and read.header["prompts"] == PROMPTS


def test_describe_refuses_what_it_cannot_use(tmp_path):
    class ScoreOnly(Model):
        name, capabilities = "score-only", frozenset({"score"})

    with pytest.raises(AesbenchError, match="model 'score-only' cannot write text"):
        describe("tiny-art-score", ScoreOnly(), tmp_path / "d.jsonl")
    with pytest.raises(AesbenchError, match="takes a folder or a score task"):
        describe("tiny-ava-comment", Numbered(), tmp_path / "d.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AesbenchError, match="holds no image files"):
        describe(str(tmp_path / "empty"), Numbered(), tmp_path / "d.jsonl")


# --------------------------------------------------------------------------- the command


def test_describe_command_writes_and_resumes(folder, tmp_path):
    out = tmp_path / "d.jsonl"
    args = (
        "describe",
        "--images",
        str(folder),
        "--model",
        "constant",
        "--model-arg",
        "value=5",
        "--output",
        str(out),
        "--rounds",
        "0",
        "--limit",
        "2",
    )
    env = {**os.environ, "COLUMNS": "300"}
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert "1 of 2 images described, 1 skipped (0 already in the file)" in first.stderr  # broken.jpg is a skip
    read = read_descriptions(out)
    assert list(read.records) == ["a.jpg"] and read.header["model"] == {"name": "constant", "config": {"value": 5}}
    written = out.read_bytes()
    again = run_cli(*args, "--quiet", env=env)
    assert again.returncode == 0 and again.stderr == ""
    assert out.read_bytes() == written and len(written.splitlines()) == 3  # header, a.jpg, broken.jpg: nothing redone


# --------------------------------------------------------------------------- a tiny real VLM, end to end


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    pytest.importorskip("transformers")
    from test_mllm_readout import build_checkpoint  # the tiny LLaVA the readout tests use

    return str(build_checkpoint(tmp_path_factory.mktemp("vlm"), "plain"))


def generator(vlm):
    return load_model("mllm-readout", {"path": vlm, "max_new_tokens": 4})


@pytest.fixture(scope="module")
def whole(vlm, tmp_path_factory):
    """Three tiny-art images described in one uninterrupted run, one refinement round."""
    out = tmp_path_factory.mktemp("whole") / "art.jsonl"
    describe("tiny-art-score", generator(vlm), out, limit=3)
    return out


def test_a_local_vlm_describes_task_images_with_their_scores(vlm, whole):
    read = read_descriptions(whole)
    assert read.skipped == [] and len(read.records) == 3
    header = read.header
    assert header["rounds"] == 1 and header["prompts"] == PROMPTS and header["levels"] == list(LEVELS)
    assert header["source"] == "tiny-art-score" and header["score_range"] == [0.0, 100.0]
    assert header["model"]["name"] == "mllm-readout" and header["model"]["weights_sha256"]
    truth = read_dataset(load_task("tiny-art-score")).by_id()
    for name, record in read.records.items():
        assert all(record[level] for level in LEVELS)
        assert record["score"] == truth[name].label["mos"]
        assert record["score_sentence"] == score_sentence(record["score"], (0, 100))
        assert all(len(record["trace"][level]) == 1 for level in LEVELS)
    with pytest.raises(AesbenchError, match=r"holds a different run \(rounds: 1, now 2\)"):
        describe("tiny-art-score", generator(vlm), whole, rounds=2, limit=3)


def interrupt_after(n: int):
    """A progress tracker that stops the run (as Ctrl-C does) when item n + 1 is due."""

    def track(iterable, total, description):
        for i, item in enumerate(iterable):
            if i == n:
                raise KeyboardInterrupt
            yield item

    return track


def test_an_interrupted_run_resumes_to_the_same_file_without_redoing_images(vlm, whole, tmp_path):
    resumed = tmp_path / "resumed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        describe("tiny-art-score", generator(vlm), resumed, limit=3, track=interrupt_after(1))
    first = resumed.read_text().splitlines()
    assert len(first) == 1 + 1
    with open(resumed, "a") as f:
        f.write('{"id": "art_02_1.jpg", "percep')  # killed mid-write
    done = describe("tiny-art-score", generator(vlm), resumed, limit=3)
    assert done["resumed_from"] == 1 and done["described"] == 3
    lines = resumed.read_text().splitlines()
    assert lines[:2] == first  # the finished image was not redone
    assert lines == whole.read_text().splitlines()  # greedy decoding: the same text as an uninterrupted run
