"""What every family shares: the protocol dataclass (fields, defaults and validation in one place), the
Family interface, and the checks that turn prediction lines into usable pairs or recorded skips.

Scoring never trusts its lines: they may come from a file made elsewhere, so every value is checked
again and an unusable line is a recorded skip.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..adapter import Model, Request
from ..errors import AesbenchError
from ..metrics import Metric
from ..registry import nearest
from ..values import is_number

if TYPE_CHECKING:
    from ..datasets import Dataset, Item
    from ..pipeline import Track
    from ..task import Task

DEFAULT_BOOTSTRAP = {"resamples": 1000, "seed": 0, "level": 0.95}


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _valid_bootstrap(b) -> bool:
    return (
        isinstance(b, dict)
        and set(b) <= set(DEFAULT_BOOTSTRAP)
        and is_int(b.get("resamples", 0))
        and b.get("resamples", 0) >= 0
        and is_int(b.get("seed", 0))
        and is_number(b.get("level", 0.95))
        and 0 < b.get("level", 0.95) < 1
    )


def setting(default, valid, expected: str, factory: bool = False):
    """A protocol field: its default, its check (value -> bool, or an AesbenchError with its own reason)
    and what a valid value looks like (for the one-line error)."""
    meta = {"valid": valid, "expected": expected}
    if factory:
        return field(
            default_factory=lambda: list(default) if isinstance(default, (list, tuple)) else dict(default),
            metadata=meta,
        )
    return field(default=default, metadata=meta)


def bootstrap_setting(**own):
    """The `bootstrap` protocol field: resamples, seed and level, and a family's own keys, each given as
    name=(default, check, what a valid value looks like)."""

    def valid(b) -> bool:
        if not isinstance(b, dict) or not _valid_bootstrap({k: v for k, v in b.items() if k not in own}):
            return False
        for key, (_, check, expected) in own.items():
            if key in b and not check(b[key]):
                raise AesbenchError(f"{key} must be {expected}, not {b[key]!r}")
        return True

    listed = "".join(f", {key}: {expected}" for key, (_, _, expected) in own.items())
    return setting(
        {**DEFAULT_BOOTSTRAP, **{key: default for key, (default, _, _) in own.items()}},
        valid,
        f"{{resamples: whole number, seed: whole number, level: between 0 and 1{listed}}}",
        factory=True,
    )


POSITIVE = (lambda v: is_int(v) and v > 0, "a positive whole number")
WHOLE = (is_int, "a whole number")


@dataclass
class Protocol:
    """A family's protocol choices as run: every field has its default here, so the record of a run
    holds the resolved protocol, never only what a task happened to write. The bootstrap's settings
    are resolved one by one: a task that sets only `resamples` runs with the default seed and level."""

    bootstrap: dict = bootstrap_setting()

    def __post_init__(self):
        if isinstance(self.bootstrap, dict):  # a record read from elsewhere may hold anything (leaderboard.py)
            default = next(f for f in dataclasses.fields(self) if f.name == "bootstrap").default_factory()
            self.bootstrap = {**default, **self.bootstrap}  # this family's defaults for the keys left out

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict, where: str, family: str) -> Protocol:
        """The protocol from a task's `protocol:` mapping, each value checked; one line per problem."""
        known = cls.keys()
        typos = sorted(set(data) - set(known), key=str)
        if typos:
            raise AesbenchError(
                f"{where}: unknown protocol key {typos[0]!r} for family {family}{nearest(str(typos[0]), known)}"
                f" (known: {', '.join(sorted(known))})"
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in data.items():
            valid, expected = fields[key].metadata["valid"], fields[key].metadata["expected"]
            try:
                ok = valid(value)
            except AesbenchError as e:
                raise AesbenchError(f"{where}: protocol.{key}: {e}") from None
            if not ok:
                raise AesbenchError(f"{where}: protocol.{key} must be {expected}, not {value!r}")
        return cls(**data)

    @classmethod
    def from_record(cls, recorded: dict) -> Protocol:
        """The protocol a run recorded in its results (checked when the run was made): a key an older
        record left out takes its default, a key this version does not know is left out."""
        return cls(**{k: v for k, v in recorded.items() if k in cls.keys()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Family:
    """One task family: what it asks of a model (`capability`), the label type its datasets must give
    (`label`), its `Protocol`, default metrics and prompt; how it predicts, shards and scores."""

    name: ClassVar[str] = ""
    capability: ClassVar[str] = ""
    label: ClassVar[str] = ""
    Protocol: ClassVar[type[Protocol]] = Protocol
    known_metrics: ClassVar[tuple[Metric, ...]] = ()  # every metric a task of this family may ask for
    default_metrics: ClassVar[tuple[str, ...]] = ()
    prompt: ClassVar[str] = ""

    def metrics(self) -> list[str]:
        """The metric names a task of this family may ask for."""
        return [m.name for m in self.known_metrics]

    def request(self, task: Task) -> Request:
        return Request(prompt=task.prompt)

    def prepare(self, task: Task) -> None:
        """Check what scoring will need besides the model (Java, a judge's folder), before the model runs."""

    def scoring(self, model: Model, task: Task) -> dict:
        """What scoring needs from the model, stored with its predictions (store.py)."""
        return {"on_task_scale": model.on_task_scale}

    def shard(self, task: Task, data: Dataset, recorded: set[str], rank: int, world: int) -> Dataset:
        """This process's part of the work not yet recorded: positions rank, rank + world, ..."""
        return dataclasses.replace(data, items=[it for it in data.items if it.id not in recorded][rank::world])

    def predict(self, model: Model, task: Task, data: Dataset, store, batch_size: int, track: Track) -> None:
        raise NotImplementedError

    def score(self, task: Task, data: Dataset, lines: dict[str, dict], scoring: dict) -> dict:
        """Metrics, CIs, undefined metrics with reasons, skips and details from prediction lines."""
        raise NotImplementedError


def check_count(model: Model, outputs: list, expected: int) -> None:
    if len(outputs) != expected:
        raise AesbenchError(f"model {model.name!r} returned {len(outputs)} outputs for {expected} images")


def check_score(line: dict) -> str | None:
    """Why a score line cannot be used, or None."""
    value = line.get("score")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"prediction has no numeric 'score' (got {value!r})"
    if not math.isfinite(value):
        return f"non-finite score {value}"
    dist = line.get("distribution")
    if dist is not None:
        try:
            arr = np.asarray(dist, dtype=float) if isinstance(dist, list) else None
        except (TypeError, ValueError):
            arr = None
        if (
            arr is None
            or arr.shape != (10,)
            or not np.isfinite(arr).all()
            or (arr < 0).any()
            or abs(arr.sum() - 1) > 1e-3
        ):
            return "distribution must be 10 finite non-negative probabilities summing to 1"
    return None


def check_text(line: dict, key: str) -> str | None:
    value = line.get(key)
    return None if isinstance(value, str) else f"prediction has no text {key!r} (got {type(value).__name__})"


def usable(dataset: Dataset, lines: dict[str, dict], check) -> tuple[list[tuple[Item, dict]], list[dict]]:
    """Pair items with valid lines; everything else is a skip with its reason."""
    pairs, skipped = [], list(dataset.skipped)
    for item in dataset.items:
        line = lines.get(item.id)
        if line is None:
            skipped.append({"id": item.id, "reason": "no prediction"})
        elif "skipped" in line:
            skipped.append({"id": item.id, "reason": line["skipped"]})
        elif (reason := check(line)) is not None:
            skipped.append({"id": item.id, "reason": reason})
        else:
            pairs.append((item, line))
    known = {item.id for item in dataset.items}
    extra = sorted(set(lines) - known)
    if extra:
        skipped.append(
            {"id": extra[0], "reason": f"{len(extra)} prediction id(s) not in the task, ignored (first: {extra[0]})"}
        )
    return pairs, skipped


def summary(metrics: dict, ci95: dict, undefined: dict, n: int, skipped: list, details: dict | None = None) -> dict:
    clean, why = {}, dict(undefined)
    for name, value in metrics.items():
        if value is None or not math.isfinite(value):
            why.setdefault(name, "undefined on these predictions (e.g. constant scores)")
        else:
            clean[name] = float(value)
    return {
        "n": n,
        "metrics": clean,
        "ci95": {k: v for k, v in ci95.items() if k in clean and v},
        "undefined": why,
        "skipped": skipped,
        "details": details or {},
    }
