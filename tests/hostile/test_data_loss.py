"""Hostile inputs, class 4: data is never lost or mixed. Inputs are never written to, a run folder
is used by one run at a time, a folder whose run.json is missing or broken is refused, and a failed
write (disk full) leaves no partial file behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aesbench.store import run_lock

from hostile_util import cli, one_line_error
from conftest import prediction_records

EVAL = ("eval", "--task", "tiny-ava-score", "--model", "handcrafted", "--quiet")


def ids_of(path):
    return [line["id"] for line in prediction_records(path)]


def test_predictions_input_is_never_overwritten(tmp_path):
    run = tmp_path / "x"
    assert cli(*EVAL, "--output", str(run)).returncode == 0
    preds = run / "predictions.jsonl"
    before = preds.read_bytes()
    assert len(before.splitlines()) == 1 + 60  # the run header, then one line per item
    for _ in range(2):  # the second try is refused the same way: nothing was changed by the first
        r = cli("eval", "--task", "tiny-ava-score", "--predictions", str(preds), "--output", str(run), "--limit", "30")
        line = one_line_error(r)
        assert f"would overwrite {preds} (predictions.jsonl), an input of this run" in line
        assert preds.read_bytes() == before
    results = run / "results.json"  # a results file given as predictions is an input too
    keep = results.read_bytes()
    r = cli("eval", "--task", "tiny-ava-score", "--predictions", str(results), "--output", str(run))
    assert "(results.json), an input of this run" in one_line_error(r) and results.read_bytes() == keep


def test_a_folder_in_use_is_refused_with_the_holder_pid(tmp_path):
    run = tmp_path / "x"
    run.mkdir()
    with run_lock(run):
        r = cli(*EVAL, "--output", str(run))
        assert one_line_error(r) == (
            f"error: {run} is in use by pid {os.getpid()} (another aesbench run); wait for it"
            " to end or choose another --output"
        )
    assert not (run / "predictions.jsonl").exists() and not (run / "run.json").exists()
    assert cli(*EVAL, "--output", str(run)).returncode == 0  # released with its holder


def test_two_evals_at_once_never_mix(tmp_path):
    """Started together with different seeds: one runs, the other is refused (in use, or a different run), and the
    folder holds one run's 60 ids, each once."""
    run = tmp_path / "x"
    exe = [sys.executable, "-m", "aesbench"]
    procs = [
        subprocess.Popen([*exe, *EVAL, "--output", str(run), "--seed", str(s)], stderr=subprocess.PIPE, text=True)
        for s in (1, 2)
    ]
    outcomes = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    refused = next(err for code, err in outcomes if code == 2)
    assert "is in use by pid" in refused or "holds a different run (seed" in refused
    ids = ids_of(run / "predictions.jsonl")
    assert len(ids) == 60 and len(set(ids)) == 60
    assert json.loads((run / "run.json").read_text())["seed"] in (1, 2)


@pytest.mark.parametrize("content", [None, "", '{"task": "tiny-ava-sc', "[1, 2]", "\xff\xfe"])
def test_folder_without_a_valid_run_json_is_refused(tmp_path, content):
    run = tmp_path / "x"
    assert cli(*EVAL, "--output", str(run)).returncode == 0
    preds = (run / "predictions.jsonl").read_bytes()
    if content is None:
        (run / "run.json").unlink()
    else:
        (run / "run.json").write_text(content, encoding="latin-1")
    r = cli("eval", "--task", "tiny-ava-score", "--model", "constant", "--output", str(run), "--quiet")
    line = one_line_error(r)
    if content is None:
        assert f"{run} holds predictions.jsonl but no run.json, so what made it is unknown" in line
    else:
        assert "run.json is not a valid run record (empty, truncated or not a JSON object)" in line
    assert (run / "predictions.jsonl").read_bytes() == preds


@pytest.mark.parametrize(
    "content", [b"my notes\nsecond line without newline", b"one line, no newline", b"{}\n", b'{"a": "SECRET"}\n']
)
def test_describe_never_touches_a_file_it_did_not_write(tmp_path, content):
    target = tmp_path / "notes.txt"
    target.write_bytes(content)
    r = cli("describe", "--images", "tiny-art-score", "--model", "handcrafted", "--output", str(target), "--limit", "1")
    line = one_line_error(r)
    assert "does not start with a header line" in line and "SECRET" not in line
    assert target.read_bytes() == content


def test_describe_output_folder_or_under_a_file(tmp_path):
    r = cli(
        "describe", "--images", "tiny-art-score", "--model", "handcrafted", "--output", str(tmp_path), "--limit", "1"
    )
    assert f"{tmp_path} is not a regular file; choose another output" in one_line_error(r)
    (tmp_path / "f").write_text("x")
    r = cli("describe", "--images", "tiny-art-score", "--model", "handcrafted", "--output", str(tmp_path / "f" / "o"))
    assert f"cannot create {tmp_path / 'f'}" in one_line_error(r)


def test_output_that_is_a_file_or_under_one(tmp_path):
    f = tmp_path / "file"
    f.write_text("keep")
    for out in (f, f / "run"):
        assert f"cannot create run folder {out}" in one_line_error(cli(*EVAL, "--output", str(out)))
    assert f.read_text() == "keep"


@pytest.mark.parametrize("command", [("nima", "--task", "tiny-ava-score"), ("artquant",)])
def test_training_output_that_is_a_file(tmp_path, command):
    """NIMA and the recipes (CALM, ArtQuant) refuse an output that is not theirs by one rule; a file was a
    NotADirectoryError traceback for the recipes."""
    f = tmp_path / "file"
    f.write_text("keep")
    line = one_line_error(cli("train", *command, "--output", str(f)))
    assert f"output {f} already exists and is not an empty folder" in line
    assert f.read_text() == "keep"


def test_disk_full_leaves_no_partial_results(tmp_path):
    """results.tmp is a link to /dev/full, so writing results.json fails with ENOSPC as on a full disk."""
    run = tmp_path / "x"
    assert cli(*EVAL, "--output", str(run)).returncode == 0
    old = (run / "results.json").read_bytes()
    (run / "results.tmp").symlink_to("/dev/full")
    line = one_line_error(cli(*EVAL, "--output", str(run)))
    assert line == f"error: cannot write {run / 'results.json'}: No space left on device"
    assert not (run / "results.tmp").exists() and not (run / "results.tmp").is_symlink()
    assert (run / "results.json").read_bytes() == old and len(ids_of(run / "predictions.jsonl")) == 60


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_is_one_line(tmp_path):
    run = tmp_path / "ro"
    run.mkdir()
    run.chmod(0o555)
    try:
        assert "cannot" in one_line_error(cli(*EVAL, "--output", str(run)))
    finally:
        run.chmod(0o755)
