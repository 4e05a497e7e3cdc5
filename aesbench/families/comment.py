"""Aesthetic commenting: write a critique. BLEU-1..4, METEOR, ROUGE-L and CIDEr-D computed as pycocoevalcap's
COCOEvalCap does (captions.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..adapter import Model
from ..captions import CaptionScorer, require_java
from ..metrics import CAPTION_METRICS, Metric
from ..pipeline import predict_items
from .base import Family, check_count, check_text, summary, usable

if TYPE_CHECKING:
    from ..datasets import Dataset
    from ..pipeline import Track
    from ..task import Task


class TextFamily(Family):
    """Families whose model output is one text per image: `comment`, `suggest`."""

    key = verb = ""

    def transform(self, task: Task):
        return None

    def predict(self, model: Model, task: Task, data: Dataset, store, batch_size: int, track: Track) -> None:
        request = self.request(task)

        def ask(items, images):
            outputs = getattr(model, self.capability)(images, request)
            check_count(model, outputs, len(items))
            return [{"id": it.id, self.key: str(text)} for it, text in zip(items, outputs)]

        predict_items(task, data, store, batch_size, track, self.verb, ask, self.transform(task))


class CommentFamily(TextFamily):
    name, capability, label = "comment", "comment", "references"
    key, verb = "comment", "commenting"
    known_metrics = tuple(Metric(name, "comment") for name in CAPTION_METRICS)
    default_metrics = CAPTION_METRICS
    prompt = "Write a short critique of this photograph's aesthetics."

    def prepare(self, task: Task) -> None:
        require_java()

    def score(self, task: Task, data: Dataset, lines: dict[str, dict], scoring: dict) -> dict:
        boot = task.protocol.bootstrap
        pairs, skipped = usable(data, lines, lambda line: check_text(line, "comment"))
        if not pairs:
            return summary({}, {}, {m: "no usable comments" for m in task.metrics}, 0, skipped)
        references = {item.id: item.label["references"] for item, _ in pairs}
        candidates = {item.id: line["comment"] for item, line in pairs}
        scorer = CaptionScorer()
        try:
            scored = scorer.score(references, candidates)
            ci95 = scorer.bootstrap(scored, boot["resamples"], boot["seed"], boot["level"])
        finally:
            scorer.close()
        per_item = {name: dict(zip(references, values)) for name, values in scored["per_item"].items()}
        metrics = {m: scored["metrics"][m] for m in task.metrics}
        details = {"per_item": per_item, "normalised": scored["normalised"]}
        return summary(metrics, ci95, {}, len(pairs), skipped, details)
