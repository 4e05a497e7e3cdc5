"""ArtQuant against its public code (Henglin-Liu/ArtQuant): the soft-label fit of
preprocess/preprocess.ipynb, the full-vocabulary KL and the score-sentence LM loss of
src/model/modeling_mplug_owl2.py, the training prompts and answers. Each is checked against a
hand computation written from the original's formulas."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import norm

from aesbench.errors import AesbenchError
from aesbench.models.readout import ARTQUANT_WEIGHTS, LEVEL_WORDS, LevelReadout, fit_soft_label, full_vocab_kl

ANCHORS = [10.0, 7.5, 5, 3.5, 1.0]  # the notebook's pdf_value


def notebook_label(score: float) -> np.ndarray:
    """preprocess.ipynb's get_mu_sigma and get_score, line for line (disp off: it only prints)."""
    pdf_value = ANCHORS

    def objective(params):
        (
            mu,
            sigma,
        ) = params
        level_prob = norm.pdf(pdf_value, loc=mu, scale=sigma)
        level_prob = level_prob / level_prob.sum()
        prob_discrete = np.inner(level_prob, np.array(pdf_value))
        return abs(prob_discrete - score)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = minimize(objective, [score, 1], bounds=[(-10, 10), (0.001, 1000)])
    mu_optimal, sigma_optimal = result.x
    level_prob = norm.pdf(pdf_value, loc=mu_optimal, scale=sigma_optimal)
    level_prob = level_prob.clip(0, 1)
    return level_prob / level_prob.sum()


# ---------------------------------------------------------------------------------------------
# Soft labels


@pytest.mark.parametrize("score", [1, 10, 5.5, 1.0001, 2.0, 3.5, 4.2, 5.0, 6.3, 7.5, 8.8, 9.9, 0.5, 10.5])
def test_soft_label_is_the_notebooks_fit(score):
    assert ARTQUANT_WEIGHTS == tuple(ANCHORS)
    got = fit_soft_label(score)
    assert got.dtype == np.float64 and got.shape == (5,)
    np.testing.assert_array_equal(got, notebook_label(score))  # same call, same numbers, bit for bit


@pytest.mark.parametrize("score", [1, 1.3, 2.0, 3.5, 4.2, 5.0, 5.5, 6.3, 7.5, 8.8, 9.9, 10])
def test_soft_label_properties(score):
    p = fit_soft_label(score)
    assert (p >= 0).all() and abs(p.sum() - 1) < 1e-12
    assert abs(p @ np.array(ANCHORS) - score) < 1e-6  # its readout is the score (to the optimizer's tolerance)


def test_soft_label_ends_and_out_of_range():
    np.testing.assert_allclose(fit_soft_label(1), [0, 0, 0, 0, 1], atol=1e-9)  # all on "bad"
    np.testing.assert_allclose(fit_soft_label(10), [1, 0, 0, 0, 0], atol=1e-9)  # all on "excellent"
    np.testing.assert_allclose(fit_soft_label(0.5), [0, 0, 0, 0, 1], atol=1e-6)  # below the lowest anchor: the end
    np.testing.assert_allclose(fit_soft_label(10.5), [1, 0, 0, 0, 0], atol=1e-6)
    with pytest.raises(AesbenchError):
        fit_soft_label(float("nan"))


def test_soft_label_fits_the_width_not_a_fixed_one():
    """Both μ and σ are fitted: 5.5 spreads over good/fair/poor, 10 collapses onto one anchor; a
    Gaussian of fixed width with only its mean solved (the old label) gives other numbers."""
    mid, top = fit_soft_label(5.5), fit_soft_label(10)
    assert 0.2 < mid[1] < 0.3 and 0.6 < mid[2] < 0.7 and 0.05 < mid[3] < 0.15
    assert top[0] > 1 - 1e-9
    fixed = LevelReadout("q", "a", LEVEL_WORDS, ARTQUANT_WEIGHTS).soft_label(5.5, (1, 10))
    assert np.abs(fixed - mid).max() > 0.05


def test_soft_label_clips_densities_above_one():
    """The notebook clips pdf values to [0, 1] before normalising. At 10 the fitted σ (about 0.37)
    puts a density above 1 on the top anchor, so the clip changes the (tiny) other entries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mu, sigma = minimize(
            lambda x: abs((norm.pdf(ANCHORS, x[0], x[1]) / norm.pdf(ANCHORS, x[0], x[1]).sum()) @ ANCHORS - 10),
            [10, 1],
            bounds=[(-10, 10), (0.001, 1000)],
        ).x
    unclipped = norm.pdf(ANCHORS, loc=mu, scale=sigma)
    assert sigma < 0.4 and unclipped.max() > 1  # the clip is live at the top end
    p = fit_soft_label(10)
    assert p[1] > 0
    np.testing.assert_allclose(p[1:], unclipped[1:] / unclipped.clip(0, 1).sum(), rtol=1e-12)
    assert not np.allclose(p[1:], unclipped[1:] / unclipped.sum(), rtol=1e-3, atol=0)


# ---------------------------------------------------------------------------------------------
# The KL term


def original_softkl(torch, logits, level_ids, level_probs):
    """modeling_mplug_owl2.py softkl_loss, from `preds = torch.softmax(...)` to `F.kl_div`."""
    import torch.nn.functional as F

    preds = torch.softmax(logits, dim=1)  # [B, V]
    target = torch.zeros_like(preds)  # [B, V]
    target[:, level_ids] = level_probs
    target = target.detach()
    pred_log = torch.log(preds)
    return F.kl_div(pred_log, target, reduction="batchmean")


def test_full_vocab_kl_against_hand_computation():
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    B, V = 4, 60
    logits = torch.randn(B, V, generator=gen, dtype=torch.float64) * 3
    ids = [17, 3, 44, 8, 59]
    labels = np.stack([fit_soft_label(s) for s in (1.0, 4.2, 7.5, 9.9)])
    got = full_vocab_kl(logits, ids, labels)
    assert got.dim() == 0
    # by hand: Σ_b Σ_i p_bi (log p_bi − log q_b,id_i) / B, q the softmax over all V logits, 0·log 0 = 0
    q = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True)
    hand = 0.0
    for b in range(B):
        for i, token in enumerate(ids):
            p = labels[b, i]
            if p > 0:
                hand += p * (np.log(p) - np.log(q[b, token]))
    hand /= B
    assert abs(got.item() - hand) < 1e-10
    assert abs(got.item() - original_softkl(torch, logits, ids, torch.tensor(labels)).item()) < 1e-10


def test_full_vocab_kl_is_not_a_five_word_kl():
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 40, generator=gen, dtype=torch.float64) * 2
    ids = [5, 1, 30, 12, 7]
    labels = torch.tensor(np.stack([fit_soft_label(s) for s in (2.0, 5.5, 8.8)]))
    full = full_vocab_kl(logits, ids, labels)
    log_q5 = logits[:, ids].log_softmax(-1)  # a softmax over the five words only
    five = (labels * (labels.clamp_min(1e-300).log() - log_q5)).sum(1).mean()
    assert full.item() > five.item() + 0.5
    mass = logits.softmax(-1)[:, ids].sum(1)  # the levels' share of the full vocabulary
    assert abs(full.item() - (five.item() - mass.log().mean().item())) < 1e-10


def test_full_vocab_kl_gradient_pushes_every_other_token_down():
    """d KL / d logits = (q − target) / B: every non-level token's logit gets a positive gradient."""
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(2)
    logits = (torch.randn(2, 30, generator=gen, dtype=torch.float64)).requires_grad_(True)
    ids = [0, 9, 18, 27, 4]
    labels = torch.tensor(np.stack([fit_soft_label(3.0), fit_soft_label(6.0)]))
    full_vocab_kl(logits, ids, labels).backward()
    target = torch.zeros(2, 30, dtype=torch.float64)
    target[:, ids] = labels
    expected = (logits.detach().softmax(-1) - target) / 2
    assert torch.allclose(logits.grad, expected, atol=1e-12)
    others = [j for j in range(30) if j not in ids]
    assert (logits.grad[:, others] > 0).all()


def test_full_vocab_kl_refuses_bad_shapes():
    torch = pytest.importorskip("torch")
    logits = torch.zeros(2, 10)
    with pytest.raises(AesbenchError):
        full_vocab_kl(logits, [1, 1, 2, 3, 4], np.full((2, 5), 0.2))
    with pytest.raises(AesbenchError):
        full_vocab_kl(logits, [1, 2, 3, 4, 5], np.full((3, 5), 0.2))
    with pytest.raises(AesbenchError):
        full_vocab_kl(torch.zeros(2, 3, 10), [1, 2, 3, 4, 5], np.full((2, 5), 0.2))


# ---------------------------------------------------------------------------------------------
# The score sentence's LM loss: the level token's prediction removed, everything else kept


def original_score_lm(torch, logits, labels, idx_level_label):
    """modeling_mplug_owl2.py forward_single with use_softkl_loss: del_elements on labels and logits,
    then the usual shifted CrossEntropyLoss (mean over the tokens that are not -100)."""

    def del_elements(source, idx):
        mask = torch.ones([*source.shape[:2]], dtype=torch.bool)
        for idx_1, idx_del in enumerate(idx):
            mask[idx_1, idx_del] = False
        if len(source.shape) == 2:
            return source[mask].view(source.size(0), source.size(1) - 1)
        return source[mask].view(source.size(0), source.size(1) - 1, source.size(2))

    idx_level_logit = idx_level_label - 1  # labels already span the image tokens: num_vision_tokens = 0
    labels_del = del_elements(labels, idx_level_label)
    logits_del = del_elements(logits, idx_level_logit)
    shift_logits = logits_del[..., :-1, :].contiguous().view(-1, logits.shape[-1])
    shift_labels = labels_del[..., 1:].contiguous().view(-1)
    return torch.nn.CrossEntropyLoss()(shift_logits, shift_labels)


def test_score_lm_is_the_answer_with_only_the_level_label_ignored():
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(3)
    B, N, V = 3, 14, 25
    logits = torch.randn(B, N, V, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, V, (B, N), generator=gen)
    answer_start, level = torch.tensor([5, 4, 6]), torch.tensor([10, 9, 11])
    labels[0, 12:] = -100  # right padding
    for b in range(B):
        labels[b, : answer_start[b]] = -100  # the prompt
    ours = labels.clone()
    ours[torch.arange(B), level] = -100  # the same labels with only the level word ignored
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ours[:, 1:].reshape(-1), ignore_index=-100)
    assert abs(plain.item() - original_score_lm(torch, logits, labels, level).item()) < 1e-12
    # the test can tell: keeping the level word in, or dropping the period after it, changes the loss
    kept = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert abs(kept.item() - plain.item()) > 1e-6
    no_period = ours.clone()
    no_period[torch.arange(B), level + 1] = -100
    dropped = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, V), no_period[:, 1:].reshape(-1), ignore_index=-100
    )
    assert abs(dropped.item() - plain.item()) > 1e-6


# ---------------------------------------------------------------------------------------------
# Prompts, answers and the training text


def test_prompts_are_the_originals():
    pytest.importorskip("torch")
    from aesbench.models.artquant import ASK_PROMPTS, SCORE_PREFIX, SCORE_PROMPT, SCORE_PROMPTS

    # sha256 of preprocess.ipynb's ask_prompts joined by NUL, computed from the notebook itself
    digest = hashlib.sha256("\x00".join(ASK_PROMPTS).encode()).hexdigest()
    assert digest == "6e1d12e8c2aef48c62d4f62ba7c8ddf0cc810b349df9144f380dab192914274a"
    assert len(ASK_PROMPTS) == 10 and len(set(ASK_PROMPTS)) == 10
    assert all(p.endswith("\n<|image|>") for p in ASK_PROMPTS)
    assert SCORE_PROMPTS[1] == SCORE_PROMPT and SCORE_PREFIX == "The quality of the painting is"
    assert all("<|image|>" not in p and p == p.strip() for p in SCORE_PROMPTS)


@pytest.mark.parametrize(
    "score,word",
    [
        (0.0, "bad"),
        (1.0, "bad"),
        (1.01, "poor"),
        (3.5, "poor"),
        (3.51, "fair"),
        (5.0, "fair"),
        (5.01, "good"),
        (7.5, "good"),
        (7.51, "excellent"),
        (10.0, "excellent"),
    ],
)
def test_level_word_is_the_notebooks_get_level(score, word):
    pytest.importorskip("torch")
    from aesbench.models.artquant import level_word

    assert level_word(score) == word


def test_answer_and_training_text():
    pytest.importorskip("torch")
    from aesbench.models.artquant import ASK_PROMPTS, original_scale, original_training_text, score_answer

    assert score_answer("good") == "The quality of the painting is good."
    assert original_training_text(ASK_PROMPTS[1], score_answer("good")) == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: <|image|>\nHow would you rate the quality "
        "of this painting? ASSISTANT: The quality of the painting is good.</s>"
    )
    assert original_scale(73.0, (0, 100)) == pytest.approx(7.3)
    assert original_scale(6.2, (0, 10)) == 6.2 and original_scale(6.2, (1, 10)) == 6.2
    with pytest.raises(AesbenchError):
        original_scale(3.0, (1, 5))
