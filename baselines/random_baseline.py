"""The random baseline: chance level for every task.

Each answer is drawn from one numpy Generator seeded at construction, so the outputs are
deterministic given the seed and the order of calls (the same images asked in a different order
get different answers). Scores come with a random 10-bin vote distribution and are its mean, mapped
from bins 1..10 to the request's score range, so score and distribution agree. Suggestions are one
of six, one per degradation kind of the suggest task, so chance accuracy there is 1/6.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from aesbench.adapter import Model, Request, register
from aesbench.baselines.handcrafted import SUGGESTION_BY_KIND
from aesbench.degradations import SUGGEST_KINDS

BINS = np.arange(1, 11)

COMMENT_BANK = (
    "Nice colours and a pleasing composition.",
    "The subject is lost in a busy background.",
    "Good use of light, but the framing feels a little tight.",
    "A simple, calm image; the mood comes through well.",
    "The focus is soft and the picture lacks impact.",
    "Interesting subject, though the exposure could be better.",
)


@register("random")
class RandomModel(Model):
    """Random scores, distributions, comments and suggestions from a seeded generator."""

    capabilities = frozenset({"score", "distribution", "comment", "suggest", "personalize"})

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def config(self) -> dict:
        return {"seed": self.seed}

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        lo, hi = request.score_range
        results = []
        for _ in images:
            distribution = self.rng.dirichlet(np.ones(len(BINS)))
            mean_bin = float(distribution @ BINS)
            results.append({"score": lo + (hi - lo) * (mean_bin - 1) / 9, "distribution": distribution.tolist()})
        return results

    def comment(self, images: list[Image.Image], request: Request) -> list[str]:
        return [COMMENT_BANK[self.rng.integers(len(COMMENT_BANK))] for _ in images]

    def suggest(self, images: list[Image.Image], request: Request) -> list[str]:
        return [SUGGESTION_BY_KIND[SUGGEST_KINDS[self.rng.integers(len(SUGGEST_KINDS))]] for _ in images]

    def personalize(self, images: list[Image.Image], scores: list[float], request: Request) -> Model:
        """A fresh random model whose seed comes from this one's generator (ignores the support set)."""
        return RandomModel(seed=int(self.rng.integers(2**63 - 1)))
