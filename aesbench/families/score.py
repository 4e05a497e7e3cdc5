"""Aesthetic scoring: predict the mean opinion score (MOS). SRCC, PLCC, KRCC, accuracy at a threshold, MSE,
EMD against the vote distribution, PLCC after the 4-parameter logistic fit; artistic datasets add SRCC and
PLCC per attribute (`protocol.attributes`)."""

from __future__ import annotations

import collections
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..adapter import Model, Request
from ..metrics import (
    ATTRIBUTE_METRICS,
    LOGISTIC_STARTS,
    METRICS,
    SCORE_FUNCTIONS,
    Metric,
    acc,
    bootstrap_cis,
    emd,
    logistic_undefined,
    resample_logistic,
)
from ..pipeline import predict_items
from ..values import finite_number, is_number
from .base import Family, Protocol, bootstrap_setting, check_count, check_score, setting, summary, usable

if TYPE_CHECKING:
    from ..datasets import Dataset
    from ..pipeline import Track
    from ..task import Task


def valid_range(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(map(is_number, v)) and v[0] < v[1]


RANGE = (valid_range, "[low, high]: two finite numbers, low below high")


@dataclass
class ScoreProtocol(Protocol):
    # logistic_start: where plcc_logistic's refit on each resample starts (metrics.resample_logistic)
    bootstrap: dict = bootstrap_setting(
        logistic_start=(LOGISTIC_STARTS[0], lambda v: v in LOGISTIC_STARTS, " or ".join(LOGISTIC_STARTS))
    )
    score_range: list = setting([1, 10], *RANGE, factory=True)
    acc_threshold: float = setting(5.0, is_number, "a finite number")
    attributes: list = setting(
        [],
        lambda v: (
            isinstance(v, list)  # [] (the default, as `aesbench tasks NAME` writes it): no attributes
            and all(isinstance(a, str) and re.fullmatch(r"[a-z0-9_]+", a) for a in v)
            and len(set(v)) == len(v)
        ),
        "a list of distinct attribute keys (lower case, digits, _), e.g. [color, mood]",
        factory=True,
    )


def _attribute_values(values) -> dict:
    """A model's per-attribute scores as JSON numbers; a value that is no finite number is kept as null,
    so scoring reports it rather than it vanishing."""
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) if finite_number(v) else None for k, v in values.items()}


def metric_functions(protocol: ScoreProtocol) -> dict:
    """The score metrics of (predictions, MOS), name -> fn(pred, mos), as this protocol computes them:
    accuracy at its threshold. EMD is of the distributions instead (emd_undefined)."""
    return dict(SCORE_FUNCTIONS, acc=functools.partial(acc, threshold=float(protocol.acc_threshold)))


def bootstrap_functions(functions: dict, pred: np.ndarray, mos: np.ndarray, logistic_start: str) -> dict:
    """`functions` as each bootstrap resample runs them: plcc_logistic refitted from the protocol's
    bootstrap.logistic_start (metrics.resample_logistic); the full-sample values stay `functions`'."""
    if "plcc_logistic" not in functions:
        return functions
    return {**functions, "plcc_logistic": resample_logistic(pred, mos, logistic_start)}


def attribute_functions(key: str) -> dict:
    """The metrics of one attribute's (predictions, labels): <metric>@<key> -> fn."""
    return {f"{m}@{key}": SCORE_FUNCTIONS[m] for m in ATTRIBUTE_METRICS}


def emd_undefined(labels: list[dict], lines: list[dict]) -> str | None:
    """Why EMD is undefined on these items (their labels and prediction lines), or None: it needs each
    one's predicted and voted 10-bin distribution."""
    if not all("distribution" in line for line in lines):
        return "the model gives no 10-bin distribution"
    if not all("distribution" in label for label in labels):
        return "the dataset has no vote distributions"
    return None


class ScoreFamily(Family):
    name, capability, label = "score", "score", "mos"
    Protocol = ScoreProtocol
    known_metrics = (
        Metric("srcc", "score"),
        Metric("plcc", "score"),
        Metric("krcc", "score"),
        Metric("acc", "score", needs_scale=True),
        Metric("mse", "score", higher_is_better=False, needs_scale=True),
        Metric("emd", "score", higher_is_better=False, needs_distribution=True),
        Metric("plcc_logistic", "score"),
    )
    default_metrics = ("srcc", "plcc", "krcc", "plcc_logistic", "mse")
    prompt = "How would you rate the aesthetics of this image?"

    def request(self, task: Task) -> Request:
        lo, hi = task.protocol.score_range
        return Request(
            prompt=task.prompt, score_range=(float(lo), float(hi)), attributes=tuple(task.protocol.attributes)
        )

    def scoring(self, model: Model, task: Task) -> dict:
        return {"on_task_scale": model.on_task_scale, "score_range": list(task.protocol.score_range)}

    def predict(self, model: Model, task: Task, data: Dataset, store, batch_size: int, track: Track) -> None:
        request = self.request(task)

        def ask(items, images):
            outputs = model.score(images, request)
            check_count(model, outputs, len(items))
            lines = []
            for item, out in zip(items, outputs):
                line = {"id": item.id, "score": out.get("score")}
                if out.get("distribution") is not None:
                    line["distribution"] = list(out["distribution"])
                reason = check_score(line)
                if reason:
                    line = {"id": item.id, "skipped": f"model output unusable: {reason}"}
                else:  # numpy scalars become JSON numbers
                    line["score"] = float(line["score"])
                    if "distribution" in line:
                        line["distribution"] = [float(p) for p in line["distribution"]]
                    if out.get("attributes") is not None:
                        line["attributes"] = _attribute_values(out["attributes"])
                lines.append(line)
            return lines

        predict_items(task, data, store, batch_size, track, "scoring", ask)

    def _off_scale(self, task: Task, scoring: dict) -> str | None:
        """Why the scores are not on the task's scale (scale-bound metrics are then undefined), or None."""
        if not scoring.get("on_task_scale", True):
            return "the model's scores are not on the task's scale"
        asked = scoring.get("score_range")
        if asked is not None and [float(v) for v in asked] != [float(v) for v in task.protocol.score_range]:
            return f"the predictions were made for score range {asked}, the task's is {task.protocol.score_range}"
        return None

    def score(self, task: Task, data: Dataset, lines: dict[str, dict], scoring: dict) -> dict:
        boot = task.protocol.bootstrap
        pairs, skipped = usable(data, lines, check_score)
        pred = np.array([line["score"] for _, line in pairs], dtype=np.float64)
        mos = np.array([item.label["mos"] for item, _ in pairs], dtype=np.float64)
        metrics, ci95, undefined = {}, {}, {}
        functions = metric_functions(task.protocol)
        off_scale = self._off_scale(task, scoring)
        on_pairs, on_arrays = {}, {}  # every CI over the same resamples at once (metrics.bootstrap_cis)
        for name in task.metrics:
            if len(pairs) < 2:
                undefined[name] = f"needs at least 2 scored items, got {len(pairs)}"
            elif METRICS.get(name).needs_scale and off_scale:
                undefined[name] = off_scale
            elif name == "emd":
                reason = emd_undefined([item.label for item, _ in pairs], [line for _, line in pairs])
                if reason:
                    undefined[name] = reason
                else:
                    p = np.array([line["distribution"] for _, line in pairs], dtype=np.float64)
                    t = np.array([item.label["distribution"] for item, _ in pairs], dtype=np.float64)
                    metrics[name], on_arrays[name] = emd(p, t), (emd, [p, t])
            else:
                fn = functions[name]
                metrics[name], on_pairs[name] = fn(pred, mos), fn
                if name == "plcc_logistic" and not np.isfinite(metrics[name]) and np.ptp(pred) > 0:
                    # constant scores keep the reason every other metric gives them (base.summary)
                    why = logistic_undefined(pred, mos) or "the 4-parameter logistic fit did not converge"
                    undefined[name] = why
        if on_pairs or on_arrays:
            on_resamples = bootstrap_functions(on_pairs, pred, mos, boot["logistic_start"])
            ci95.update(
                bootstrap_cis(on_resamples, pred, mos, boot["resamples"], boot["seed"], boot["level"], extra=on_arrays)
            )
        details = {}
        if task.protocol.attributes:
            resampling = (boot["resamples"], boot["seed"], boot["level"])
            details["attributes"] = self._attributes(task, pairs, resampling, metrics, ci95, undefined)
        return summary(metrics, ci95, undefined, len(pairs), skipped, details)

    def _attributes(self, task: Task, pairs: list, boot: tuple, metrics: dict, ci95: dict, undefined: dict) -> dict:
        """SRCC and PLCC per attribute over the items with both a label and a predicted value for it;
        every item left out is counted under its reason, and an attribute the model never scores is undefined."""
        details = {}
        for key in task.protocol.attributes:
            labels, preds, left_out = [], [], collections.Counter()
            for item, line in pairs:
                label = item.label.get("attributes", {}).get(key)
                given = line.get("attributes") if isinstance(line.get("attributes"), dict) else {}
                if label is None:
                    left_out["no label for this attribute"] += 1
                elif key not in given:
                    left_out["no prediction for this attribute"] += 1
                elif not finite_number(given[key]):
                    left_out["predicted value is not a finite number"] += 1
                else:
                    labels.append(label)
                    preds.append(given[key])
            fns = attribute_functions(key)
            if not any(isinstance(line.get("attributes"), dict) and key in line["attributes"] for _, line in pairs):
                undefined.update({name: f"the model gives no score for attribute {key!r}" for name in fns})
            elif len(labels) < 2:
                reason = f"needs at least 2 items with a label and a prediction for {key!r}, got {len(labels)}"
                undefined.update({name: reason for name in fns})
            else:
                y, p = np.array(labels, dtype=np.float64), np.array(preds, dtype=np.float64)
                metrics.update({name: fn(p, y) for name, fn in fns.items()})
                ci95.update(bootstrap_cis(fns, p, y, *boot))
            details[key] = {"n": len(labels), "left_out": dict(left_out)}
        return details
