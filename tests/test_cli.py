"""The CLI end to end in a subprocess, and golden results for the tiny suite with the built-in baselines.

Golden records are the committed results/ (rendered into results/LEADERBOARD.md). Every number the
tiny suite produces is deterministic (seeded models, seeded protocol draws, seeded bootstrap), so a
fresh run must reproduce them; the tolerance 1e-6 absorbs only floating-point differences between
BLAS builds. If a change moves them on purpose, regenerate with the README's suite command.
"""

import json

import pytest

from conftest import REPO, prediction_records, requires_java, run_cli

TOLERANCE = 1e-6
SUITE_MODELS = ("handcrafted", "constant", "random", "brisque", "niqe")  # reproducible by name alone
GOLDEN = sorted(p for p in (REPO / "results").glob("tiny-*/*/results.json") if p.parent.name in SUITE_MODELS)


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    proc = run_cli("suite", "--output", str(out), "--models", ",".join(SUITE_MODELS), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


def test_golden_records_exist():
    tasks = {p.parent.parent.name for p in GOLDEN}
    assert tasks == {
        "tiny-ava-score",
        "tiny-ava-comment",
        "tiny-pccd-suggest",
        "tiny-flickr-aes-piaa",
        "tiny-art-score",
    }
    assert {p.parent.name for p in GOLDEN} == set(SUITE_MODELS)


@requires_java
@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_tiny_suite_matches_golden_results(suite_run, golden):
    expected = json.loads(golden.read_text())
    fresh = json.loads((suite_run / golden.parent.parent.name / golden.parent.name / "results.json").read_text())
    assert fresh["n"] == expected["n"]
    assert fresh["metrics"].keys() == expected["metrics"].keys()
    for name, value in expected["metrics"].items():
        assert fresh["metrics"][name] == pytest.approx(value, abs=TOLERANCE), name
    assert fresh["undefined"].keys() == expected["undefined"].keys()


@requires_java
def test_leaderboard_renders_measured_and_reported_rows(suite_run):
    md = run_cli("leaderboard", str(suite_run))
    assert md.returncode == 0
    assert "## tiny-ava-score" in md.stdout and "| handcrafted | measured | 60 |" in md.stdout
    assert "| CALM | reported |" in md.stdout  # paper rows are marked as reported
    csv_out = run_cli("leaderboard", str(suite_run), "--format", "csv", "--no-reported")
    assert csv_out.stdout.splitlines()[0] == "task,model,type,n,metric,value,ci_low,ci_high,source"
    assert ",reported," not in csv_out.stdout


def test_committed_leaderboard_is_rendered_from_committed_results():
    rendered = run_cli("leaderboard", str(REPO / "results"))
    assert rendered.stdout.strip() == (REPO / "results" / "LEADERBOARD.md").read_text().strip()


def test_listing_commands():
    tasks = run_cli("tasks")
    assert tasks.returncode == 0
    for name in (
        "ava-score",
        "ava-comment",
        "pccd-suggest",
        "flickr-aes-piaa",
        "tiny-ava-score",
        "baid-score",
        "apdd-score",
        "artimuse10k-score",
        "tiny-art-score",
    ):
        assert name in tasks.stdout
    one = run_cli("tasks", "tiny-pccd-suggest")
    assert "kinds:" in one.stdout and "judge: keyword" in one.stdout
    models = run_cli("models")
    assert "handcrafted" in models.stdout and "personalize" in models.stdout
    version = run_cli("--version")
    assert version.returncode == 0 and "aesbench, version" in version.stdout


def test_eval_twice_resumes_without_duplicates(tmp_path):
    args = ("eval", "--task", "tiny-pccd-suggest", "--model", "random", "--output", str(tmp_path), "--seed", "1")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "acc_avg" in first.stdout
    second = run_cli(*args, "--quiet")
    assert second.returncode == 0 and second.stdout == ""
    lines = prediction_records(tmp_path / "predictions.jsonl")
    assert len(lines) == len({x["id"] for x in lines}) == 30
    assert json.loads((tmp_path / "results.json").read_text())["resumed_from"] == 30


def test_wheel_ships_tasks_and_baselines_inside_the_package(tmp_path):
    """A non-editable install must carry the YAMLs, the tiny data and the baselines, under aesbench/."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    names = zipfile.ZipFile(next(tmp_path.glob("aesbench-*.whl"))).namelist()
    top = {n.split("/")[0] for n in names}
    assert not top & {"tasks", "baselines", "tests", "tools"}
    assert "aesbench/tasks/tiny-ava-score.yaml" in names
    assert "aesbench/tasks/data/tiny-ava/AVA.txt" in names
    assert "aesbench/tasks/data/SOURCES.csv" in names
    assert sum(n.startswith("aesbench/tasks/data/tiny-flickr-aes/images/") for n in names) == 135
    assert sum(n.startswith("aesbench/tasks/data/tiny-art/images/") for n in names) == 93
    assert {"aesbench/tasks/data/tiny-art/csvfiles/test.csv", "aesbench/tasks/data/tiny-art/descriptions.jsonl"} <= set(
        names
    )
    assert "aesbench/baselines/handcrafted.py" in names
    assert "aesbench/baselines/niqe_pris_params.npz" in names  # NIQE's pristine model
    assert "aesbench/reported.yaml" in names
