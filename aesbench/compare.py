"""Paired comparison of runs on one task: is model A really better than model B on these images?

On the units both runs scored (items; people for PIAA), for every metric the task reports: the two
values, A − B, a paired bootstrap interval of A − B and a two-sided p-value. Paired: each resample
draws the same units for both models, with the seeded resamples the task's own bootstrap draws (its
seed, its level, its number of resamples), and each metric is computed on a resample as the task's
bootstrap computes it (score metrics by metrics.bootstrap_values, caption metrics from the per-item
statistics CaptionScorer.bootstrap_samples uses, suggest accuracies from the judge's recorded
verdicts, PIAA means over people from the per-person SRCC in results.json).

When both runs scored exactly the same units, A and B are the runs' own recorded values, so A − B is
the difference of the two results.json numbers exactly; otherwise both are recomputed on the common
units (and the table says so).

The p-value is the bootstrap's two-sided one for "no difference": with R finite resampled differences,
p = min(1, 2 · (min(#{Δ* ≤ 0}, #{Δ* ≥ 0}) + 1) / (R + 1)); identical predictions give every Δ* = 0
and p = 1, and no p is ever 0 (the smallest is 2 / (R + 1)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .captions import CaptionScorer
from .datasets import Item
from .errors import AesbenchError
from .families.base import check_score, check_text
from .families.piaa import PIAA_COLUMNS, mean_defined
from .families.score import ScoreProtocol, attribute_functions, bootstrap_functions, emd_undefined, metric_functions
from .families.suggest import SuggestProtocol, accuracy_functions, verdict_arrays
from .leaderboard import differences, protocol_hash
from .metrics import index_blocks, percentile_interval, bootstrap_values, emd, resample_values
from .rundata import Run, labels, per_person, read_labels, read_run
from .task import Task
from .values import finite_number


def p_value(deltas: np.ndarray | None, resamples: int) -> float | None:
    """Two-sided bootstrap p-value of A − B = 0 (see the module's docstring); None when fewer than half
    the resamples give a defined difference (as for the intervals)."""
    if deltas is None:
        return None
    d = deltas[np.isfinite(deltas)]
    if len(d) < resamples / 2:
        return None
    return min(1.0, 2.0 * (min(int((d <= 0).sum()), int((d >= 0).sum())) + 1) / (len(d) + 1))


P_RESOLUTION = 0.001  # p-values are shown to three decimals, below this as "< 0.001"


def format_p(p: float | None) -> str:
    """A p-value as `compare` shows it, in the table and the matrix alike: three decimals (at 1,000
    resamples the smallest p is 2 / 1001, shown 0.002; 1 is 1.000), "< 0.001" below that (only more
    resamples reach it); "" where there is none."""
    if p is None:
        return ""
    return f"< {P_RESOLUTION:.3f}" if p < P_RESOLUTION else f"{p:.3f}"


def check_comparable(runs: list[Run]) -> None:
    """One line when the runs are not of one task under one protocol, or were scored on other labels."""
    first = runs[0]
    for other in runs[1:]:
        if other.results["task"] != first.results["task"]:
            raise AesbenchError(
                f"{first.folder} and {other.folder} are runs of different tasks ({first.results['task']!r},"
                f" {other.results['task']!r}): compare runs of one task"
            )
        if protocol_hash(other.results["protocol"]) != protocol_hash(first.results["protocol"]):
            differ = differences([first.results["protocol"], other.results["protocol"]])
            raise AesbenchError(
                f"{first.folder} and {other.folder} ran {first.results['task']!r} under different protocols"
                f" (they differ in {', '.join(differ) or 'the protocol hash'}): their numbers are not comparable"
            )
        files = [set((r.results["provenance"].get("label_files") or {}).values()) for r in (first, other)]
        if all(files) and files[0] != files[1]:
            raise AesbenchError(
                f"{first.folder} and {other.folder} were scored on different label files (their sha256"
                " differ): their numbers are not comparable"
            )


class _Comparison:
    """Runs of one task under one protocol (check_comparable), compared in pairs. What a pair needs of one
    run is worked out once and reused by every pair it is in: the task's labels (each dataset root read,
    and its label files hashed, once), the run's values and resampled values on a set of common units
    (reused by every pair with the same common units) and one caption scorer (one METEOR JVM)."""

    def __init__(self, runs: list[Run], data_root: Path | None):
        self.runs, self.data_root = runs, data_root
        boot = runs[0].results["bootstrap"]
        self.resamples, self.seed, self.level = int(boot["resamples"]), int(boot["seed"]), float(boot["level"])
        self._read: dict[str, tuple] = {}  # dataset root -> read_labels of it
        self._values: dict[tuple, dict] = {}  # (run, *units) -> {metric: (value, resampled values)}
        self._scorer: CaptionScorer | None = None

    def __enter__(self) -> _Comparison:
        return self

    def __exit__(self, *exc) -> None:
        if self._scorer is not None:
            self._scorer.close()

    def labels(self, run: Run) -> dict[str, Item]:
        """rundata.labels with each dataset root read once: the runs' tasks differ in nothing but their root."""
        return labels(run, self.data_root, self._read_labels)

    def _read_labels(self, task: Task) -> tuple:
        root = str(task.data_root)
        if root not in self._read:
            self._read[root] = read_labels(task)
        return self._read[root]

    @property
    def scorer(self) -> CaptionScorer:
        if self._scorer is None:
            self._scorer = CaptionScorer()
        return self._scorer

    def values(self, run: Run, units: tuple, compute) -> dict[str, tuple]:
        """{metric: (value, resampled values)} of `run` on what `units` names (the family, the labels, the
        common units, the metrics): compute(run) the first time."""
        key = (id(run), *units)
        if key not in self._values:
            self._values[key] = compute(run)
        return self._values[key]


class _Pair:
    """Two runs of one task: per metric, both values on the common units and the paired resampled differences."""

    def __init__(self, comparison: _Comparison, a: Run, b: Run):
        self.comparison, self.a, self.b = comparison, a, b
        self.resamples, self.seed, self.level = comparison.resamples, comparison.seed, comparison.level

    def metrics(self, only: str | None) -> dict[str, dict]:
        """{metric: summary} for every metric the task reports (or `only` that one); a metric undefined
        in either run (constant scores, no distributions) has no values, with the reason."""
        rows = getattr(self, self.a.family)(only)
        undefined = {**self.b.results.get("undefined", {}), **self.a.results.get("undefined", {})}
        for name in undefined:
            if only in (None, name) and name not in rows:
                rows[name] = {"a": None, "b": None, "n": None, "same_units": False, "deltas": None}
        if only and only not in rows:
            raise AesbenchError(
                f"metric {only!r} is not one {self.a.results['task']!r} reports"
                f" (it reports {', '.join(self.a.results['metrics']) or 'none'})"
            )
        return {
            name: self._summarise(name, row, undefined.get(name) or row.get("undefined")) for name, row in rows.items()
        }

    def _summarise(self, name: str, row: dict, undefined: str | None) -> dict:
        """The row with the runs' own values where the units are the same, A − B, the CI and the p-value."""
        a, b = (None, None) if undefined else (row["a"], row["b"])
        if row["same_units"] and not undefined:
            a, b = self.a.results["metrics"].get(name), self.b.results["metrics"].get(name)
        defined = a is not None and b is not None and bool(np.isfinite(a) and np.isfinite(b))
        deltas = row["deltas"] if defined else None
        ci = None if deltas is None else percentile_interval(deltas, self.resamples, self.level)
        return {
            "a": float(a) if defined else None,
            "b": float(b) if defined else None,
            "delta": float(a - b) if defined else None,
            "ci95": ci,
            "p_value": p_value(deltas, self.resamples),
            "n": row["n"],
            "same_units": row["same_units"],
            "undefined": undefined,
        }

    def _same(self, n_common: int, key=lambda r: r.results["n"]) -> bool:
        return n_common == key(self.a) == key(self.b)

    def _rows(self, units: tuple, compute, n: int, same: bool) -> dict:
        """The pair's rows from each run's {metric: (value, resampled values)} (compute(run), reused by
        every pair on the same `units`): A, B and the paired differences A* − B*, resample by resample."""
        va, vb = (self.comparison.values(run, units, compute) for run in (self.a, self.b))
        return {
            name: {
                "a": va[name][0],
                "b": vb[name][0],
                "n": n,
                "same_units": same,
                "deltas": None if va[name][1] is None else va[name][1] - vb[name][1],
            }
            for name in va
        }

    def _scored_by_both(self, items: dict, check) -> list[str]:
        """The ids, in the dataset's order, that both runs answered with a usable line (`check` gives None)."""
        return [i for i in items if all(i in run.lines and check(run.lines[i]) is None for run in (self.a, self.b))]

    def score(self, only: str | None) -> dict:
        items = self.comparison.labels(self.a)
        common = self._scored_by_both(items, check_score)
        mos = np.array([items[i].label["mos"] for i in common], dtype=np.float64)
        protocol = ScoreProtocol.from_record(self.a.results["protocol"].get("protocol") or {})
        functions = metric_functions(protocol)
        names = [m for m in self.a.results["protocol"].get("metrics", []) if only in (None, m)]
        on_pairs = {m: functions[m] for m in names if m in functions}
        truth = [items[i].label for i in common]
        with_emd = "emd" in names and all(
            emd_undefined(truth, [run.lines[i] for i in common]) is None for run in (self.a, self.b)
        )

        def values(run: Run) -> dict:
            pred = np.array([run.lines[i]["score"] for i in common], dtype=np.float64)
            extra = {}
            if with_emd:
                t = np.array([items[i].label["distribution"] for i in common], dtype=np.float64)
                extra["emd"] = (emd, [np.array([run.lines[i]["distribution"] for i in common], dtype=np.float64), t])
            resampled = bootstrap_functions(on_pairs, pred, mos, protocol.bootstrap["logistic_start"])
            return _values(on_pairs, pred, mos, extra, self.resamples, self.seed, resampled)

        units = ("score", id(items), tuple(common), tuple(on_pairs), with_emd)
        rows = self._rows(units, values, len(common), self._same(len(common)))
        for key in protocol.attributes or []:
            wanted = {name: fn for name, fn in attribute_functions(key).items() if only in (None, name)}
            if not wanted or not any(name in self.a.results["metrics"] for name in wanted):
                continue
            ids = [
                i
                for i in common
                if items[i].label.get("attributes", {}).get(key) is not None
                and all(_attribute_number(run.lines[i], key) for run in (self.a, self.b))
            ]
            y = np.array([items[i].label["attributes"][key] for i in ids], dtype=np.float64)
            same = self._same(
                len(ids), lambda r: ((r.results.get("details") or {}).get("attributes") or {}).get(key, {}).get("n")
            )

            def attribute_values(run: Run, ids=ids, key=key, wanted=wanted, y=y) -> dict:
                pred = np.array([run.lines[i]["attributes"][key] for i in ids], dtype=np.float64)
                return _values(wanted, pred, y, {}, self.resamples, self.seed)

            units = ("attribute", id(items), tuple(ids), key, tuple(wanted))
            rows.update(self._rows(units, attribute_values, len(ids), same))
        return rows

    def comment(self, only: str | None) -> dict:
        items = self.comparison.labels(self.a)
        common = self._scored_by_both(items, lambda line: check_text(line, "comment"))
        names = [m for m in self.a.results["protocol"].get("metrics", []) if only in (None, m)]
        if len(common) < 2:
            return {m: {"a": None, "b": None, "n": len(common), "same_units": False, "deltas": None} for m in names}
        references = {i: items[i].label["references"] for i in common}

        def values(run: Run) -> dict:
            scored = self.comparison.scorer.score(references, {i: run.lines[i]["comment"] for i in common})
            draws = np.concatenate(list(index_blocks(len(common), self.resamples, self.seed)))
            samples = self.comparison.scorer.bootstrap_samples(scored, draws)
            return {m: (scored["metrics"][m], np.array(samples[m], dtype=np.float64)) for m in samples}

        rows = self._rows(("comment", id(items), tuple(common)), values, len(common), self._same(len(common)))
        return {m: rows[m] for m in names}

    def suggest(self, only: str | None) -> dict:
        verdicts = [_verdicts(r) for r in (self.a, self.b)]
        common = [i for i in verdicts[0] if i in verdicts[1]]
        kinds = list(SuggestProtocol.from_record(self.a.results["protocol"].get("protocol") or {}).kinds)
        functions = accuracy_functions(kinds)
        wanted = {
            name: functions[name]
            for name in self.a.results["protocol"].get("metrics", [])
            if only in (None, name) and name in functions
        }

        def values(run: Run) -> dict:
            code, correct = verdict_arrays(kinds, [_verdicts(run)[i] for i in common])
            return {
                name: (fn(code, correct), resample_values(fn, [code, correct], self.resamples, self.seed))
                for name, fn in wanted.items()
            }

        units = ("suggest", tuple(common), tuple(kinds), tuple(wanted))
        return self._rows(units, values, len(common), self._same(len(common)))

    def piaa(self, only: str | None) -> dict:
        tables = [per_person(r.results) for r in (self.a, self.b)]
        shots = (self.a.results.get("details") or {}).get("shots") or []
        rows = {}
        for position, k in enumerate(shots):
            suffix = "" if position == 0 else f"_k{k}"
            people = [t.get(f"k{k}", {}) for t in tables]
            common = [w for w in people[0] if w in people[1]]
            for name in self.a.results["protocol"].get("metrics", []):
                if only not in (None, name + suffix) or name not in PIAA_COLUMNS:
                    continue
                if any(name not in p[w] for p in people for w in common):
                    rows[name + suffix] = {
                        "a": None,
                        "b": None,
                        "n": len(common),
                        "same_units": False,
                        "deltas": None,
                        "undefined": "a run's results.json predates the per-person column; run its eval again",
                    }
                    continue

                def values(run: Run, k=k, name=name, suffix=suffix, common=common) -> dict:
                    person = per_person(run.results)[f"k{k}"]
                    x = np.array(
                        [np.nan if person[w].get(name) is None else person[w][name] for w in common], dtype=np.float64
                    )
                    resampled = resample_values(mean_defined, [x], self.resamples, self.seed)
                    return {name + suffix: (mean_defined(x), resampled)}

                same = self._same(len(common), lambda r: len(per_person(r.results).get(f"k{k}", {})))
                rows.update(self._rows(("piaa", k, name, tuple(common)), values, len(common), same))
        return rows


def _values(
    functions: dict, pred, truth, extra: dict, resamples: int, seed: int, on_resamples: dict | None = None
) -> dict:
    """{metric: (value, resampled values)} of one run's predictions: `functions` of (pred, truth), `extra`
    name -> (fn, arrays) (EMD of the distributions), resampled as metrics.bootstrap_values does with
    `on_resamples` (default `functions`; the score family's refit plcc_logistic from its protocol's start)."""
    resampled = bootstrap_values(on_resamples or functions, pred, truth, resamples, seed, extra)
    values = {name: fn(pred, truth) for name, fn in functions.items()}
    values.update({name: fn(*arrays) for name, (fn, arrays) in extra.items()})
    return {name: (value, resampled[name]) for name, value in values.items()}


def _verdicts(run: Run) -> dict[str, dict]:
    """The judge's verdicts a suggest run recorded, by item id."""
    return (run.results.get("details") or {}).get("verdicts") or {}


def _attribute_number(line: dict, key: str) -> bool:
    """Whether a prediction line gives attribute `key` a finite number (as score scoring counts it)."""
    given = line.get("attributes")
    return isinstance(given, dict) and finite_number(given.get(key))


def compare_two(
    folder_a: Path, folder_b: Path, data_root: Path | None = None, metric: str | None = None
) -> tuple[dict, dict]:
    """({metric: {"a", "b", "delta", "ci95", "p_value", "n", "same_units", "undefined"}}, about the runs)."""
    runs = [read_run(folder_a), read_run(folder_b)]
    check_comparable(runs)
    with _Comparison(runs, data_root) as comparison:
        return _Pair(comparison, runs[0], runs[1]).metrics(metric), _about(comparison)


def compare_many(folders: list[Path], metric: str | None, data_root: Path | None = None) -> tuple[dict, dict]:
    """The matrix of pairwise differences in one metric (default: the task's first): {"metric", "runs",
    "delta", "ci95", "p_value"}, where entry [i][j] compares row run i with column run j (i − j). Each
    run's labels, values and resampled values are worked out once for all its pairs (_Comparison)."""
    runs = [read_run(f) for f in folders]
    check_comparable(runs)
    metric = metric or (runs[0].results["protocol"].get("metrics") or [""])[0]
    size = len(runs)
    matrix = {key: [[None] * size for _ in range(size)] for key in ("delta", "ci95", "p_value")}
    with _Comparison(runs, data_root) as comparison:
        for i in range(size):
            for j in range(i + 1, size):
                row = _Pair(comparison, runs[i], runs[j]).metrics(metric)[metric]
                matrix["delta"][i][j], matrix["ci95"][i][j], matrix["p_value"][i][j] = (
                    row["delta"],
                    row["ci95"],
                    row["p_value"],
                )
                matrix["delta"][j][i] = None if row["delta"] is None else -row["delta"]
                matrix["ci95"][j][i] = None if row["ci95"] is None else [-row["ci95"][1], -row["ci95"][0]]
                matrix["p_value"][j][i] = row["p_value"]
    about = _about(comparison)
    return {"metric": metric, "runs": about["labels"], **matrix}, about


def _about(comparison: _Comparison) -> dict:
    """Names for the runs (the model's, or its folder where two runs share a model name) and the bootstrap."""
    runs = comparison.runs
    names = [r.results["model"] for r in runs]
    label = [n if names.count(n) == 1 else str(r.folder) for n, r in zip(names, runs)]
    return {
        "labels": label,
        "folders": [str(r.folder) for r in runs],
        "task": runs[0].results["task"],
        "resamples": comparison.resamples,
        "seed": comparison.seed,
        "level": comparison.level,
        "family": runs[0].family,
    }
