"""The level readout the field scores with, and its training targets; shared by CALM, ArtQuant and
the MLLM baselines.

Readout (Q-Align): after a fixed answer prefix, the next-token logits of n level words are
softmaxed over those words only, p = softmax(l_1..l_n); E = Σ p_i w_i with the level weights w;
the score is E moved linearly from [min w, max w] onto the task's range (lo, hi).

Soft labels (ArtQuant): a MOS is first moved onto the weights' scale (t); the label is a Gaussian
over the level anchors w_i, p_i ∝ exp(-(w_i - μ)² / 2σ²), with μ solved so that Σ p_i w_i = t
exactly (brentq, to 1e-12): its readout is the MOS itself. σ is a fraction of the weights' span.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..errors import AesbenchError

LEVEL_WORDS = ("excellent", "good", "fair", "poor", "bad")
QALIGN_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)
ARTQUANT_WEIGHTS = (10.0, 7.5, 5.0, 3.5, 1.0)


@dataclass(frozen=True)
class LevelReadout:
    prompt: str
    answer_prefix: str
    words: tuple[str, ...] = LEVEL_WORDS
    weights: tuple[float, ...] = QALIGN_WEIGHTS
    sigma: float = 0.1  # the soft labels' width, as a fraction of the weights' span

    def __post_init__(self):
        if len(self.words) < 2 or len(self.words) != len(self.weights) or max(self.weights) == min(self.weights):
            raise AesbenchError(f"a level readout needs two or more words, one weight each, not all equal (got {self.words}, {self.weights})")

    def to_weights(self, value: float, score_range: tuple[float, float]) -> float:
        lo, hi = score_range
        w_lo, w_hi = min(self.weights), max(self.weights)
        return w_lo + (value - lo) / (hi - lo) * (w_hi - w_lo)

    def score(self, probs: np.ndarray, score_range: tuple[float, float]) -> np.ndarray:
        """Scores on the task's range from level probabilities (rows sum to 1)."""
        lo, hi = score_range
        w = np.asarray(self.weights, dtype=np.float64)
        return lo + (np.asarray(probs, dtype=np.float64) @ w - w.min()) / (w.max() - w.min()) * (hi - lo)

    def soft_label(self, mos: float, score_range: tuple[float, float]) -> np.ndarray:
        """Gaussian level probabilities whose readout equals the MOS (clipped just inside the range)."""
        w = np.asarray(self.weights, dtype=np.float64)
        span = w.max() - w.min()
        target = float(np.clip(self.to_weights(mos, score_range), w.min() + 1e-6 * span, w.max() - 1e-6 * span))
        sigma = self.sigma * span

        def probs(mu):
            z = -((w - mu) ** 2) / (2 * sigma * sigma)
            z = np.exp(z - z.max())
            return z / z.sum()

        reach = span + 40 * sigma
        mu = brentq(lambda m: probs(m) @ w - target, w.min() - reach, w.max() + reach, xtol=1e-12, rtol=1e-15, maxiter=500)
        return probs(mu)


def first_token_ids(tokenizer, text: str, words) -> list[int]:
    """The id of each word's first token where it would follow `text`.

    Each word's id is the first token past the prompt when `text + sep + word` is tokenized against
    `text` alone, special tokens off, so BOS is never taken and "▁good", "Ġgood" and "good"
    conventions all come out right; sep is " " unless the text ends in whitespace. Two words
    sharing their first token are refused: the readout could not tell them apart.
    """
    sep = "" if not text or text[-1].isspace() else " "
    context = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = []
    for word in words:
        full = tokenizer(text + sep + word, add_special_tokens=False)["input_ids"]
        if len(full) <= len(context) or full[:len(context)] != context:
            raise AesbenchError(f"level word {word!r} merges with the end of the prompt when tokenized, so it has no token of its own there; change answer_prefix or level_words")
        ids.append(full[len(context)])
    for i, token in enumerate(ids):
        if token in ids[:i]:
            other = words[ids.index(token)]
            raise AesbenchError(f"level words {other!r} and {words[i]!r} share their first token {tokenizer.convert_ids_to_tokens(token)!r}, so the readout cannot tell them apart; choose other level_words")
    return ids
