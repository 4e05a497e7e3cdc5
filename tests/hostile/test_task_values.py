"""Hostile inputs, class 5b: a task's values are validated at load, before any model work. Unknown keys
are refused everywhere (the dataset block included), protocol numbers must be finite and ranges
ordered, and a family never reads a dataset format whose labels it cannot score (every pair)."""

from __future__ import annotations

import pytest

from aesbench.errors import AesbenchError
from aesbench.datasets import FORMATS
from aesbench.families import FAMILIES
from aesbench.task import family_formats, load_task

from conftest import write_csv_task
from hostile_util import cli, one_line_error

ALL_FORMATS = FORMATS.names()


def task_with(tmp_path, old: str, new: str):
    path = write_csv_task(tmp_path, [3, 5, 7], splits=["test", "test", "train"], split="test")
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


def test_dataset_typo_is_refused_not_ignored(tmp_path):
    """spilt: test was silently ignored (every row read, n = 3 instead of 2)."""
    path = task_with(tmp_path, "split: test", "spilt: test")
    r = cli("eval", "--task", str(path), "--model", "constant", "--output", str(tmp_path / "run"))
    assert "unknown dataset key 'spilt' for format csv; did you mean 'split'?" in one_line_error(r)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("split: test", "split: true", "dataset.split must be a split name such as test, not True"),
        ("format: csv", "format: [csv]", "unknown dataset format ['csv']"),
        ("path: labels.csv", "path: {a: 1}", "dataset.path must be text, not {'a': 1}"),
        ("images: images/", "images: 5", "dataset.images must be text, not 5"),
        ("family: score", "family: [score]", "family ['score'] is not one of"),
    ],
)
def test_dataset_value_types(tmp_path, old, new, message):
    path = task_with(tmp_path, old, new)
    with pytest.raises(AesbenchError) as e:
        load_task(str(path))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "protocol, message",
    [
        ("{acc_threshold: .nan}", "protocol.acc_threshold must be a finite number, not nan"),
        ("{acc_threshold: .inf}", "protocol.acc_threshold must be a finite number, not inf"),
        ("{score_range: [1, .inf]}", "protocol.score_range must be [low, high]: two finite numbers, low below high"),
        ("{score_range: [10, 1]}", "protocol.score_range must be [low, high]"),
        ("{score_range: [.nan, 1]}", "protocol.score_range must be [low, high]"),
        ("{score_range: [1, 5, 10]}", "protocol.score_range must be [low, high]"),
        ("{score_range: 5}", "protocol.score_range must be [low, high]"),
        ("{bootstrap: {level: .nan}}", "protocol.bootstrap must be"),
        ("{bootstrap: {resamples: -1}}", "protocol.bootstrap must be"),
        ("{bootstrap: {sead: 1}}", "protocol.bootstrap must be"),
        ("{acc_threshold: true}", "protocol.acc_threshold must be a finite number, not True"),
        ("{attributes: [Color]}", "protocol.attributes must be"),
    ],
)
def test_protocol_values(tmp_path, protocol, message):
    path = write_csv_task(tmp_path, [3, 5, 7], extra=f"protocol: {protocol}\n")
    r = cli("eval", "--task", str(path), "--model", "constant", "--output", str(tmp_path / "run"))
    assert message in one_line_error(r)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("family", FAMILIES.names())
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_every_family_format_pair(tmp_path, family, fmt):
    """Each of the 4 x 8 pairs: the family's own formats load; every other pair is refused at load."""
    path = tmp_path / "t.yaml"
    path.write_text(f"name: pair\nfamily: {family}\ndataset: {{format: {fmt}, images: images}}\n")
    if fmt in family_formats(family):
        assert load_task(str(path)).dataset["format"] == fmt
        return
    with pytest.raises(AesbenchError) as e:
        load_task(str(path))
    assert f"a {family} task cannot read dataset format {fmt!r}" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "task_text, model",
    [
        (
            "name: x\nfamily: score\ndataset: {format: pccd, root: ROOT/tiny-pccd, path: pccd.json, images: images}\n",
            "handcrafted",
        ),
        (
            "name: x\nfamily: comment\ndataset: {format: csv, root: ROOT/tiny-ava, path: labels.csv, images: images}\n",
            "handcrafted",
        ),
    ],
)
def test_family_format_mismatch_refused_before_the_model_runs(tmp_path, task_text, model):
    """score over pccd (KeyError 'mos' after the model ran) and comment over csv: one line, no run folder."""
    from hostile_util import REPO

    path = tmp_path / "t.yaml"
    path.write_text(task_text.replace("ROOT", str(REPO / "tasks" / "data")))
    r = cli("eval", "--task", str(path), "--model", model, "--output", str(tmp_path / "run"))
    assert "task cannot read dataset format" in one_line_error(r)
    assert not (tmp_path / "run").exists()


def test_metrics_and_prompt_types(tmp_path):
    for extra, message in (
        ("metrics: [[srcc]]\n", "metrics must be a list of metric names"),
        ("prompt: [a, b]\n", "prompt must be text, not list"),
    ):
        path = write_csv_task(tmp_path / extra[:6], [3, 5], extra=extra)
        with pytest.raises(AesbenchError, match=message):
            load_task(str(path))
