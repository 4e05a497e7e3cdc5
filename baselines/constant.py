"""The constant baseline: the same answer for every image.

It is the floor every task can be read against: a score that ranks nothing (SRCC undefined, which
the harness reports as such), a comment that fits any photograph, and a suggestion that names no
attribute, so it addresses none of the suggest task's degradations.
"""

from __future__ import annotations

from PIL import Image

from aesbench.adapter import Model, Request, register

GENERIC_COMMENT = "A photograph with a clear subject; the overall impression is average."
GENERIC_SUGGESTION = "Think about what makes the photograph appealing and try to bring that out more."


@register("constant")
class Constant(Model):
    """Scores `value`, or the middle of the request's score range when value is None."""

    capabilities = frozenset({"score", "comment", "suggest", "personalize"})

    def __init__(self, value: float | None = None):
        self.value = value

    def config(self) -> dict:
        return {"value": self.value}

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        lo, hi = request.score_range
        value = (lo + hi) / 2 if self.value is None else float(self.value)
        return [{"score": value} for _ in images]

    def comment(self, images: list[Image.Image], request: Request) -> list[str]:
        return [GENERIC_COMMENT for _ in images]

    def suggest(self, images: list[Image.Image], request: Request) -> list[str]:
        return [GENERIC_SUGGESTION for _ in images]

    def personalize(self, images: list[Image.Image], scores: list[float], request: Request) -> Model:
        return self
