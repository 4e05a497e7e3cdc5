"""Task families, one module each: what a family asks of a model, the label type its datasets give, its
protocol (a dataclass: fields, defaults, validation), its metrics, default prompt, and how it predicts,
shards and scores. task.py, the runner and the leaderboard read everything family-specific from here.

A new family is one module with a `Family` subclass, registered below.
"""

from __future__ import annotations

from ..metrics import METRICS
from ..registry import Registry
from .base import Family, Protocol
from .comment import CommentFamily
from .piaa import PiaaFamily
from .score import ScoreFamily
from .suggest import SuggestFamily

FAMILIES = Registry("family")

for _family in (ScoreFamily(), CommentFamily(), SuggestFamily(), PiaaFamily()):
    FAMILIES.register(_family.name, _family)
    for _metric in _family.known_metrics:
        METRICS.register(_metric.name, _metric)


def get_family(name: str) -> Family:
    return FAMILIES.get(name)


__all__ = ["FAMILIES", "Family", "Protocol", "get_family"]
