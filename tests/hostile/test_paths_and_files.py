"""Hostile inputs, classes 2 and 3: nothing outside the named places is read or written, error
messages never echo a file's content, and non-regular files, aliases and huge files never hang."""

from __future__ import annotations

import json
import os
import time

import pytest

from aesbench.datasets import read_dataset
from aesbench.errors import AesbenchError
from aesbench.runs import evaluate
from aesbench.adapter import load_model
from aesbench.task import load_task

from conftest import natural_image, write_csv_task
from hostile_util import cli, one_line_error


@pytest.mark.parametrize("name", ["../../ESCAPED", "/abs/ESCAPED", "..", "a/b", ".hidden", "x\ny"])
def test_suite_task_names_cannot_leave_the_output_folder(tmp_path, name):
    task = write_csv_task(tmp_path / "data", [3, 5, 7])
    task.write_text(task.read_text().replace("name: my-score", f"name: {json.dumps(name)}"))
    out = tmp_path / "deep" / "er" / "out"
    r = cli("suite", "--output", str(out), "--tasks", str(task), "--models", "constant", "--quiet", cwd=tmp_path)
    assert "cannot name a folder: use letters, digits" in one_line_error(r)
    assert not (tmp_path / "ESCAPED").exists() and not (tmp_path / "deep" / "ESCAPED").exists()
    assert not out.exists() and not os.path.exists("/abs/ESCAPED")


def test_image_ids_outside_the_images_folder_are_recorded_skips(tmp_path):
    """A label file naming ../outside/secret.jpg or an absolute path: skipped with a reason, the file not read."""
    task = write_csv_task(tmp_path / "data", [3, 5, 7, 9])
    (tmp_path / "outside").mkdir()
    natural_image(9).save(tmp_path / "outside" / "secret.jpg")
    labels = tmp_path / "data" / "labels.csv"
    secret = tmp_path / "outside" / "secret.jpg"
    labels.write_text(labels.read_text() + f"../../outside/secret.jpg,8\n{secret},2\n")
    before = secret.stat().st_atime_ns
    results = evaluate(load_task(str(task)), tmp_path / "run", model=load_model("constant"))
    reasons = {s["id"]: s["reason"] for s in results["skipped"]}
    leave = "image path leaves the images folder (absolute or '..'); not read"
    assert reasons == {"../../outside/secret.jpg": leave, str(secret): leave}
    assert results["n"] == 4
    lines = (tmp_path / "run" / "predictions.jsonl").read_text()
    assert "secret" not in lines and secret.stat().st_atime_ns == before


def test_errors_never_echo_file_content(tmp_path):
    """A label path pointed at a secrets file: the error says what is wrong and where, not what it holds."""
    task = write_csv_task(tmp_path / "data", [3, 5])
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$SECRETHASH$abc:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    task.write_text(task.read_text().replace("path: labels.csv", f"path: {secret}"))
    line = one_line_error(cli("eval", "--task", str(task), "--model", "constant", "--output", str(tmp_path / "r")))
    assert "header must have columns image,score[,split]; it lacks image, score (1 columns found)" in line
    assert "SECRETHASH" not in line and "19000" not in line
    # AVA rows: a malformed row is a recorded skip whose reason holds no part of the row
    ava = tmp_path / "ava"
    (ava / "images").mkdir(parents=True)
    (ava / "AVA.txt").write_text("1 42 root:SECRETHASH 0 0 0 0 0 0 0 0 0 0 0 0\n")
    (ava / "list.jpgl").write_text("42\n")
    (ava / "t.yaml").write_text(
        "name: t\nfamily: score\ndataset: {format: ava, path: AVA.txt, images: images, split_list: list.jpgl}\n"
    )
    data = read_dataset(load_task(str(ava / "t.yaml")))
    assert data.items == [] and all("SECRET" not in s["reason"] for s in data.skipped)
    assert data.skipped[0]["reason"].startswith("malformed AVA row (a vote count is not an integer)")


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_non_regular_label_files_are_refused_not_read(tmp_path, kind):
    task = write_csv_task(tmp_path / "data", [3, 5])
    if kind == "fifo":
        target = tmp_path / "labels.fifo"
        os.mkfifo(target)  # opening it for reading would block forever
    elif kind == "device":
        target = "/dev/zero"  # reading it never ends
    else:
        target = tmp_path / "data" / "images"
    task.write_text(task.read_text().replace("path: labels.csv", f"path: {target}"))
    started = time.monotonic()
    r = cli("eval", "--task", str(task), "--model", "constant", "--output", str(tmp_path / "r"), "--quiet")
    assert f"{target} is not a regular file (dataset.path)" in one_line_error(r)
    assert time.monotonic() - started < 60


def test_yaml_aliases_refused(tmp_path):
    """The 'billion laughs': 9 levels of 9 aliases, a few hundred bytes that expand to 9**9 strings."""
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    task = tmp_path / "laughs.yaml"
    task.write_text(
        "name: laughs\nfamily: score\ndataset: {format: csv, path: l.csv, images: i}\nnotes:\n"
        + "".join(f"  {line}\n" for line in levels)
    )
    assert task.stat().st_size < 1000
    started = time.monotonic()
    line = one_line_error(cli("tasks", str(task)))
    assert "YAML aliases (*a) are not allowed in a task" in line and time.monotonic() - started < 60
    with pytest.raises(AesbenchError, match="aliases"):
        load_task(str(task))


def test_huge_task_file_refused(tmp_path):
    task = tmp_path / "big.yaml"
    task.write_text("name: big\nfamily: score\ndataset: {format: csv, path: l.csv, images: i}\n# " + "x" * (1 << 20))
    assert "is over 1048576 bytes: not a task file" in one_line_error(cli("tasks", str(task)))
