"""Personalized IAA: per person, k support images drawn with a seeded generator, the model adapted on
them, the rest scored; SRCC averaged over repeats, then over people. ΔSRCC compares with the same model
unpersonalized on the same query images."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..adapter import Model, Request
from ..degradations import item_rng
from ..metrics import Metric, bootstrap_ci, srcc
from ..pipeline import chunks, load
from .base import POSITIVE, WHOLE, Family, Protocol, check_count, check_score, is_int, setting, summary
from .score import RANGE

if TYPE_CHECKING:
    from ..datasets import Dataset
    from ..pipeline import Track
    from ..task import Task

PIAA_COLUMNS = ("piaa_srcc", "piaa_srcc_generic", "piaa_delta_srcc")  # per person, averaged over repeats


@dataclass
class PiaaProtocol(Protocol):
    shots: list = setting(
        [10, 100],
        lambda v: isinstance(v, list) and v and all(is_int(k) and k > 0 for k in v),
        "a list of positive whole numbers",
        factory=True,
    )
    repeats: int = setting(10, *POSITIVE)
    seed: int = setting(0, *WHOLE)
    min_query: int = setting(10, *POSITIVE)
    score_range: list = setting([1, 5], *RANGE, factory=True)  # FLICKR-AES rates 1 to 5


def _person_score(out) -> float:
    """A PIAA score as a float; an unusable one is NaN, which scoring reports as a skipped repeat."""
    return float(out["score"]) if isinstance(out, dict) and check_score(out) is None else float("nan")


def mean_defined(values: np.ndarray) -> float:
    """Mean over the people for whom the value is defined (NaN when nobody's is)."""
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def _scores_map(scores) -> bool:
    return isinstance(scores, dict) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in scores.values()
    )


def draw_support(seed: int, unit: str, n: int, k: int) -> list[int]:
    """Positions of the k support images among a person's n readable images, fixed by (seed, unit)."""
    return sorted(item_rng(seed, unit).choice(n, size=k, replace=False).tolist())


class PiaaFamily(Family):
    """Per person: k-shot support drawn with a seeded rng, adapt, score the rest; repeat; average
    SRCC over repeats, then over people."""

    name, capability, label = "piaa", "personalize", "person-ratings"
    Protocol = PiaaProtocol
    known_metrics = tuple(Metric(name, "piaa") for name in ("piaa_srcc", "piaa_delta_srcc", "piaa_srcc_generic"))
    default_metrics = ("piaa_srcc", "piaa_delta_srcc")
    prompt = "How would you rate the aesthetics of this image?"

    def request(self, task: Task) -> Request:
        lo, hi = task.protocol.score_range
        return Request(prompt=task.prompt, score_range=(float(lo), float(hi)))

    def units(self, task: Task, worker: str) -> list[str]:
        """The ids of a person's lines: the generic scores, then one per (k, repeat)."""
        p = task.protocol
        return [f"{worker}/generic"] + [f"{worker}/k{k}/r{r}" for k in p.shots for r in range(p.repeats)]

    def shard(self, task: Task, data: Dataset, recorded: set[str], rank: int, world: int) -> Dataset:
        """People, not images, are split: every pending person goes to one process."""
        pending = [w for w in data.groups if not all(u in recorded for u in self.units(task, w))]
        groups = {w: data.groups[w] for w in pending[rank::world]}
        return dataclasses.replace(data, groups=groups, items=[it for items in groups.values() for it in items])

    def predict(self, model: Model, task: Task, data: Dataset, store, batch_size: int, track: Track) -> None:
        from ..datasets import Item

        request = self.request(task)
        p = task.protocol
        for worker in track(list(data.groups), len(data.groups), f"{task.name}: personalizing"):
            if all(u in store for u in self.units(task, worker)):
                continue
            items, images = [], []
            for batch in chunks(data.groups[worker], batch_size):
                ok, imgs = load([Item(f"{worker}/{it.id}", it.image, it.label) for it in batch], task, store)
                items += ok
                images += imgs
            ids = [it.id.split("/", 1)[1] for it in items]
            scores = [it.label["score"] for it in items]
            if f"{worker}/generic" not in store:
                generic = []
                for batch in chunks(images, batch_size):
                    outputs = model.score(batch, request)
                    check_count(model, outputs, len(batch))
                    generic += [_person_score(out) for out in outputs]
                store.write([{"id": f"{worker}/generic", "worker": worker, "scores": dict(zip(ids, generic))}])
            for k in p.shots:
                for r in range(p.repeats):
                    unit = f"{worker}/k{k}/r{r}"
                    if unit in store:
                        continue
                    if len(ids) < k + p.min_query:
                        reason = f"{len(ids)} readable images, need {k} support + {p.min_query} query"
                        store.write([{"id": unit, "skipped": reason}])
                        continue
                    support = draw_support(p.seed, unit, len(ids), k)
                    chosen = set(support)
                    query = [i for i in range(len(ids)) if i not in chosen]
                    adapted = model.personalize([images[i] for i in support], [scores[i] for i in support], request)
                    predicted = []
                    for batch in chunks(query, batch_size):
                        outputs = adapted.score([images[i] for i in batch], request)
                        check_count(model, outputs, len(batch))
                        predicted += [_person_score(out) for out in outputs]
                    store.write([{"id": unit, "worker": worker, "k": k, "repeat": r, "support": [ids[i] for i in support],
                                  "scores": {ids[i]: s for i, s in zip(query, predicted)}}])  # fmt: skip

    def _repeat(
        self, task: Task, lines: dict, worker: str, k: int, r: int, truth: dict, readable: list, generic, skipped: list
    ):
        """(SRCC personalized, SRCC generic) of one repeat, or None with the reason appended to `skipped`."""
        unit = f"{worker}/k{k}/r{r}"
        line = lines.get(unit)
        if line is None or "skipped" in line or generic is None:
            if line is None or generic is None:
                skipped.append({"id": unit, "reason": "no prediction"})
            return None
        if (
            not _scores_map(line.get("scores"))
            or not isinstance(line.get("support"), list)
            or not all(isinstance(i, str) for i in line["support"])
        ):
            skipped.append({"id": unit, "reason": "malformed line: needs support (ids) and scores {id: number}"})
            return None
        drawn = draw_support(task.protocol.seed, unit, len(readable), k) if len(readable) >= k else None
        expected = {readable[i] for i in drawn} if drawn is not None else None
        if set(line.get("support", [])) != expected:
            skipped.append({"id": unit, "reason": "support set differs from the protocol's seeded draw"})
            return None
        query = [i for i in line["scores"] if i in truth and i in generic and i not in expected]
        if len(query) < 3:
            skipped.append({"id": unit, "reason": "fewer than 3 query images with predictions"})
            return None
        y = np.array([truth[i] for i in query])
        p = np.array([line["scores"][i] for i in query], dtype=np.float64)
        g = np.array([generic[i] for i in query], dtype=np.float64)
        if not (np.isfinite(p).all() and np.isfinite(g).all()):
            skipped.append({"id": unit, "reason": "non-finite scores"})
            return None
        return srcc(p, y), srcc(g, y)

    def score(self, task: Task, data: Dataset, lines: dict[str, dict], scoring: dict) -> dict:
        boot, shots, repeats = task.protocol.bootstrap, list(task.protocol.shots), task.protocol.repeats
        skipped = list(data.skipped) + [
            {"id": i, "reason": line["skipped"]} for i, line in lines.items() if "skipped" in line
        ]
        per_worker = {k: {} for k in shots}  # k -> worker -> PIAA_COLUMNS values
        for worker, items in data.groups.items():
            truth = {it.id: it.label["score"] for it in items}
            readable = [it.id for it in items if f"{worker}/{it.id}" not in lines]  # unreadable images have skip lines
            generic = lines.get(f"{worker}/generic", {}).get("scores")
            if not _scores_map(generic):
                generic = None
            for k in shots:
                pairs = [
                    self._repeat(task, lines, worker, k, r, truth, readable, generic, skipped) for r in range(repeats)
                ]
                arr = np.array([pair for pair in pairs if pair is not None], dtype=np.float64).reshape(-1, 2)
                # A repeat with constant predictions has no SRCC: each column averages its defined repeats,
                # and the gain only counts repeats where both are defined.
                both = np.isfinite(arr).all(axis=1)
                if np.isfinite(arr[:, 0]).any():
                    per_worker[k][worker] = (
                        float(np.nanmean(arr[:, 0])),
                        float(np.nanmean(arr[:, 1])) if np.isfinite(arr[:, 1]).any() else float("nan"),
                        float(np.mean(arr[both, 0] - arr[both, 1])) if both.any() else float("nan"),
                    )
        metrics, ci95, details = {}, {}, {}
        for n, k in enumerate(shots):
            suffix = "" if n == 0 else f"_k{k}"  # the first listed k is the headline number
            table = per_worker[k]
            columns = np.array(list(table.values()), dtype=np.float64).reshape(-1, 3)
            for name in task.metrics:
                column = columns[:, PIAA_COLUMNS.index(name)]
                metrics[name + suffix] = mean_defined(column)
                ci95[name + suffix] = bootstrap_ci(
                    mean_defined, [column], boot["resamples"], boot["seed"], boot["level"]
                )
            details[f"k{k}"] = {w: dict(zip(PIAA_COLUMNS, v)) for w, v in table.items()}
        n_workers = len(per_worker[shots[0]]) if shots else 0
        return summary(
            metrics, ci95, {}, n_workers, skipped, {"per_worker": details, "shots": shots, "repeats": repeats}
        )
