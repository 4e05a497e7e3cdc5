"""Score metrics equal scipy's; EMD, accuracy and the logistic fit against hand computations."""
import numpy as np
import pytest
from scipy import stats

from aesbench import metrics


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    mos = rng.uniform(2, 8, 300)
    pred = mos + rng.normal(0, 1.0, 300)
    pred[:20] = np.round(pred[:20])  # ties
    return pred, mos


def test_correlations_equal_scipy(data):
    pred, mos = data
    assert metrics.srcc(pred, mos) == stats.spearmanr(pred, mos).statistic
    assert metrics.plcc(pred, mos) == stats.pearsonr(pred, mos).statistic
    assert metrics.krcc(pred, mos) == stats.kendalltau(pred, mos).statistic


def test_constant_predictions_are_undefined(data):
    _, mos = data
    const = np.full_like(mos, 5.0)
    assert np.isnan(metrics.srcc(const, mos))
    assert np.isnan(metrics.plcc(const, mos))
    assert np.isnan(metrics.plcc_logistic(const, mos))


def test_acc_mse_by_hand():
    pred = np.array([4.9, 5.0, 6.0, 3.0])
    mos = np.array([5.1, 4.0, 7.0, 2.0])
    assert metrics.acc(pred, mos, 5.0) == 0.5  # 4.9 vs 5.1 and 5.0 vs 4.0 disagree
    assert metrics.mse(pred, mos) == pytest.approx(np.mean([0.04, 1.0, 1.0, 1.0]))


def test_emd_by_hand():
    p = np.zeros((1, 10)); p[0, 0] = 1.0
    t = np.zeros((1, 10)); t[0, 9] = 1.0
    # CDF difference is 1 on the first nine bins, 0 on the last: sqrt(9/10)
    assert metrics.emd(p, t) == pytest.approx(np.sqrt(0.9))
    assert metrics.emd(t, t) == 0.0


def test_logistic_fit_recovers_monotone_nonlinearity():
    x = np.linspace(-3, 3, 200)
    y = metrics.logistic4(x, 8.0, 2.0, 0.3, 0.3)
    assert metrics.plcc(x, y) < 0.95
    assert metrics.plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-6)


def test_bootstrap_is_seeded_and_brackets_the_estimate(data):
    pred, mos = data
    a = metrics.bootstrap_ci(metrics.srcc, [pred, mos], 300, seed=1)
    b = metrics.bootstrap_ci(metrics.srcc, [pred, mos], 300, seed=1)
    c = metrics.bootstrap_ci(metrics.srcc, [pred, mos], 300, seed=2)
    assert a == b and a != c
    assert a[0] < metrics.srcc(pred, mos) < a[1]
