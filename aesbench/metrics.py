"""Scoring metrics as small pure functions over numpy arrays, and the seeded bootstrap for their CIs.

SRCC, PLCC and KRCC are scipy's own functions (not reimplementations), so the numbers are scipy's.
A metric that is undefined on its input (constant predictions, a failed logistic fit) is NaN; the
harness records it as undefined with the reason instead of a number.
"""
from __future__ import annotations

import functools
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

LOWER_IS_BETTER = frozenset({"mse", "emd"})  # errors and distances; every other metric: higher is better


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of the metric is better (`mse`, `emd`; `srcc@composition` follows `srcc`)."""
    return metric.split("@")[0] in LOWER_IS_BETTER


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
    return float(np.mean(emd_per_item(pred_dist, true_dist, r)))


def emd_per_item(pred_dist: np.ndarray, true_dist: np.ndarray, r: int = 2) -> np.ndarray:
    cdf_diff = np.cumsum(pred_dist, axis=1) - np.cumsum(true_dist, axis=1)
    return np.mean(np.abs(cdf_diff) ** r, axis=1) ** (1.0 / r)


def logistic4(x, b1, b2, b3, b4):
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    with np.errstate(over="ignore"):  # exp overflows to inf for far-off x; the limit b2 is the right value
        return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def plcc_logistic(pred: np.ndarray, mos: np.ndarray) -> float:
    """PLCC after fitting the 4-parameter logistic from predictions to MOS (reported beside raw PLCC)."""
    params = fit_logistic(pred, mos)
    return float("nan") if params is None else plcc(logistic4(pred, *params), mos)


def fit_logistic(pred: np.ndarray, mos: np.ndarray) -> np.ndarray | None:
    """The 4-parameter logistic from predictions to MOS that plcc_logistic uses, or None where it
    cannot be fitted (at most four points, constant input, no convergence)."""
    if len(pred) <= 4 or np.ptp(pred) == 0 or np.ptp(mos) == 0:  # four parameters need more than four points
        return None
    p0 = [mos.max(), mos.min(), float(np.mean(pred)), float(np.std(pred)) or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, pred, mos, p0=p0, maxfev=10000)
    except (RuntimeError, optimize.OptimizeWarning, ValueError):
        return None
    return params


SCORE_FUNCTIONS = {"srcc": srcc, "plcc": plcc, "krcc": krcc, "mse": mse, "plcc_logistic": plcc_logistic}

# Reported per attribute as `srcc@<key>`: scale-free, so an attribute's scale need not match the total's.
ATTRIBUTE_METRICS = ("srcc", "plcc")


RESAMPLE_BLOCK = 2_000_000  # index draws held at once (rows x items): about 16 MB per array, whatever n is


def _index_blocks(n: int, resamples: int, seed: int):
    """The seeded resample indices, a block of rows at a time: the same stream as one
    `rng.integers(0, n, size=(resamples, n))` call (numpy draws them in order), without holding it all."""
    rng = np.random.default_rng(seed)
    rows = max(1, RESAMPLE_BLOCK // n)
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n))


def _percentile_interval(values: np.ndarray, resamples: int, level: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if len(values) < resamples / 2:
        return None
    alpha = (1.0 - level) / 2.0
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha))]


def bootstrap_ci(fn, arrays: list[np.ndarray], resamples: int, seed: int, level: float = 0.95) -> list[float] | None:
    """Percentile interval of fn over `resamples` seeded resamples of the items (rows of every array).

    The plain way, one call of fn per resample; `bootstrap_cis` computes the score metrics' intervals
    from the same resamples much faster, and tests hold it to this function's numbers."""
    values = resample_values(fn, arrays, resamples, seed)
    return None if values is None else _percentile_interval(values, resamples, level)


def resample_values(fn, arrays: list[np.ndarray], resamples: int, seed: int) -> np.ndarray | None:
    """fn on each of the seeded resamples of the items (rows of every array), or None below 2 items."""
    n = len(arrays[0])
    if n < 2 or resamples <= 0:
        return None
    return np.array([fn(*(a[idx] for a in arrays)) for block in _index_blocks(n, resamples, seed) for idx in block],
                    dtype=np.float64)


# ---- The score metrics over many resamples at once ------------------------------------------------
# A resample is the original items, item i taken counts[i] times. Every score metric is a function of
# those counts over data sorted once: ranks of a resample come from cumulative counts along the fixed
# sort order (no sorting per resample), moments are counts @ values, Kendall's discordant pairs are
# counted by scipy's own routine on the resample laid out in the fixed order. The values equal the plain
# per-resample computation up to floating-point rounding (KRCC exactly). PLCC after the logistic fit is
# refitted per resample the plain way (plcc_logistic on each resample): a fit warm-started from the
# full-data fit was faster, but on ill-posed data (random predictions) it reached other optima than
# the plain start and moved the interval (tiny-art-score, random model: lower bound 0.136 -> 0.042).


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """rows x n: how many times each item is in each resample."""
    rows = idx.shape[0]
    return np.bincount((idx + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


class _Sorted:
    """One variable sorted once: the order, where each tie group starts, each item's group, dense ranks."""

    def __init__(self, x: np.ndarray):
        self.order = np.argsort(x, kind="stable")
        xs = x[self.order]
        first = np.r_[True, xs[1:] != xs[:-1]]
        self.starts = np.flatnonzero(first)
        group_sorted = np.cumsum(first) - 1
        self.group = np.empty(len(x), dtype=np.intp)
        self.group[self.order] = group_sorted
        self.dense = self.group  # 0-based dense rank
        self.ties = len(self.starts) < len(x)

    def group_counts(self, counts: np.ndarray) -> np.ndarray:
        sorted_counts = counts[:, self.order]
        return np.add.reduceat(sorted_counts, self.starts, axis=1) if self.ties else sorted_counts

    def centred_ranks(self, counts: np.ndarray, gc: np.ndarray) -> np.ndarray:
        """Each item's average rank in each resample minus the mean rank (N + 1) / 2."""
        n_total = counts.shape[1]
        group_rank = np.cumsum(gc, axis=1) - (gc - 1.0) / 2.0 - (n_total + 1.0) / 2.0
        return group_rank[:, self.group]


def _weighted_corr(counts: np.ndarray, xc: np.ndarray, yc: np.ndarray) -> np.ndarray:
    """Pearson correlation per resample of values given per item (rows x n or n), weighted by counts."""
    n_total = counts.shape[1]
    sx, sy = (counts * xc).sum(axis=1), (counts * yc).sum(axis=1)
    sxx = (counts * xc * xc).sum(axis=1) - sx * sx / n_total
    syy = (counts * yc * yc).sum(axis=1) - sy * sy / n_total
    sxy = (counts * xc * yc).sum(axis=1) - sx * sy / n_total
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    return np.clip(r, -1.0, 1.0)


def _spread(counts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Whether each resample's values of x are not all equal (np.ptp > 0)."""
    taken = counts > 0
    return np.where(taken, x, -np.inf).max(axis=1) > np.where(taken, x, np.inf).min(axis=1)


class _Batch:
    """Values of the score metrics on blocks of resamples of (pred, mos)."""

    def __init__(self, pred: np.ndarray, mos: np.ndarray):
        self.pred, self.mos = pred, mos
        self._sorted, self._centred = {}, {}

    def sorted(self, key: str) -> _Sorted:
        if key not in self._sorted:
            self._sorted[key] = _Sorted(getattr(self, key))
        return self._sorted[key]

    def centred(self, key: str) -> np.ndarray:
        if key not in self._centred:
            x = getattr(self, key)
            self._centred[key] = x - x.mean()
        return self._centred[key]

    def srcc(self, counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
        px, py = self.sorted("pred"), self.sorted("mos")
        gx, gy = px.group_counts(counts), py.group_counts(counts)
        r = _weighted_corr(counts, px.centred_ranks(counts, gx), py.centred_ranks(counts, gy))
        constant = (gx.max(axis=1) == counts.shape[1]) | (gy.max(axis=1) == counts.shape[1])
        return np.where(constant, np.nan, r)

    def plcc(self, counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
        r = _weighted_corr(counts, self.centred("pred"), self.centred("mos"))
        return np.where(_spread(counts, self.pred) & _spread(counts, self.mos), r, np.nan)

    def krcc(self, counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
        px, py = self.sorted("pred"), self.sorted("mos")
        if "pair" not in self._sorted:  # items in (pred, mos) order, and where each tied pair starts
            order = np.lexsort((py.dense, px.dense))
            xd, yd = px.dense[order] + 1, py.dense[order] + 1  # 1-based, as kendalltau makes them
            self._sorted["pair"] = (order, xd, yd, np.flatnonzero(np.r_[True, (xd[1:] != xd[:-1]) | (yd[1:] != yd[:-1])]))
        order, xd, yd, starts = self._sorted["pair"]
        sorted_counts = counts[:, order].astype(np.int64)
        joint = np.add.reduceat(sorted_counts, starts, axis=1)
        gx, gy = px.group_counts(counts).astype(np.int64), py.group_counts(counts).astype(np.int64)
        n_total = counts.shape[1]
        tot = (n_total * (n_total - 1)) // 2
        out = np.empty(len(counts))
        for row in range(len(counts)):
            if _kendall_dis is None:  # pragma: no cover
                out[row] = krcc(self.pred[idx[row]], self.mos[idx[row]])
                continue
            # The resample laid out in (pred, mos) order is what kendalltau sorts its input into.
            x, y = np.repeat(xd, sorted_counts[row]), np.repeat(yd, sorted_counts[row])
            xtie, ytie, ntie = (int((c * (c - 1) // 2).sum()) for c in (gx[row], gy[row], joint[row]))
            if xtie == tot or ytie == tot:
                out[row] = np.nan
                continue
            con_minus_dis = tot - xtie - ytie + ntie - 2 * int(_kendall_dis(x, y))
            tau = con_minus_dis / np.sqrt(tot - xtie) / np.sqrt(tot - ytie)  # scipy's expression
            out[row] = np.minimum(1.0, max(-1.0, tau))
        return out

    def mse(self, counts: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return counts @ ((self.pred - self.mos) ** 2) / counts.shape[1]

    def acc(self, threshold: float):
        agree = ((self.pred >= threshold) == (self.mos >= threshold)).astype(np.float64)
        return lambda counts, idx: counts @ agree / counts.shape[1]


try:  # scipy's own count of discordant pairs, the one kendalltau calls
    from scipy.stats._stats import _kendall_dis
except ImportError:  # pragma: no cover - a scipy that moved it: KRCC falls back to kendalltau per resample
    _kendall_dis = None


def batch_function(fn, batch: _Batch):
    """The many-resamples version of a score metric, or None for a function without one."""
    if isinstance(fn, functools.partial) and fn.func is acc and not fn.args:
        return batch.acc(float(fn.keywords.get("threshold", 5.0)))
    if fn is acc:
        return batch.acc(5.0)
    name = {srcc: "srcc", plcc: "plcc", krcc: "krcc", mse: "mse"}.get(fn)
    return getattr(batch, name) if name else None


def bootstrap_cis(functions: dict, pred: np.ndarray, mos: np.ndarray, resamples: int, seed: int, level: float = 0.95,
                  extra: dict | None = None) -> dict:
    """Percentile intervals of several metrics of (pred, mos), all over the same seeded resamples as
    `bootstrap_ci` draws (the values of `bootstrap_values`)."""
    values = bootstrap_values(functions, pred, mos, resamples, seed, extra)
    return {name: None if v is None else _percentile_interval(v, resamples, level) for name, v in values.items()}


def bootstrap_values(functions: dict, pred: np.ndarray, mos: np.ndarray, resamples: int, seed: int,
                     extra: dict | None = None) -> dict:
    """Each metric on each of the seeded resamples `bootstrap_ci` draws (name -> array, one value per
    resample, NaN where undefined; None below 2 items), one block of resamples at a time (memory stays
    bounded at any n). `functions`: name -> fn(pred, mos); `extra`: name -> (fn, arrays) for metrics of
    other per-item arrays (EMD over distributions). Metrics without a many-resamples version are
    called per resample."""
    n = len(pred)
    names = list(functions) + list(extra or {})
    if n < 2 or resamples <= 0:
        return {name: None for name in names}
    batch = _Batch(np.asarray(pred, dtype=np.float64), np.asarray(mos, dtype=np.float64))
    fast = {name: batch_function(fn, batch) for name, fn in functions.items()}
    values = {name: [] for name in names}
    per_item = {name: emd_per_item(*arrays) for name, (fn, arrays) in (extra or {}).items() if fn is emd}
    for idx in _index_blocks(n, resamples, seed):
        counts = _counts(idx, n)
        for name, fn in functions.items():
            if fast[name] is not None:
                values[name].append(fast[name](counts, idx))
            else:
                values[name].append([fn(pred[i], mos[i]) for i in idx])
        for name, (fn, arrays) in (extra or {}).items():
            if name in per_item:
                values[name].append(counts @ per_item[name] / n)
            else:
                values[name].append([fn(*(a[i] for a in arrays)) for i in idx])
    return {name: np.concatenate([np.asarray(v, dtype=np.float64) for v in values[name]]) for name in names}
