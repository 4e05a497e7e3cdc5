"""`aesbench compare`: paired differences of two runs of one task, and the matrix for more than two.

Score runs are made from predictions files on a copy of tiny-ava-score with 200 resamples;
suggest, PIAA and comment runs are the committed results/ (read, never written)."""

import collections
import itertools
import json
import shutil

import numpy as np
import pytest

from aesbench import compare
from aesbench.compare import _Comparison, _Pair, compare_many, compare_two, format_p, p_value
from aesbench.datasets import read_dataset
from aesbench.metrics import bootstrap_values, resample_logistic
from aesbench.rundata import read_run
from aesbench.task import load_task
from conftest import REPO, requires_java, run_cli, task_copy


def _task(tmp_path, threshold=5.0):
    return task_copy(
        tmp_path, "tiny-ava-score", resamples=200, replace={"acc_threshold: 5.0": f"acc_threshold: {threshold}"}
    )


def _run(tmp_path, task, name, scores, folder=None):
    preds = tmp_path / f"{name}.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "score": float(s)}) + "\n" for i, s in scores.items()))
    out = tmp_path / (folder or name)
    proc = run_cli(
        "eval",
        "--task",
        str(task),
        "--predictions",
        str(preds),
        "--name",
        name,
        "--output",
        str(out),
        "--quiet",
        "--no-plots",
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def score_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    task = _task(tmp)
    items = read_dataset(load_task(str(task))).items
    rng = np.random.default_rng(1)
    mos = {it.id: it.label["mos"] for it in items}
    good = {i: m + rng.normal(0, 0.2) for i, m in mos.items()}
    bad = {i: rng.uniform(1, 10) for i in mos}
    ids = list(mos)
    return {
        "task": task,
        "tmp": tmp,
        "good": _run(tmp, task, "good", good),
        "bad": _run(tmp, task, "bad", bad),
        "good-copy": _run(tmp, task, "good", good, folder="good-copy"),
        "partial": _run(tmp, task, "partial", {i: mos[i] for i in ids[: len(ids) // 2]}),  # half the items
        "mos": mos,
    }


def _compare_json(*args):
    proc = run_cli("compare", *map(str, args), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _recomputed(a, b) -> tuple[dict, list[dict]]:
    """compare's rows as its family computes them, before the runs' own values are put in where the units
    are the same (what it recomputes from predictions, labels, verdicts or per-person SRCC, and the paired
    resampled differences), and the runs' recorded metrics."""
    runs = [read_run(a), read_run(b)]
    with _Comparison(runs, None) as comparison:
        pair = _Pair(comparison, *runs)
        rows = getattr(pair, pair.a.family)(None)
    return rows, [json.loads((r / "results.json").read_text())["metrics"] for r in (a, b)]


def _check_recomputed(a, b) -> None:
    """Each value compare recomputes equals the run's results.json value, and the paired bootstrap's
    differences centre on A − B: their median is within a quarter of their 95% range of it."""
    rows, own = _recomputed(a, b)
    assert own[0].keys() & own[1].keys()
    for name in own[0].keys() & own[1].keys():
        row = rows[name]
        assert row["same_units"], name
        assert (row["a"], row["b"]) == pytest.approx((own[0][name], own[1][name]), rel=1e-12, abs=1e-12), name
        low, median, high = np.nanpercentile(row["deltas"], [2.5, 50, 97.5])
        assert abs(median - (own[0][name] - own[1][name])) <= (high - low) / 4, name


def test_difference_is_the_runs_own_difference_exactly_and_a_clearly_better_model_wins(score_runs):
    rows = _compare_json(score_runs["good"], score_runs["bad"])
    a = json.loads((score_runs["good"] / "results.json").read_text())["metrics"]
    b = json.loads((score_runs["bad"] / "results.json").read_text())["metrics"]
    assert set(rows) >= {"srcc", "plcc", "krcc", "acc", "mse", "plcc_logistic"}
    for name, row in rows.items():
        assert set(row) == {"a", "b", "delta", "ci95", "p_value"}
        if name in a and name in b:
            assert row["a"] == a[name] and row["b"] == b[name] and row["delta"] == a[name] - b[name]
            assert row["ci95"][0] <= row["ci95"][1]
    assert rows["emd"]["delta"] is None  # neither run gives distributions: undefined, not a number
    assert rows["srcc"]["delta"] > 0.5 and rows["srcc"]["p_value"] < 0.02 and rows["srcc"]["ci95"][0] > 0
    assert rows["mse"]["delta"] < 0 and rows["mse"]["p_value"] < 0.02  # lower is better: A's error is smaller
    _check_recomputed(score_runs["good"], score_runs["bad"])


def test_identical_predictions_give_zero_difference_and_p_one(score_runs):
    rows = _compare_json(score_runs["good"], score_runs["good-copy"])
    for name, row in rows.items():
        if row["delta"] is not None:
            assert row["delta"] == 0.0 and row["p_value"] == 1.0 and row["ci95"] == [0.0, 0.0], name


def test_runs_on_other_items_are_compared_on_the_common_ones(score_runs):
    ids, partial = list(score_runs["mos"]), score_runs["partial"]
    two, about = compare_two(partial, score_runs["bad"])
    assert two["srcc"]["n"] == len(ids) // 2 and not two["srcc"]["same_units"]
    assert two["srcc"]["a"] == pytest.approx(1.0)
    table = run_cli("compare", str(partial), str(score_runs["bad"]))
    assert table.returncode == 0 and "recomputed on the items both scored" in table.stderr


def test_runs_of_other_tasks_or_protocols_are_refused(score_runs, tmp_path):
    other = _run(tmp_path, _task(tmp_path, threshold=6.0), "good", {i: m for i, m in score_runs["mos"].items()})
    proc = run_cli("compare", str(score_runs["good"]), str(other))
    assert proc.returncode == 2 and "different protocols" in proc.stderr and "protocol.acc_threshold" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    piaa = REPO / "results" / "tiny-flickr-aes-piaa" / "random"
    proc = run_cli("compare", str(score_runs["good"]), str(piaa))
    assert proc.returncode == 2 and "different tasks" in proc.stderr
    proc = run_cli("compare", str(score_runs["good"]), str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "holds no results.json" in proc.stderr


def test_plcc_logistic_is_resampled_from_the_protocols_logistic_start(score_runs, tmp_path):
    """compare refits each run's plcc_logistic on the resamples as its task's bootstrap.logistic_start
    says (here full_sample), as eval's intervals do; before, always from each resample's own start."""
    replace = {"seed: 0, level: 0.95}": "seed: 0, level: 0.95, logistic_start: full_sample}"}
    task = task_copy(tmp_path, "tiny-ava-score", resamples=200, replace=replace)
    rng = np.random.default_rng(3)
    mos = score_runs["mos"]
    scores = {name: {i: m + rng.normal(0, sd) for i, m in mos.items()} for name, sd in (("a", 1.0), ("b", 3.0))}
    rows, _ = _recomputed(*(_run(tmp_path, task, name, s) for name, s in scores.items()))
    truth = np.array(list(mos.values()))

    def resampled(name, start):
        pred = np.array([scores[name][i] for i in mos])
        fn = resample_logistic(pred, truth, start)
        return bootstrap_values({"plcc_logistic": fn}, pred, truth, 200, 0)["plcc_logistic"]

    deltas = rows["plcc_logistic"]["deltas"]
    np.testing.assert_array_equal(deltas, resampled("a", "full_sample") - resampled("b", "full_sample"))
    assert not np.array_equal(deltas, resampled("a", "resample") - resampled("b", "resample"))


def test_matrix_of_more_than_two_runs(score_runs):
    """Every entry is the pairwise comparison exactly, including pairs with other common items (partial)."""
    runs = [score_runs["good"], score_runs["bad"], score_runs["good-copy"], score_runs["partial"]]
    matrix, _ = compare_many(runs, "srcc")
    assert matrix["runs"] == [str(runs[0]), "bad", str(runs[2]), "partial"]  # two runs named "good": by folder
    for i, j in itertools.combinations(range(len(runs)), 2):
        row = compare_two(runs[i], runs[j], metric="srcc")[0]["srcc"]
        assert [matrix[key][i][j] for key in ("delta", "ci95", "p_value")] == [
            row["delta"],
            row["ci95"],
            row["p_value"],
        ]
        assert matrix["delta"][j][i] == -row["delta"] and matrix["p_value"][j][i] == row["p_value"]
        assert matrix["ci95"][j][i] == [-row["ci95"][1], -row["ci95"][0]]
    assert matrix["delta"][0][2] == 0.0 and matrix["delta"][1][1] is None
    table = run_cli("compare", *map(str, runs), "--metric", "srcc")
    assert table.returncode == 0 and "row − column" in table.stdout
    proc = run_cli("compare", *map(str, runs), "--metric", "bleu4")
    assert proc.returncode == 2 and "'bleu4' is not one" in proc.stderr


def test_matrix_works_out_each_run_once(score_runs, monkeypatch):
    """The labels are read (and their files hashed) once, and each run's resampled values are computed
    once per set of common items, not once per pair."""
    calls = collections.Counter()
    for name in ("read_labels", "bootstrap_values"):
        original = getattr(compare, name)
        monkeypatch.setattr(compare, name, lambda *a, _f=original, _n=name, **k: calls.update([_n]) or _f(*a, **k))
    compare_many([score_runs[k] for k in ("good", "bad", "good-copy", "partial")], "srcc")
    # good, bad and good-copy on all items; all four on the half that partial scored (12 pairwise)
    assert calls == {"read_labels": 1, "bootstrap_values": 3 + 4}


def test_p_value_rule():
    assert p_value(np.zeros(100), 100) == 1.0
    assert p_value(np.ones(99), 99) == pytest.approx(2 / 100)  # never 0
    assert p_value(np.full(100, np.nan), 100) is None


def test_p_is_shown_one_way():
    assert [format_p(p) for p in (1.0, 0.5474, 0.0459, 2 / 1001, 0.001, 0.000999, 2 / 10001, None)] == [
        "1.000",
        "0.547",
        "0.046",
        "0.002",
        "0.001",
        "< 0.001",
        "< 0.001",
        "",
    ]


def test_the_table_and_the_matrix_show_p_alike(score_runs):
    """The two-run table and the matrix give a p-value in one format (they used 3 and 2 significant
    digits: 0.00995 in one, 0.0099 in the other)."""
    good, bad, partial = (score_runs[k] for k in ("good", "bad", "partial"))
    rows, _ = compare_two(good, bad, metric="srcc")
    shown = format_p(rows["srcc"]["p_value"])
    assert shown == "0.010"  # 2 / 201: no resample of 200 crosses zero
    table = run_cli("compare", str(good), str(bad))
    line = next(line for line in table.stdout.splitlines() if "│ srcc " in line)
    assert line.split("│")[-3].strip() == shown
    matrix = run_cli("compare", str(good), str(bad), str(partial), "--metric", "srcc")
    line = next(line for line in matrix.stdout.splitlines() if line.startswith("│ good "))
    assert f"{rows['srcc']['delta']:+.3f} ({shown})" in line


def test_suggest_runs_compare_on_the_recorded_verdicts():
    a, b = REPO / "results" / "tiny-pccd-suggest" / "handcrafted", REPO / "results" / "tiny-pccd-suggest" / "random"
    rows, _ = compare_two(a, b)
    own = [json.loads((r / "results.json").read_text())["metrics"] for r in (a, b)]
    assert rows.keys() == own[0].keys()
    for name, row in rows.items():
        assert row["delta"] == own[0][name] - own[1][name] and row["same_units"]
        assert 0 < row["p_value"] <= 1
    _check_recomputed(a, b)
    same, _ = compare_two(a, a)
    assert all(row["delta"] == 0 and row["p_value"] == 1 for row in same.values())


def test_piaa_runs_resample_people(tmp_path):
    nima, handcrafted = (
        REPO / "results" / "tiny-flickr-aes-piaa" / "nima",
        REPO / "results" / "tiny-flickr-aes-piaa" / "handcrafted",
    )
    rows, about = compare_two(nima, handcrafted)
    own = [json.loads((r / "results.json").read_text())["metrics"] for r in (nima, handcrafted)]
    assert about["family"] == "piaa" and rows["piaa_srcc"]["n"] == 5  # people, not images
    for name in own[0]:  # per-person ΔSRCC included
        assert rows[name]["delta"] == own[0][name] - own[1][name] and rows[name]["ci95"] is not None
    _check_recomputed(nima, handcrafted)
    # a results.json from before per-person ΔSRCC was recorded (`srcc`, `srcc_generic` per person): said, not guessed
    old = tmp_path / "old"
    shutil.copytree(handcrafted, old)
    record = json.loads((old / "results.json").read_text())
    for people in record["details"]["per_worker"].values():
        for person, row in people.items():
            people[person] = {"srcc": row["piaa_srcc"], "srcc_generic": row["piaa_srcc_generic"]}
    (old / "results.json").write_text(json.dumps(record))
    rows, _ = compare_two(nima, old)
    assert rows["piaa_srcc"]["delta"] == own[0]["piaa_srcc"] - own[1]["piaa_srcc"]
    assert rows["piaa_delta_srcc"]["delta"] is None and "predates" in rows["piaa_delta_srcc"]["undefined"]
    same, _ = compare_two(nima, nima)
    assert all(row["delta"] == 0 and row["p_value"] == 1 for row in same.values())


@requires_java
def test_caption_runs_reuse_the_caption_statistics():
    a, b = REPO / "results" / "tiny-ava-comment" / "handcrafted", REPO / "results" / "tiny-ava-comment" / "constant"
    rows, _ = compare_two(a, b)
    own = [json.loads((r / "results.json").read_text())["metrics"] for r in (a, b)]
    assert list(rows) == ["bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"]
    for name, row in rows.items():
        assert row["delta"] == own[0][name] - own[1][name]
        assert row["ci95"][0] <= row["ci95"][1]
    _check_recomputed(a, b)
