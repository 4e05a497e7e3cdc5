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
from .errors import AesbenchError
from .families.base import check_score, check_text
from .families.piaa import PIAA_COLUMNS, mean_defined
from .families.score import ScoreProtocol, attribute_functions, emd_undefined, metric_functions
from .families.suggest import SuggestProtocol, accuracy_functions, verdict_arrays
from .leaderboard import differences, protocol_hash
from .metrics import index_blocks, percentile_interval, bootstrap_values, emd, resample_values
from .rundata import Run, labels, per_person, read_run


def p_value(deltas: np.ndarray | None, resamples: int) -> float | None:
    """Two-sided bootstrap p-value of A − B = 0 (see the module's docstring); None when fewer than half
    the resamples give a defined difference (as for the intervals)."""
    if deltas is None:
        return None
    d = deltas[np.isfinite(deltas)]
    if len(d) < resamples / 2:
        return None
    return min(1.0, 2.0 * (min(int((d <= 0).sum()), int((d >= 0).sum())) + 1) / (len(d) + 1))


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


class _Pair:
    """Two runs of one task: per metric, both values on the common units and the paired resampled differences."""

    def __init__(self, a: Run, b: Run, data_root: Path | None):
        self.a, self.b, self.data_root = a, b, data_root
        boot = a.results["bootstrap"]
        self.resamples, self.seed, self.level = int(boot["resamples"]), int(boot["seed"]), float(boot["level"])

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

    def score(self, only: str | None) -> dict:
        items = labels(self.a, self.data_root)
        common = [
            i
            for i in items
            if i in self.a.lines
            and i in self.b.lines
            and check_score(self.a.lines[i]) is None
            and check_score(self.b.lines[i]) is None
        ]
        mos = np.array([items[i].label["mos"] for i in common], dtype=np.float64)
        pa, pb = (np.array([run.lines[i]["score"] for i in common], dtype=np.float64) for run in (self.a, self.b))
        protocol = ScoreProtocol.from_record(self.a.results["protocol"].get("protocol") or {})
        functions = metric_functions(protocol)
        names = [m for m in self.a.results["protocol"].get("metrics", []) if only in (None, m)]
        on_pairs = {m: functions[m] for m in names if m in functions}
        extra_a, extra_b = {}, {}
        if "emd" in names:
            truth = [items[i].label for i in common]
            if all(emd_undefined(truth, [run.lines[i] for i in common]) is None for run in (self.a, self.b)):
                t = np.array([items[i].label["distribution"] for i in common], dtype=np.float64)
                extra_a["emd"], extra_b["emd"] = (
                    (emd, [np.array([run.lines[i]["distribution"] for i in common], dtype=np.float64), t])
                    for run in (self.a, self.b)
                )
        rows = self._paired(on_pairs, pa, pb, mos, extra_a, extra_b, self._same(len(common)))
        for key in protocol.attributes or []:
            wanted = {name: fn for name, fn in attribute_functions(key).items() if only in (None, name)}
            if not wanted or not any(name in self.a.results["metrics"] for name in wanted):
                continue
            ids = [
                i
                for i in common
                if items[i].label.get("attributes", {}).get(key) is not None
                and all(_finite(run.lines[i].get("attributes"), key) for run in (self.a, self.b))
            ]
            y = np.array([items[i].label["attributes"][key] for i in ids], dtype=np.float64)
            qa, qb = (
                np.array([run.lines[i]["attributes"][key] for i in ids], dtype=np.float64) for run in (self.a, self.b)
            )
            same = self._same(
                len(ids), lambda r: ((r.results.get("details") or {}).get("attributes") or {}).get(key, {}).get("n")
            )
            rows.update(self._paired(wanted, qa, qb, y, {}, {}, same))
        return rows

    def _paired(self, functions: dict, pa, pb, truth, extra_a: dict, extra_b: dict, same: bool) -> dict:
        va = bootstrap_values(functions, pa, truth, self.resamples, self.seed, extra_a)
        vb = bootstrap_values(functions, pb, truth, self.resamples, self.seed, extra_b)
        rows = {}
        for name in list(functions) + list(extra_a):
            fn_a, fn_b = (functions[name], functions[name]) if name in functions else (extra_a[name], extra_b[name])
            a = fn_a(pa, truth) if name in functions else fn_a[0](*fn_a[1])
            b = fn_b(pb, truth) if name in functions else fn_b[0](*fn_b[1])
            deltas = None if va[name] is None else va[name] - vb[name]
            rows[name] = {"a": a, "b": b, "n": len(truth), "same_units": same, "deltas": deltas}
        return rows

    def comment(self, only: str | None) -> dict:
        items = labels(self.a, self.data_root)
        common = [
            i
            for i in items
            if i in self.a.lines
            and i in self.b.lines
            and check_text(self.a.lines[i], "comment") is None
            and check_text(self.b.lines[i], "comment") is None
        ]
        names = [m for m in self.a.results["protocol"].get("metrics", []) if only in (None, m)]
        if len(common) < 2:
            return {m: {"a": None, "b": None, "n": len(common), "same_units": False, "deltas": None} for m in names}
        references = {i: items[i].label["references"] for i in common}
        scorer = CaptionScorer()
        try:
            scored = [
                scorer.score(references, {i: run.lines[i]["comment"] for i in common}) for run in (self.a, self.b)
            ]
            draws = np.concatenate(list(index_blocks(len(common), self.resamples, self.seed)))
            samples = [scorer.bootstrap_samples(s, draws) for s in scored]
        finally:
            scorer.close()
        same = self._same(len(common))
        return {
            m: {
                "a": scored[0]["metrics"][m],
                "b": scored[1]["metrics"][m],
                "n": len(common),
                "same_units": same,
                "deltas": np.array(samples[0][m], dtype=np.float64) - np.array(samples[1][m], dtype=np.float64),
            }
            for m in names
        }

    def suggest(self, only: str | None) -> dict:
        verdicts = [(r.results.get("details") or {}).get("verdicts") or {} for r in (self.a, self.b)]
        common = [i for i in verdicts[0] if i in verdicts[1]]
        kinds = list(SuggestProtocol.from_record(self.a.results["protocol"].get("protocol") or {}).kinds)
        (code, ca), (_, cb) = (verdict_arrays(kinds, [v[i] for i in common]) for v in verdicts)
        functions = accuracy_functions(kinds)
        rows = {}
        for name in self.a.results["protocol"].get("metrics", []):
            if only in (None, name) and name in functions:
                fn = functions[name]
                deltas = resample_values(
                    lambda c, x, y, fn=fn: fn(c, x) - fn(c, y), [code, ca, cb], self.resamples, self.seed
                )
                rows[name] = {
                    "a": fn(code, ca),
                    "b": fn(code, cb),
                    "n": len(common),
                    "same_units": self._same(len(common)),
                    "deltas": deltas,
                }
        return rows

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
                xa, xb = (
                    np.array([np.nan if p[w].get(name) is None else p[w][name] for w in common], dtype=np.float64)
                    for p in people
                )
                deltas = resample_values(
                    lambda x, y: mean_defined(x) - mean_defined(y), [xa, xb], self.resamples, self.seed
                )
                same = self._same(len(common), lambda r: len(per_person(r.results).get(f"k{k}", {})))
                rows[name + suffix] = {
                    "a": mean_defined(xa),
                    "b": mean_defined(xb),
                    "n": len(common),
                    "same_units": same,
                    "deltas": deltas,
                }
        return rows


def _finite(values, key: str) -> bool:
    value = values.get(key) if isinstance(values, dict) else None
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def compare_two(
    folder_a: Path, folder_b: Path, data_root: Path | None = None, metric: str | None = None
) -> tuple[dict, dict]:
    """({metric: {"a", "b", "delta", "ci95", "p_value", "n", "same_units", "undefined"}}, about the runs)."""
    runs = [read_run(folder_a), read_run(folder_b)]
    check_comparable(runs)
    pair = _Pair(runs[0], runs[1], data_root)
    return pair.metrics(metric), _about(runs, pair)


def compare_many(folders: list[Path], metric: str | None, data_root: Path | None = None) -> tuple[dict, dict]:
    """The matrix of pairwise differences in one metric (default: the task's first): {"metric", "runs",
    "delta", "ci95", "p_value"}, where entry [i][j] compares row run i with column run j (i − j)."""
    runs = [read_run(f) for f in folders]
    check_comparable(runs)
    metric = metric or (runs[0].results["protocol"].get("metrics") or [""])[0]
    size = len(runs)
    matrix = {key: [[None] * size for _ in range(size)] for key in ("delta", "ci95", "p_value")}
    pair = None
    for i in range(size):
        for j in range(i + 1, size):
            pair = _Pair(runs[i], runs[j], data_root)
            row = pair.metrics(metric)[metric]
            matrix["delta"][i][j], matrix["ci95"][i][j], matrix["p_value"][i][j] = (
                row["delta"],
                row["ci95"],
                row["p_value"],
            )
            matrix["delta"][j][i] = None if row["delta"] is None else -row["delta"]
            matrix["ci95"][j][i] = None if row["ci95"] is None else [-row["ci95"][1], -row["ci95"][0]]
            matrix["p_value"][j][i] = row["p_value"]
    about = _about(runs, pair)
    return {"metric": metric, "runs": about["labels"], **matrix}, about


def _about(runs: list[Run], pair: _Pair) -> dict:
    """Names for the runs (the model's, or its folder where two runs share a model name) and the bootstrap."""
    names = [r.results["model"] for r in runs]
    label = [n if names.count(n) == 1 else str(r.folder) for n, r in zip(names, runs)]
    return {
        "labels": label,
        "folders": [str(r.folder) for r in runs],
        "task": runs[0].results["task"],
        "resamples": pair.resamples,
        "seed": pair.seed,
        "level": pair.level,
        "family": runs[0].family,
    }
