"""Hostile inputs, class 6: the leaderboard reads records from elsewhere. A broken record is one line
naming the file and field (never a traceback), names cannot break the markdown, and records of one task
name under different protocols are never merged into one table."""

from __future__ import annotations

import json
import re

import pytest

from aesbench.adapter import load_model
from aesbench.leaderboard import render_csv, render_markdown
from aesbench.runs import evaluate, load_results
from aesbench.task import load_task

from conftest import write_csv_task
from hostile_util import cli, one_line_error


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    task = write_csv_task(root / "data", [2, 4, 6, 8, 3])
    evaluate(load_task(str(task)), root / "run", model=load_model("handcrafted"))
    return json.loads((root / "run" / "results.json").read_text())


def write(tmp_path, rec, raw: bytes | None = None):
    folder = tmp_path / "r"
    folder.mkdir(exist_ok=True)
    (folder / "results.json").write_bytes(raw if raw is not None else json.dumps(rec).encode())
    return folder


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("model"), "model is missing or not text"),
        (lambda r: r["metrics"].update(srcc="0.9"), "metric 'srcc' is not a number"),
        (lambda r: r["metrics"].update(srcc=True), "metric 'srcc' is not a number"),
        (lambda r: r.update(metrics=[0.1, 0.2]), "metrics is missing or not a mapping"),
        (lambda r: r["ci95"].update(srcc=[0.1]), "ci95 of 'srcc' is not [low, high]"),
        (lambda r: r.update(protocol=[1]), "protocol is not a mapping"),
        (lambda r: r.update(n="60"), "n is not a whole number"),
        (lambda r: r["protocol"].update(metrics="srcc"), "protocol.metrics and protocol.protocol.attributes"),
    ],
)
def test_broken_records_are_one_line(tmp_path, record, change, message):
    rec = json.loads(json.dumps(record))
    change(rec)
    line = one_line_error(cli("leaderboard", str(write(tmp_path, rec)), "--no-reported"))
    assert f"results.json is not an aesbench results record: {message}" in line


def test_latin1_and_non_json_records(tmp_path, record):
    folder = write(tmp_path, None, raw=json.dumps(record).replace("handcrafted", "hand\u00e9").encode("latin-1"))
    assert "results.json is not UTF-8 text (byte" in one_line_error(cli("leaderboard", str(folder)))
    (folder / "results.json").write_bytes(b"")
    assert "results.json is not valid JSON" in one_line_error(cli("leaderboard", str(folder)))


def test_null_metric_protocol_and_provenance_are_tolerated(tmp_path, record):
    rec = json.loads(json.dumps(record))
    rec["metrics"]["srcc"] = None  # results.json writes a non-finite number as null
    rec["provenance"] = None
    r = cli("leaderboard", str(write(tmp_path, rec)), "--no-reported")
    assert r.returncode == 0, r.stderr
    assert "| handcrafted | measured | 5 | – |" in r.stdout
    rec["protocol"] = None
    r = cli("leaderboard", str(write(tmp_path, rec)), "--no-reported")
    assert r.returncode == 0 and "| handcrafted | measured | 5 |" in r.stdout


def test_model_names_cannot_break_the_markdown(tmp_path, record):
    rec = json.loads(json.dumps(record))
    rec["model"] = "evil | 9.999 |\n| fake | row"
    text = render_markdown(load_results([write(tmp_path, rec)]), include_reported=False)
    rows = [line for line in text.splitlines() if line.startswith("| evil")]
    assert len(rows) == 1 and not any(line.startswith("| fake") for line in text.splitlines())
    unescaped = re.split(r"(?<!\\)\|", rows[0])
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    assert len(unescaped) == len(header.split("|"))  # as many cells as the header
    assert rows[0].startswith("| evil \\| 9.999 \\| \\| fake \\| row | measured |")
    csv_text = render_csv(load_results([write(tmp_path, rec)]), include_reported=False)
    assert '"evil | 9.999 |\n| fake | row"' in csv_text  # CSV quotes it whole


def test_one_task_name_under_two_protocols_is_two_tables(tmp_path):
    """constant (score 5.5) under acc_threshold 5 and 7: accuracy 0.4 and 0.8, in two tables, never one."""
    accs = {}
    for threshold in (5, 7):
        task = write_csv_task(
            tmp_path / f"d{threshold}",
            [2, 3, 4, 6, 9],
            extra=f"protocol: {{acc_threshold: {threshold}}}\nmetrics: [srcc, acc]\n",
        )
        res = evaluate(load_task(str(task)), tmp_path / "runs" / f"t{threshold}", model=load_model("constant"))
        accs[threshold] = res["metrics"]["acc"]
    assert accs == {5: 0.4, 7: 0.8}  # 5.5 is high at threshold 5 (labels 6, 9 agree), low at 7 (2, 3, 4, 6 agree)
    r = cli("leaderboard", str(tmp_path / "runs"), "--no-reported")
    assert r.returncode == 0, r.stderr
    headings = [line for line in r.stdout.splitlines() if line.startswith("## ")]
    assert len(headings) == 2, r.stdout
    for h in headings:
        assert re.fullmatch(r"## my-score · version 1, protocol [0-9a-f]{8} \(differs in protocol.acc_threshold\)", h)
    assert headings[0] != headings[1]
    tables = r.stdout.split("## ")[1:]
    assert sorted(re.search(r"\| constant \| measured \| 5 \| [^|]+\| ([0-9.]+)", t).group(1) for t in tables) == [
        "0.400",
        "0.800",
    ]


def test_leaderboard_output_never_overwrites_a_record_and_a_folder_is_one_line(tmp_path, record):
    folder = write(tmp_path, record)
    before = (folder / "results.json").read_bytes()
    line = one_line_error(cli("leaderboard", str(folder), "--output", str(folder / "results.json")))
    assert "is one of the results records read; choose another file" in line
    assert (folder / "results.json").read_bytes() == before
    assert f"cannot write {folder}: Is a directory" in one_line_error(
        cli("leaderboard", str(folder), "--output", str(folder))
    )
