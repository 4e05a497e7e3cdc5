"""The pictures a reviewer asks for, drawn into RUN/plots/ from the run folder alone (rundata.py).

score: predicted vs ground-truth scatter with the fitted 4-parameter logistic (the fit plcc_logistic
uses) and SRCC / PLCC / n in the title; per-attribute SRCC and PLCC bars with their CIs when the
task has attributes. suggest: accuracy per degradation kind with CIs, the average as a line. piaa:
per-person SRCC, generic against personalized, one panel per k. comment: the per-item CIDEr-D
distribution. Small PNGs (Agg backend, 80 dpi), no timestamps in them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import AesbenchError
from .families.base import check_score
from .metrics import ATTRIBUTE_METRICS, fit_logistic, logistic4, plcc, srcc
from .rundata import Run, labels, per_person, read_run

PLOTS = "plots"
DPI = 80


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (it takes a second)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def _number(value: float | None) -> str:
    return "undefined" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _ci_errors(values: list[float], cis: list[list[float] | None]) -> np.ndarray:
    """matplotlib's yerr (distances below and above) from [low, high] intervals; 0 where there is none."""
    low = [v - ci[0] if ci else 0.0 for v, ci in zip(values, cis)]
    high = [ci[1] - v if ci else 0.0 for v, ci in zip(values, cis)]
    return np.array([low, high])


def _score(run: Run, data_root: Path | None, plt) -> dict:
    items = labels(run, data_root)
    pairs = [
        (line["score"], items[i].label["mos"])
        for i, line in ((i, run.lines[i]) for i in items if i in run.lines)
        if check_score(line) is None
    ]
    figures = {}
    if pairs:
        pred, mos = (np.array(v, dtype=np.float64) for v in zip(*pairs))
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        ax.scatter(pred, mos, s=14, alpha=0.7, edgecolors="none")
        params = fit_logistic(pred, mos)
        if params is not None:
            x = np.linspace(pred.min(), pred.max(), 200)
            ax.plot(x, logistic4(x, *params), color="C3", lw=1.5, label="4-parameter logistic fit")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel("prediction")
        ax.set_ylabel("ground truth (MOS)")
        ax.set_title(
            f"{run.label}\nSRCC {_number(srcc(pred, mos))} · PLCC {_number(plcc(pred, mos))} · n={len(pred)}",
            fontsize=9,
        )
        figures["scatter"] = fig
    attributes = (run.results["protocol"].get("protocol") or {}).get("attributes") or []
    metrics, ci95 = run.results["metrics"], run.results["ci95"]
    if any(f"{m}@{key}" in metrics for m in ATTRIBUTE_METRICS for key in attributes):
        fig, ax = plt.subplots(figsize=(max(4.8, 0.7 * len(attributes) + 1.5), 3.8))
        x = np.arange(len(attributes))
        width = 0.8 / len(ATTRIBUTE_METRICS)
        for n, metric in enumerate(ATTRIBUTE_METRICS):
            names = [f"{metric}@{key}" for key in attributes]
            values = [metrics.get(name, np.nan) for name in names]
            ax.bar(
                x + (n - (len(ATTRIBUTE_METRICS) - 1) / 2) * width,
                values,
                width,
                label=metric.upper(),
                yerr=_ci_errors(values, [ci95.get(name) for name in names]),
                capsize=2,
            )
        ax.set_xticks(x, attributes, rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel("correlation with the attribute's labels")
        ax.set_title(f"{run.label}: per attribute (bars: {run.results['bootstrap']['level']:.0%} CI)", fontsize=9)
        ax.legend(fontsize=8)
        figures["attributes"] = fig
    return figures


def _suggest(run: Run, data_root: Path | None, plt) -> dict:
    metrics, ci95 = run.results["metrics"], run.results["ci95"]
    kinds = [m for m in metrics if m.startswith("acc_") and m != "acc_avg"]
    if not kinds:
        return {}
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    values = [metrics[k] for k in kinds]
    ax.bar([k[len("acc_") :] for k in kinds], values, yerr=_ci_errors(values, [ci95.get(k) for k in kinds]), capsize=3)
    if "acc_avg" in metrics:
        ax.axhline(metrics["acc_avg"], color="C3", ls="--", lw=1.2, label=f"average {metrics['acc_avg']:.3f}")
        ax.legend(fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{run.label}: accuracy per degradation kind, n={run.results['n']}", fontsize=9)
    return {"accuracy_per_kind": fig}


def _piaa(run: Run, data_root: Path | None, plt) -> dict:
    per_worker = per_person(run.results)
    panels = {
        k: [
            (v["piaa_srcc_generic"], v["piaa_srcc"])
            for v in people.values()
            if v.get("piaa_srcc") is not None and v.get("piaa_srcc_generic") is not None
        ]
        for k, people in per_worker.items()
    }
    panels = {k: points for k, points in panels.items() if points}
    if not panels:
        return {}
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + 0.6, 3.6), squeeze=False)
    for ax, (k, points) in zip(axes[0], panels.items()):
        generic, personal = np.array(points).T
        ax.plot([-1, 1], [-1, 1], color="grey", lw=0.8, ls="--")
        ax.scatter(generic, personal, s=18)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_xlabel("SRCC generic")
        ax.set_ylabel("SRCC personalized")
        ax.set_title(f"{k}: {len(points)} people, mean {personal.mean():.3f} vs {generic.mean():.3f}", fontsize=8)
    fig.suptitle(f"{run.label}: per person (above the line: personalizing helped)", fontsize=9)
    return {"per_person_srcc": fig}


def _comment(run: Run, data_root: Path | None, plt) -> dict:
    cider = ((run.results.get("details") or {}).get("per_item") or {}).get("cider") or {}
    values = np.array([v for v in cider.values() if v is not None], dtype=np.float64)
    if not len(values):
        return {}
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.hist(values, bins=min(30, max(5, len(values) // 3)))
    ax.set_xlabel("CIDEr-D of the item")
    ax.set_ylabel("items")
    ax.set_title(
        f"{run.label}: per-item CIDEr-D, corpus {_number(run.results['metrics'].get('cider'))}, n={len(values)}",
        fontsize=9,
    )
    return {"cider_per_item": fig}


DRAW = {"score": _score, "suggest": _suggest, "piaa": _piaa, "comment": _comment}


def draw(folder: Path, data_root: Path | None = None) -> list[Path]:
    """Draw a run's plots into FOLDER/plots/ (a file of the same name is replaced); return the files
    written, none when the run has nothing to show (no usable predictions, say)."""
    run = read_run(folder)
    plt = pyplot()
    figures = DRAW[run.family](run, data_root, plt) if run.family in DRAW else {}
    target = run.folder / PLOTS
    written = []
    try:
        for name, fig in figures.items():
            target.mkdir(exist_ok=True)
            fig.tight_layout()
            path = target / f"{name}.png"
            fig.savefig(path, dpi=DPI, metadata={"Software": None})
            written.append(path)
    except OSError as e:  # a read-only run folder, a file named plots
        raise AesbenchError(f"cannot write plots into {target}: {e.strerror or type(e).__name__}") from None
    finally:
        plt.close("all")
    return written
