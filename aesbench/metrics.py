"""Scoring metrics as small pure functions over numpy arrays, and the seeded bootstrap for their CIs.

SRCC, PLCC and KRCC are scipy's own functions (not reimplementations), so the numbers are scipy's.
A metric that is undefined on its input (constant predictions, a failed logistic fit) is NaN; the
harness records it as undefined with the reason instead of a number.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats

from .degradations import SUGGEST_KINDS

CAPTION_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")

KNOWN_METRICS = {
    "score": ("srcc", "plcc", "krcc", "acc", "mse", "emd", "plcc_logistic"),
    "comment": CAPTION_METRICS,
    "suggest": tuple(f"acc_{k}" for k in SUGGEST_KINDS) + ("acc_avg",),
    "piaa": ("piaa_srcc", "piaa_delta_srcc", "piaa_srcc_generic"),
}


def _quiet(fn, *args):
    """scipy warns (and returns NaN) on constant input; the NaN is what we keep."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(*args)[0])


def srcc(pred: np.ndarray, mos: np.ndarray) -> float:
    return _quiet(stats.spearmanr, pred, mos)


def plcc(pred: np.ndarray, mos: np.ndarray) -> float:
    return _quiet(stats.pearsonr, pred, mos) if np.ptp(pred) > 0 and np.ptp(mos) > 0 else float("nan")


def krcc(pred: np.ndarray, mos: np.ndarray) -> float:
    return _quiet(stats.kendalltau, pred, mos)  # tau-b, scipy's default


def acc(pred: np.ndarray, mos: np.ndarray, threshold: float = 5.0) -> float:
    """Binary accuracy: an image is 'high' when its score is >= threshold (Murray et al. 2012, delta = 0)."""
    return float(np.mean((pred >= threshold) == (mos >= threshold)))


def mse(pred: np.ndarray, mos: np.ndarray) -> float:
    return float(np.mean((pred - mos) ** 2))


def emd(pred_dist: np.ndarray, true_dist: np.ndarray, r: int = 2) -> float:
    """Earth mover's distance between 10-bin distributions via CDFs (NIMA, r = 2), averaged over images."""
    cdf_diff = np.cumsum(pred_dist, axis=1) - np.cumsum(true_dist, axis=1)
    return float(np.mean(np.mean(np.abs(cdf_diff) ** r, axis=1) ** (1.0 / r)))


def logistic4(x, b1, b2, b3, b4):
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    with np.errstate(over="ignore"):  # exp overflows to inf for far-off x; the limit b2 is the right value
        return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def plcc_logistic(pred: np.ndarray, mos: np.ndarray) -> float:
    """PLCC after fitting the 4-parameter logistic from predictions to MOS (reported beside raw PLCC)."""
    if len(pred) <= 4 or np.ptp(pred) == 0 or np.ptp(mos) == 0:  # four parameters need more than four points
        return float("nan")
    p0 = [mos.max(), mos.min(), float(np.mean(pred)), float(np.std(pred)) or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, pred, mos, p0=p0, maxfev=10000)
    except (RuntimeError, optimize.OptimizeWarning, ValueError):
        return float("nan")
    return plcc(logistic4(pred, *params), mos)


SCORE_FUNCTIONS = {"srcc": srcc, "plcc": plcc, "krcc": krcc, "mse": mse, "plcc_logistic": plcc_logistic}

# Reported per attribute as `srcc@<key>`: scale-free, so an attribute's scale need not match the total's.
ATTRIBUTE_METRICS = ("srcc", "plcc")


def bootstrap_ci(fn, arrays: list[np.ndarray], resamples: int, seed: int, level: float = 0.95) -> list[float] | None:
    """Percentile interval of fn over `resamples` seeded resamples of the items (rows of every array)."""
    n = len(arrays[0])
    if n < 2 or resamples <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = np.array([fn(*(a[idx] for a in arrays)) for idx in rng.integers(0, n, size=(resamples, n))])
    values = values[np.isfinite(values)]
    if len(values) < resamples / 2:
        return None
    alpha = (1.0 - level) / 2.0
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha))]
