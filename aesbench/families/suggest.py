"""Aesthetic suggesting (CALM's protocol): good images each given one severe degradation of six kinds; a
suggestion is correct when a judge finds that it addresses the degraded attribute. Accuracy per kind and
on average."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..degradations import SUGGEST_KINDS, degrade, item_rng
from ..judges import check_judge, make_judge
from ..metrics import Metric, bootstrap_ci
from ..values import is_number
from .base import POSITIVE, WHOLE, Protocol, check_text, setting, summary, usable
from .comment import TextFamily

if TYPE_CHECKING:
    from ..datasets import Dataset
    from ..task import Task


def _valid_judge(v) -> bool:
    check_judge(v, locate=False)  # an unknown judge or option: its own one-line reason; folders at run time,
    return True  # after --judge-arg has had its say


@dataclass
class SuggestProtocol(Protocol):
    top: int = setting(100, *POSITIVE)
    kinds: list = setting(
        SUGGEST_KINDS,
        lambda v: isinstance(v, list) and v and set(v) <= set(SUGGEST_KINDS),
        f"a list from {list(SUGGEST_KINDS)}",
        factory=True,
    )
    severity: float = setting(1.0, lambda v: is_number(v) and 0 <= v <= 1, "a number from 0 to 1")
    seed: int = setting(0, *WHOLE)
    judge: object = setting("keyword", _valid_judge, "a judge name (aesbench/judges.py), or {name: ..., option: value}")


def verdict_arrays(kinds: list[str], verdicts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(code, correct) of the judge's verdicts: each one's kind as its position in `kinds`, and 1.0 where
    the suggestion addresses it, else 0.0; what accuracy_functions take."""
    code = np.array([kinds.index(v["kind"]) for v in verdicts], dtype=np.int64)
    return code, np.array([v["correct"] for v in verdicts], dtype=np.float64)


def accuracy_functions(kinds: list[str]) -> dict:
    """The suggest metrics as functions of (code, correct) (verdict_arrays): acc_<kind>, the share of
    that kind's items whose suggestion is correct (NaN without any), and acc_avg, the mean of the
    defined per-kind accuracies (NaN without verdicts)."""

    def kind_accuracy(k: int, code, correct) -> float:
        return float(correct[code == k].mean()) if (code == k).any() else float("nan")

    def average(code, correct) -> float:
        if not len(code):
            return float("nan")
        return float(np.nanmean([kind_accuracy(k, code, correct) for k in range(len(kinds))]))

    functions = {f"acc_{kind}": functools.partial(kind_accuracy, k) for k, kind in enumerate(kinds)}
    functions["acc_avg"] = average
    return functions


class SuggestFamily(TextFamily):
    name, capability, label = "suggest", "suggest", "degradation"
    key, verb = "suggestion", "suggesting"
    Protocol = SuggestProtocol
    known_metrics = tuple(Metric(f"acc_{k}", "suggest") for k in SUGGEST_KINDS) + (Metric("acc_avg", "suggest"),)
    default_metrics = ("acc_avg",)
    prompt = "How could this photograph be improved?"

    def prepare(self, task: Task) -> None:
        check_judge(task.protocol.judge)  # its folder too

    def transform(self, task: Task):
        """Each image gets its item's degradation, seeded by (task seed, item id)."""
        severity, seed = float(task.protocol.severity), int(task.protocol.seed)
        return lambda item, img: degrade(img, item.label["kind"], severity, item_rng(seed, item.id))

    def score(self, task: Task, data: Dataset, lines: dict[str, dict], scoring: dict) -> dict:
        boot = task.protocol.bootstrap
        pairs, skipped = usable(data, lines, lambda line: check_text(line, "suggestion"))
        judge = make_judge(task.protocol.judge)
        kinds = list(task.protocol.kinds)
        verdicts = {}
        for item, line in pairs:
            verdicts[item.id] = {"kind": item.label["kind"], **judge.judge(line["suggestion"], item.label["kind"])}
        code, correct = verdict_arrays(kinds, list(verdicts.values()))
        metrics, ci95 = {}, {}
        for name, fn in accuracy_functions(kinds).items():
            if name in task.metrics:
                metrics[name] = fn(code, correct)
                ci95[name] = bootstrap_ci(fn, [code, correct], boot["resamples"], boot["seed"], boot["level"])
        return summary(metrics, ci95, {}, len(pairs), skipped, {"judge": judge.describe(), "verdicts": verdicts})
