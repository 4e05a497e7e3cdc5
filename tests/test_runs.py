"""Runs resume without redoing or losing work, even after kill -9; a predictions file scores the same."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from aesbench.adapter import load_model
from aesbench.runs import PREDICTIONS, evaluate
from aesbench.task import load_task
from conftest import prediction_records

# A handcrafted model that logs every image it scores (and can be slowed down), run in a child process.
CHILD = textwrap.dedent("""
    import sys, time
    from aesbench.adapter import load_model
    from aesbench.runs import evaluate
    from aesbench.task import load_task

    out, log, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    model = load_model("handcrafted")
    score = model.score

    def logged(images, request):
        time.sleep(delay)
        with open(log, "a") as f:
            f.write(f"{len(images)}\\n")
        return score(images, request)

    model.score = logged
    evaluate(load_task("tiny-ava-score"), out, model=model, batch_size=2)
""")


def ids_in(path):
    return [line["id"] for line in prediction_records(path)]


def test_kill_9_then_resume_loses_nothing_and_redoes_nothing(tmp_path):
    out, log = tmp_path / "run", tmp_path / "calls.log"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(out), str(log), "0.05"])
    deadline = time.time() + 60
    while time.time() < deadline:
        if (out / PREDICTIONS).exists() and len(open(out / PREDICTIONS).readlines()) >= 11:  # the header and 10 items
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done_before = ids_in(out / PREDICTIONS)
    assert 10 <= len(done_before) < 60, "the kill should land mid-run"
    assert not (out / "results.json").exists()
    # A torn write, as if the process had died in the middle of a line.
    with open(out / PREDICTIONS, "a") as f:
        f.write('{"id": "999999", "sco')
    calls_before = sum(int(x) for x in open(log))

    subprocess.run([sys.executable, str(script), str(out), str(log), "0"], check=True)
    ids = ids_in(out / PREDICTIONS)
    assert len(ids) == len(set(ids)) == 60
    assert ids[: len(done_before)] == done_before
    calls_after = sum(int(x) for x in open(log))
    assert calls_after - calls_before == 60 - len(done_before)  # finished images were not scored again
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 60 and results["resumed_from"] == len(done_before)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    task = load_task("tiny-ava-score")
    full = evaluate(task, tmp_path / "full", model=load_model("handcrafted"))
    evaluate(task, tmp_path / "part", model=load_model("handcrafted"), limit=25)
    # Resuming a limited run under a different limit is a different run: refused, not mixed.
    from aesbench.errors import AesbenchError

    with pytest.raises(AesbenchError, match="different run"):
        evaluate(task, tmp_path / "part", model=load_model("handcrafted"))
    header, *lines = open(tmp_path / "part" / PREDICTIONS).read().splitlines(keepends=True)
    (tmp_path / "resumed").mkdir()
    # The full run, stopped after 25 items: its run.json and header name no limit (a folder without one is refused).
    header = json.dumps({**json.loads(header), "limit": None}) + "\n"
    (tmp_path / "resumed" / PREDICTIONS).write_text(header + "".join(lines))
    identity = json.loads((tmp_path / "part" / "run.json").read_text())
    (tmp_path / "resumed" / "run.json").write_text(json.dumps({**identity, "limit": None}))
    resumed = evaluate(task, tmp_path / "resumed", model=load_model("handcrafted"))
    assert resumed["resumed_from"] == 25
    assert resumed["metrics"] == full["metrics"]


def test_predictions_file_scores_like_the_run(tmp_path):
    task = load_task("tiny-flickr-aes-piaa")
    run = evaluate(task, tmp_path / "run", model=load_model("handcrafted"))
    again = evaluate(task, tmp_path / "file", predictions=tmp_path / "run" / PREDICTIONS, model_name="handcrafted")
    assert again["metrics"] == run["metrics"] and again["ci95"] == run["ci95"]
    assert again["provenance"]["model"]["predictions_sha256"]


def test_results_record_schema(tmp_path):
    r = evaluate(load_task("tiny-pccd-suggest"), tmp_path, model=load_model("handcrafted"), seed=3, batch_size=4)
    for key in ("task", "model", "n", "metrics", "ci95", "skipped", "provenance"):
        assert key in r
    prov = r["provenance"]
    for key in (
        "aesbench",
        "git",
        "python",
        "torch",
        "transformers",
        "device",
        "task_sha256",
        "label_files",
        "model",
        "seed",
        "batch_size",
        "start",
        "end",
        "duration_s",
    ):
        assert key in prov, key
    assert prov["seed"] == 3 and prov["batch_size"] == 4
    assert set(r["metrics"]) == {
        "acc_noise",
        "acc_blur",
        "acc_dark",
        "acc_bright",
        "acc_desaturated",
        "acc_crop",
        "acc_avg",
    }
    verdicts = r["details"]["verdicts"]
    assert len(verdicts) == 30 and all(v["judge"] == "keyword-v1" for v in verdicts.values())
    assert json.loads((tmp_path / "results.json").read_text())["metrics"] == r["metrics"]
