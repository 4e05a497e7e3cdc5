"""Aesthetic suggesting (CALM's protocol): good images each given one severe degradation of six kinds; a
suggestion is correct when a judge finds that it addresses the degraded attribute. Accuracy per kind and
on average."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..degradations import SUGGEST_KINDS, degrade, item_rng
from ..judges import check_judge, make_judge
from ..metrics import Metric, bootstrap_ci
from .base import POSITIVE, WHOLE, Protocol, check_text, is_number, setting, summary, usable
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
        code = np.array([kinds.index(v["kind"]) for v in verdicts.values()], dtype=np.int64)
        correct = np.array([v["correct"] for v in verdicts.values()], dtype=np.float64)

        def per_kind(c, k):
            return [float(k[c == i].mean()) if (c == i).any() else float("nan") for i in range(len(kinds))]

        def average(c, k):
            return float(np.nanmean(per_kind(c, k))) if len(c) else float("nan")

        metrics, ci95 = {}, {}
        accs = per_kind(code, correct) if len(pairs) else [float("nan")] * len(kinds)
        for i, kind in enumerate(kinds):
            name = f"acc_{kind}"
            if name in task.metrics:
                metrics[name] = accs[i]
                ci95[name] = bootstrap_ci(
                    lambda c, k, i=i: per_kind(c, k)[i], [code, correct], boot["resamples"], boot["seed"], boot["level"]
                )
        if "acc_avg" in task.metrics:
            metrics["acc_avg"] = average(code, correct)
            ci95["acc_avg"] = bootstrap_ci(average, [code, correct], boot["resamples"], boot["seed"], boot["level"])
        return summary(metrics, ci95, {}, len(pairs), skipped, {"judge": judge.describe(), "verdicts": verdicts})
