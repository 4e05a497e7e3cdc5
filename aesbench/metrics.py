"""Scoring metrics as small pure functions over numpy arrays, and the seeded bootstrap for their CIs.

SRCC, PLCC and KRCC are scipy's own functions (not reimplementations), so the numbers are scipy's.
A metric that is undefined on its input (constant predictions, a failed logistic fit) is NaN; the
harness records it as undefined with the reason instead of a number.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from .registry import Registry

CAPTION_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")


@dataclass(frozen=True)
class Metric:
    """What a metric is, as tables and checks need it: its family, its direction, and whether it needs
    the model's 10-bin distribution or scores on the task's scale (else it is undefined)."""

    name: str
    family: str
    higher_is_better: bool = True
    needs_distribution: bool = False
    needs_scale: bool = False


# Every metric by name; each family module declares its own (aesbench/families/).
METRICS = Registry("metric", discover=lambda: importlib.import_module("aesbench.families"))


def metric_info(name: str) -> Metric | None:
    """The metric behind a reported name: `srcc@color` is SRCC per attribute, `piaa_srcc_k50` PIAA's
    SRCC at another k; None for a name aesbench does not know (a paper's own metric, say)."""
    base = name.split("@", 1)[0]
    if base not in METRICS:
        base = re.sub(r"_k\d+$", "", base)
    return METRICS.get(base) if base in METRICS else None


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of the metric is better (`mse`, `emd`; `srcc@composition` follows `srcc`);
    False for a metric aesbench does not know."""
    info = metric_info(metric)
    return info is not None and not info.higher_is_better


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


def plcc_logistic(pred: np.ndarray, mos: np.ndarray, start: tuple | None = None) -> float:
    """PLCC after fitting the 4-parameter logistic from predictions to MOS (reported beside raw PLCC);
    `start` as in fit_logistic."""
    params = fit_logistic(pred, mos, start)
    return float("nan") if params is None else plcc(logistic4(pred, *params), mos)


def fit_logistic(
    pred: np.ndarray, mos: np.ndarray, start: tuple | None = None, counts: np.ndarray | None = None
) -> np.ndarray | None:
    """The 4-parameter logistic from predictions to MOS that plcc_logistic uses, or None where it
    cannot be fitted: where it is not identified (logistic_undefined: at most four points, fewer than
    four distinct predictions, constant MOS) or the fit does not converge. The fit starts from
    `start` (b1..b4) or, by default, from the data: MOS max and min, the predictions' mean and sd.
    With `counts`, item i stands for counts[i] copies of itself (plcc_logistic_weighted): the start's
    mean and sd and the least squares (curve_fit's sigma = 1/sqrt(counts)) are the expanded sample's."""
    if logistic_undefined(pred, mos) is not None:
        return None
    if start is not None:
        p0 = start
    elif counts is None:
        p0 = [mos.max(), mos.min(), float(np.mean(pred)), float(np.std(pred)) or 1.0]
    else:
        w = counts.astype(np.float64)
        mean = float(w @ pred / w.sum())
        p0 = [mos.max(), mos.min(), mean, float(np.sqrt(w @ (pred - mean) ** 2 / w.sum())) or 1.0]
    sigma = None if counts is None else 1.0 / np.sqrt(counts.astype(np.float64))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, pred, mos, p0=p0, sigma=sigma, maxfev=10000)
    except (RuntimeError, optimize.OptimizeWarning, ValueError):
        return None
    return params


LOGISTIC_MIN_DISTINCT = 4  # distinct predictions the 4-parameter logistic needs to be identified


def _distinct_at_most(x: np.ndarray, k: int) -> int:
    """How many distinct values x has, counted up to k + 1 (k + 1 meaning more than k): k passes over
    x at most, cheaper than np.unique's sort on a large resample."""
    rest = np.asarray(x)
    for count in range(k + 1):
        if rest.size == 0:
            return count
        rest = rest[rest != rest[0]]
    return k + 1


def logistic_undefined(pred: np.ndarray, mos: np.ndarray) -> str | None:
    """Why the 4-parameter logistic cannot be fitted to these predictions and MOS, or None. Four
    parameters need more than four points and at least four distinct predictions: through fewer the
    logistic is not identified (the Jacobian is rank deficient: infinitely many fits are exact or
    equally good) and scipy's curve_fit does not even return the same one between identical calls."""
    if len(pred) <= 4:
        return f"the 4-parameter logistic needs at least 5 items, got {len(pred)}"
    distinct = _distinct_at_most(pred, LOGISTIC_MIN_DISTINCT - 1)
    if distinct < LOGISTIC_MIN_DISTINCT:
        return f"the 4-parameter logistic needs at least {LOGISTIC_MIN_DISTINCT} distinct predictions, got {distinct}"
    if np.ptp(mos) == 0:
        return "the 4-parameter logistic needs MOS that are not all equal"
    return None


def plcc_logistic_weighted(pred: np.ndarray, mos: np.ndarray, counts: np.ndarray, start: tuple | None = None) -> float:
    """plcc_logistic of the sample that holds item i counts[i] times, computed on the distinct items
    (len(pred) > 4 of them, each counts >= 1): the same start (the weighted mean and sd are the
    resample's), the same least-squares objective (curve_fit with sigma = 1/sqrt(counts) minimises
    sum counts * residual^2, the expanded sample's sum of squares), so MINPACK takes the same steps
    (J'J, J'r, the residual norm, the column norms and the finite-difference steps are all those of
    the expanded sample), and the weighted Pearson correlation of the fitted values. Equal to
    plcc_logistic on the expanded sample up to floating-point rounding and where rounding ends the
    solver elsewhere on a flat optimum (see bootstrap_values)."""
    params = fit_logistic(pred, mos, start, counts)
    if params is None:
        return float("nan")
    fitted = logistic4(pred, *params)
    if np.ptp(fitted) == 0:
        return float("nan")
    w = counts.astype(np.float64)
    total = w.sum()
    fc, mc = fitted - w @ fitted / total, mos - w @ mos / total
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w @ (fc * mc)) / np.sqrt((w @ (fc * fc)) * (w @ (mc * mc)))
    return float(np.clip(r, -1.0, 1.0))


def plcc_logistic_weighted_warm(pred: np.ndarray, mos: np.ndarray, counts: np.ndarray, start: tuple) -> float:
    """plcc_logistic_warm on the distinct items (plcc_logistic_weighted): from `start`, else from the
    resample's own start where that fit fails."""
    value = plcc_logistic_weighted(pred, mos, counts, start)
    return (
        plcc_logistic_weighted(pred, mos, counts)
        if np.isnan(value) and logistic_undefined(pred, mos) is None
        else value
    )


LOGISTIC_STARTS = ("resample", "full_sample")  # protocol bootstrap.logistic_start, the default first


def resample_logistic(pred: np.ndarray, mos: np.ndarray, logistic_start: str):
    """plcc_logistic as each bootstrap resample refits it: from the resample's own data, the way the
    full-sample fit starts (`resample`), or from the full-sample fit's parameters (`full_sample`, as
    R's nlstools::nlsBoot starts its refits; where the full sample cannot be fitted, plcc_logistic is
    undefined and so is its interval). With `full_sample`, a resample whose refit from that start
    fails (no fit, or a degenerate one whose curve is constant over the resample, so no PLCC) is
    refitted from its own data's start instead, as `resample` would (plcc_logistic_warm)."""
    params = fit_logistic(pred, mos) if logistic_start == "full_sample" else None
    if params is None:
        return plcc_logistic
    return functools.partial(plcc_logistic_warm, start=tuple(map(float, params)))


def plcc_logistic_warm(pred: np.ndarray, mos: np.ndarray, start: tuple) -> float:
    """plcc_logistic with the fit started from `start`; where that fit fails (None, or a curve constant
    over these predictions: a step between two of them, PLCC undefined) the fit from the data's own
    start (plcc_logistic's default) instead. A warm start can end in such a step on ill-posed data where
    the data's own start does not (random predictions: 20 of 200 resamples of 300 items, measured)."""
    value = plcc_logistic(pred, mos, start)
    return plcc_logistic(pred, mos) if np.isnan(value) and logistic_undefined(pred, mos) is None else value


SCORE_FUNCTIONS = {"srcc": srcc, "plcc": plcc, "krcc": krcc, "mse": mse, "plcc_logistic": plcc_logistic}

# Reported per attribute as `srcc@<key>`: scale-free, so an attribute's scale need not match the total's.
ATTRIBUTE_METRICS = ("srcc", "plcc")


RESAMPLE_BLOCK = 2_000_000  # index draws held at once (rows x items): about 16 MB per array, whatever n is


def index_blocks(n: int, resamples: int, seed: int):
    """The seeded resample indices, a block of rows at a time: the same stream as one
    `rng.integers(0, n, size=(resamples, n))` call (numpy draws them in order), without holding it all."""
    rng = np.random.default_rng(seed)
    rows = max(1, RESAMPLE_BLOCK // n)
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n))


def percentile_interval(values: np.ndarray, resamples: int, level: float) -> list[float] | None:
    """The central `level` percentile interval of the finite resampled values (the metrics' CIs and compare's
    differences); None when fewer than half the resamples are finite."""
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
    return None if values is None else percentile_interval(values, resamples, level)


def resample_values(fn, arrays: list[np.ndarray], resamples: int, seed: int) -> np.ndarray | None:
    """fn on each of the seeded resamples of the items (rows of every array), or None below 2 items."""
    n = len(arrays[0])
    if n < 2 or resamples <= 0:
        return None
    return np.array(
        [fn(*(a[idx] for a in arrays)) for block in index_blocks(n, resamples, seed) for idx in block],
        dtype=np.float64,
    )


# ---- The score metrics over many resamples at once ------------------------------------------------
# A resample is the original items, item i taken counts[i] times. Every score metric is a function of
# those counts over data sorted once: ranks of a resample come from cumulative counts along the fixed
# sort order (no sorting per resample), moments are counts @ values, Kendall's discordant pairs are
# counted by scipy's own routine on the resample laid out in the fixed order. The values equal the plain
# per-resample computation up to floating-point rounding (KRCC exactly).
#
# PLCC after the logistic fit is refitted per resample with scipy's curve_fit: on small sets the plain
# way (plcc_logistic), so its interval is the plain one bit for bit; on large ones on each resample's
# distinct items (below). On a large set those refits run in worker processes, one per core, while this
# process computes the other metrics (refit_workers). Where each refit starts is a protocol choice (bootstrap.logistic_start, resample_logistic): from the resample's own data (the
# default), or from the full-sample fit, which needs fewer function evaluations on a large well-posed
# set (AVA-shaped: 18 per fit instead of 42 at 200,000 items; at 20,000, 68 instead of 86 on average,
# the long walks along the optimum's flat ridge staying long) and gives the same intervals there up to
# the fit's tolerance, but reaches other optima on ill-posed data (random predictions) and moves their
# intervals (tiny-art-score, random model: lower bound 0.136 -> 0.018).
# On resamples of at least WEIGHTED_REFIT_ITEMS items the refit runs on the resample's distinct items
# (about 63% of n) with weights = counts (curve_fit's sigma = 1/sqrt(counts)): the same objective, start
# and MINPACK steps (J'J, J'r, residual and column norms, finite-difference steps are the expanded
# sample's), so the same fit up to rounding, in about two thirds of the CPU (per-fit profile at 20,000
# items, one BLAS thread: MINPACK's own per-iteration work on the n rows about 45%, the logistic's
# evaluations about 50%, both linear in the rows). Rounding differs, so on a flat optimum the solver can
# stop elsewhere within its tolerance (AVA-shaped, 20,000 items: median 2e-13, at most 1e-7 per resample);
# on ill-posed data (random predictions) the plain fit itself moves as much when only the order of the
# resample's items changes (tests/test_metrics.py). Smaller sets, the committed tiny runs among them, refit
# the plain way, bit for bit.
# Tried and dropped: an analytic Jacobian (curve_fit's jac=): 9 function evaluations per fit instead of
# 41 but the same CPU (20.5 against 19.3 ms per distinct-items fit at 20,000 items; the Jacobian's four
# columns cost what the finite differences do), and it moves values as much as the weighting does.
# MINPACK's own algorithm (same start, forward differences, trust region, lmpar, tests)
# run on many resamples at once as numpy array operations is no faster than scipy's C (1.7 s against
# 1.6 s for 20 resamples of 20,000 items: each iteration's work is linear in n either way, and the
# same path needs the same work), and its rounding, different from MINPACK's, makes the long paths on
# a ridge or on random data end elsewhere (PLCC differences up to 2e-3 on 60 random items).


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """rows x n: how many times each item is in each resample."""
    rows = idx.shape[0]
    return (
        np.bincount((idx + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n)
        .reshape(rows, n)
        .astype(np.float64)
    )


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
            self._sorted["pair"] = (
                order,
                xd,
                yd,
                np.flatnonzero(np.r_[True, (xd[1:] != xd[:-1]) | (yd[1:] != yd[:-1])]),
            )
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


PARALLEL_WORK = 4_000_000  # items x resamples of per-resample refits above which they go to worker processes


def refit_workers(n: int, resamples: int) -> int:
    """Worker processes for the per-resample refits: one per core this process may use (at most 8),
    and none (refit here) for work too small to repay starting them (about a second each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, 8) if cores >= 2 and n * resamples >= PARALLEL_WORK else 0


_WORKER_DATA: dict = {}
ONE_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _worker_init(pred: np.ndarray, mos: np.ndarray) -> None:
    _WORKER_DATA.update(pred=pred, mos=mos)


def _worker_rows(fn, weighted, idx: np.ndarray) -> list[float]:
    return refit_rows(fn, weighted, _WORKER_DATA["pred"], _WORKER_DATA["mos"], idx)


WEIGHTED_REFIT_ITEMS = 1000  # resamples of at least this many items are refitted on their distinct items


def weighted_refit(fn):
    """The distinct-items version of resample_logistic's functions (plcc_logistic, or plcc_logistic_warm
    with its start), called as f(pred, mos, counts); None for any other function."""
    if fn is plcc_logistic:
        return plcc_logistic_weighted
    if isinstance(fn, functools.partial) and fn.func is plcc_logistic_warm and set(fn.keywords) == {"start"}:
        return functools.partial(plcc_logistic_weighted_warm, **fn.keywords)
    return None


def refit_rows(fn, weighted, pred: np.ndarray, mos: np.ndarray, idx: np.ndarray) -> list[float]:
    """fn(pred[i], mos[i]) for each resample row i; with `weighted` (weighted_refit(fn)), the same
    value computed on each resample's distinct items weighted by how many times each was drawn
    (a resample of n items holds about 63% of them: a third less work per refit).

    After each refit the collector's young generations are swept: scipy's curve_fit leaves reference
    cycles (its wrapped-function and memoizer closures) holding the resample's arrays, which the
    collector otherwise frees only when it gets round to them (a refit worker at 200,000 items grew
    to about 500 MB whole-process RSS)."""
    out = []
    for i in idx:
        if weighted is None:
            out.append(fn(pred[i], mos[i]))
        else:
            counts = np.bincount(i, minlength=len(pred))
            taken = np.flatnonzero(counts)
            out.append(weighted(pred[taken], mos[taken], counts[taken]) if len(taken) > 4 else fn(pred[i], mos[i]))
        gc.collect(1)
    return out


def _picklable(obj) -> bool:
    import pickle

    try:
        pickle.dumps(obj)
    except (pickle.PicklingError, TypeError, AttributeError):  # a lambda, a closure: refit in this process
        return False
    return True


def _hide_main() -> dict:
    """Keep spawned workers from importing the main script (multiprocessing runs it again in each child
    under the name __mp_main__: a user's script without an `if __name__ == "__main__"` guard would run
    again, and any script's imports, torch's included, would load again): the workers need only this
    module. Undone by _restore_main once they have started."""
    main = sys.modules.get("__main__")
    hidden = {}
    for attr in ("__spec__", "__file__"):
        if main is not None and getattr(main, attr, None) is not None:
            hidden[attr] = getattr(main, attr)
            setattr(main, attr, None)
    return hidden


def _restore_main(hidden: dict) -> None:
    main = sys.modules.get("__main__")
    for attr, value in hidden.items():
        setattr(main, attr, value)


class _Refits:
    """fn(pred[i], mos[i]) for each resample row i, in worker processes when there are any (the same
    calls on the same arrays, so the same numbers), a bounded number of rows in flight at a time."""

    def __init__(self, pred: np.ndarray, mos: np.ndarray, workers: int):
        self.pred, self.mos, self.pool, self.workers, self.in_flight = pred, mos, None, workers, []
        if workers:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            saved = {key: os.environ.get(key) for key in ONE_THREAD_ENV}
            os.environ.update(dict.fromkeys(ONE_THREAD_ENV, "1"))
            hidden = _hide_main()
            try:  # spawn: a fresh interpreter, safe beside threads (torch's) that fork is not
                self.pool = ProcessPoolExecutor(
                    workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_init,
                    initargs=(pred, mos),
                )
                for started in [self.pool.submit(time.sleep, 0.2) for _ in range(workers)]:  # all start now, with the
                    started.result()  # environment above: one BLAS thread each (idle OpenBLAS threads spin on a core)
            except (OSError, AssertionError, ValueError, RuntimeError):  # no processes here (a sandbox, a daemon)
                self.close()
                self.pool = None
            finally:
                _restore_main(hidden)
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value

    def submit(self, fn, idx: np.ndarray, weighted=None) -> list:
        """Parts of the answer for these rows, in order: lists of values or futures of them (refit_rows)."""
        if self.pool is None:
            return [refit_rows(fn, weighted, self.pred, self.mos, idx)]
        parts = []
        for chunk in np.array_split(idx.astype(np.int32 if len(self.pred) < 2**31 else np.int64), self.workers):
            if len(chunk):
                parts.append(self.pool.submit(_worker_rows, fn, weighted, chunk))
        self.in_flight.extend(parts)
        while len(self.in_flight) > 3 * self.workers:  # bound the index rows held in the queue
            self.in_flight.pop(0).result()
        return parts

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def bootstrap_cis(
    functions: dict,
    pred: np.ndarray,
    mos: np.ndarray,
    resamples: int,
    seed: int,
    level: float = 0.95,
    extra: dict | None = None,
    workers: int | None = None,
) -> dict:
    """Percentile intervals of several metrics of (pred, mos), all over the same seeded resamples as
    `bootstrap_ci` draws (the values of `bootstrap_values`)."""
    values = bootstrap_values(functions, pred, mos, resamples, seed, extra, workers)
    return {name: None if v is None else percentile_interval(v, resamples, level) for name, v in values.items()}


def bootstrap_values(
    functions: dict,
    pred: np.ndarray,
    mos: np.ndarray,
    resamples: int,
    seed: int,
    extra: dict | None = None,
    workers: int | None = None,
    weighted: bool | None = None,
) -> dict:
    """Each metric on each of the seeded resamples `bootstrap_ci` draws (name -> array, one value per
    resample, NaN where undefined; None below 2 items), one block of resamples at a time (memory stays
    bounded at any n). `functions`: name -> fn(pred, mos); `extra`: name -> (fn, arrays) for metrics of
    other per-item arrays (EMD over distributions). Metrics without a many-resamples version (plcc_logistic)
    are called per resample, in `workers` processes (default refit_workers) while this one does the rest;
    plcc_logistic's refits on each resample's distinct items, weighted by their counts (refit_rows), when
    `weighted` (default: at least WEIGHTED_REFIT_ITEMS items): the same fits up to the solver's tolerance
    (README, Speed), not bit for bit."""
    n = len(pred)
    names = list(functions) + list(extra or {})
    if n < 2 or resamples <= 0:
        return {name: None for name in names}
    pred, mos = np.asarray(pred, dtype=np.float64), np.asarray(mos, dtype=np.float64)
    batch = _Batch(pred, mos)
    fast = {name: batch_function(fn, batch) for name, fn in functions.items()}
    values = {name: [] for name in names}
    per_item = {name: emd_per_item(*arrays) for name, (fn, arrays) in (extra or {}).items() if fn is emd}
    slow = [fn for name, fn in functions.items() if fast[name] is None]
    if weighted is None:
        weighted = n >= WEIGHTED_REFIT_ITEMS
    counted = {name: weighted_refit(fn) if weighted else None for name, fn in functions.items()}
    if slow and (not _picklable(slow) or any(getattr(fn, "__module__", None) == "__main__" for fn in slow)):
        workers = 0  # the workers could not unpickle it (they do not import the main script)
    refits = _Refits(pred, mos, (refit_workers(n, resamples) if workers is None else workers) if slow else 0)
    limits = contextlib.nullcontext()
    if refits.pool is not None:  # the workers have the cores: this process's idle BLAS threads would spin on them
        with contextlib.suppress(ImportError):  # threadpoolctl is optional
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(1, "blas")
    with limits:
        try:
            for idx in index_blocks(n, resamples, seed):
                for name, fn in functions.items():  # the refits first: workers fit while this process goes on
                    if fast[name] is None:
                        values[name].extend(refits.submit(fn, idx, counted[name]))
                counts = _counts(idx, n)
                for name, fn in functions.items():
                    if fast[name] is not None:
                        values[name].append(fast[name](counts, idx))
                for name, (fn, arrays) in (extra or {}).items():
                    if name in per_item:
                        values[name].append(counts @ per_item[name] / n)
                    else:
                        values[name].append([fn(*(a[i] for a in arrays)) for i in idx])
            values = {
                name: [v if isinstance(v, (list, np.ndarray)) else v.result() for v in parts]
                for name, parts in values.items()
            }
        finally:
            refits.close()
    return {name: np.concatenate([np.asarray(v, dtype=np.float64) for v in values[name]]) for name in names}
