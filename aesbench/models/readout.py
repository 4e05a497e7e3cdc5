"""The level readout the field scores with, and its training targets; shared by CALM, ArtQuant and
the MLLM baselines.

Readout (Q-Align): after a fixed answer prefix, the next-token logits of n level words are
softmaxed over those words only, p = softmax(l_1..l_n); E = Σ p_i w_i with the level weights w;
the score is E moved linearly from [min w, max w] onto the task's range (lo, hi).

Soft labels (ArtQuant): a MOS is first moved onto the weights' scale (t); the label is a Gaussian
over the level anchors w_i, p_i ∝ exp(-(w_i - μ)² / 2σ²), with μ solved so that Σ p_i w_i = t
exactly (brentq, to 1e-12): its readout is the MOS itself. σ is a fraction of the weights' span.

Words of several tokens (readout_plan, word_probs). Real tokenizers split "10" into "Ġ", "1", "0"
(byte-level BPE: SmolLM2, GPT-2) or "▁", "1", "0" (SentencePiece with split digits: Llama), and
word-level vocabularies may hold a word as two words. A word's probability is then its whole
answer's likelihood, the sum of its tokens' log-probs after the context (lm-evaluation-harness's
loglikelihood), and the words are softmaxed over those sums. Three rules make that exact:

  - prefix: when one word's tokens begin another's ("1" = Ġ 1 and "10" = Ġ 1 0), the shorter one's
    likelihood also counts every answer that goes on ("10" included), so it would always win. Each
    word is then scored with the text that ends the answer, `end` (".": the answer sentence is
    "<prefix> <word>."), so "Ġ 1 ." and "Ġ 1 0 ." are disjoint answers. The end is added only
    then: a set where no word's tokens begin another's is already a set of disjoint answers.
  - shared tokens: tokens every word begins with (the lone "Ġ") are one factor common to all the
    words' likelihoods, which the softmax cancels; they are read as part of the context.
  - fast path: when, past the shared tokens, every word is one distinct token, the readout is the
    softmax over those tokens' next-token logits, Q-Align's readout exactly (the same numbers as
    before), in one forward pass with no continuation rows.

Tokens come from tokenizing the whole text "context + ' ' + word (+ end)" against the context alone,
special tokens off (no BOS), so what is scored is what the tokenizer writes for the whole answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
            raise AesbenchError(
                f"a level readout needs two or more words, one weight each, not all equal (got {self.words}, {self.weights})"
            )

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
        mu = brentq(
            lambda m: probs(m) @ w - target, w.min() - reach, w.max() + reach, xtol=1e-12, rtol=1e-15, maxiter=500
        )
        return probs(mu)


def first_token_ids(tokenizer, text: str, words) -> list[int]:
    """The id of each word's first token where it would follow `text`.

    Each word's id is the first token past the prompt when `text + sep + word` is tokenized against
    `text` alone, special tokens off, so BOS is never taken and "▁good", "Ġgood" and "good"
    conventions all come out right; sep is " " unless the text ends in whitespace. Two words
    sharing their first token are refused: the readout could not tell them apart. readout_plan
    below reads any words, whatever their tokens; this stays for callers that need one token each.
    """
    sep = "" if not text or text[-1].isspace() else " "
    context = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = []
    for word in words:
        full = tokenizer(text + sep + word, add_special_tokens=False)["input_ids"]
        if len(full) <= len(context) or full[: len(context)] != context:
            raise AesbenchError(
                f"level word {word!r} merges with the end of the prompt when tokenized, so it has no token of its own there; change answer_prefix or level_words"
            )
        ids.append(full[len(context)])
    for i, token in enumerate(ids):
        if token in ids[:i]:
            other = words[ids.index(token)]
            raise AesbenchError(
                f"level words {other!r} and {words[i]!r} share their first token {tokenizer.convert_ids_to_tokens(token)!r}, so the readout cannot tell them apart; choose other level_words"
            )
    return ids


# ---------------------------------------------------------------------------------------------
# ArtQuant as its public code does it (Henglin-Liu/ArtQuant)


def fit_soft_label(
    score: float,
    anchors=ARTQUANT_WEIGHTS,
    mu_bounds: tuple[float, float] = (-10, 10),
    sigma_bounds: tuple[float, float] = (0.001, 1000),
) -> np.ndarray:
    """ArtQuant's soft level label for one score, as `preprocess/preprocess.ipynb` fits it.

    `score` is on the anchors' own scale, not mapped: the notebook passes APDD's score as read from
    ArtCLIP's train.csv (the 0–100 total divided by 10) against anchors 10, 7.5, 5, 3.5, 1. Both the
    mean and the width of a Gaussian are fitted: scipy.optimize.minimize of
    |Σ_i p_i a_i − score| with p = N.pdf(a; μ, σ) / Σ N.pdf(a; μ, σ), from [score, 1], bounds
    μ ∈ (−10, 10) and σ ∈ (0.001, 1000), default method (L-BFGS-B, as bounds are given). The label is
    N.pdf(a; μ*, σ*) clipped to [0, 1] and divided by its sum (the clip acts where σ* < 0.4 puts a
    density above 1 on an anchor). Returns float64 probabilities in the anchors' order.

    The fit can miss: scores outside [min a, max a] get the nearest end (0.5 → all mass on 1), and
    the optimizer's own tolerances leave |E − score| up to about 1e-8 inside the range.
    """
    from scipy.optimize import minimize
    from scipy.stats import norm

    pdf_value = [float(a) for a in anchors]
    if len(pdf_value) < 2 or not np.isfinite(score):
        raise AesbenchError(f"a soft label needs two or more anchors and a finite score (got {anchors}, {score})")

    def objective(params):
        mu, sigma = params
        level_prob = norm.pdf(pdf_value, loc=mu, scale=sigma)
        level_prob = level_prob / level_prob.sum()
        prob_discrete = np.inner(level_prob, np.array(pdf_value))
        return abs(prob_discrete - score)

    with np.errstate(invalid="ignore", divide="ignore"):  # the notebook's "invalid value in divide" while searching
        result = minimize(objective, [score, 1], bounds=[tuple(mu_bounds), tuple(sigma_bounds)])
    mu, sigma = result.x
    level_prob = norm.pdf(pdf_value, loc=mu, scale=sigma).clip(0, 1)
    if not np.isfinite(level_prob).all() or level_prob.sum() <= 0:
        raise AesbenchError(f"the soft-label fit for score {score} put no mass on any anchor (mu {mu}, sigma {sigma})")
    return level_prob / level_prob.sum()


def full_vocab_kl(logits, level_ids, soft_labels):
    """ArtQuant's KL term (`softkl_loss` in `src/model/modeling_mplug_owl2.py`).

    logits: [B, V], each row the LLM's output at the position that predicts the level word (the
    last token of the answer prefix). level_ids: the n level words' token ids, in the labels' order.
    soft_labels: [B, n], rows summing to 1 (fit_soft_label). The prediction is the softmax over the
    FULL vocabulary, the target is the soft label on the level ids and 0 elsewhere (detached), and
    the result is F.kl_div(log q, target, reduction="batchmean") = Σ_b Σ_i p_bi (log p_bi − log q_bi) / B.
    The original takes torch.log(torch.softmax(·)); log_softmax is the same up to rounding and stays
    finite where a probability would underflow to 0. Computed in the logits' dtype: pass float32.

    Unlike a KL against a softmax over the n words only, this also pulls the probability of every
    other token at that position to 0: full = n-word KL − mean_b log Σ_i q_bi.
    """
    import torch
    import torch.nn.functional as F

    ids = [int(i) for i in level_ids]
    if len(set(ids)) != len(ids):
        raise AesbenchError(f"level ids must be distinct (got {ids})")
    if logits.dim() != 2:
        raise AesbenchError(
            f"logits must be [batch, vocabulary] at the level position (got shape {tuple(logits.shape)})"
        )
    log_q = torch.log_softmax(logits, dim=-1)
    labels = torch.as_tensor(soft_labels, dtype=log_q.dtype, device=log_q.device)
    if labels.shape != (logits.shape[0], len(ids)):
        raise AesbenchError(f"soft labels must be [batch, {len(ids)}] (got shape {tuple(labels.shape)})")
    target = torch.zeros_like(log_q)
    target[:, ids] = labels
    return F.kl_div(log_q, target.detach(), reduction="batchmean")


@dataclass(frozen=True)
class ReadoutPlan:
    """How n answer words are read after a context (see the module docstring for the rules).

    shared: token ids every word's answer starts with, read as part of the context.
    continuations: each word's own token ids after context + shared (with `end`'s tokens if used).
    end: "" or the text appended to every word so that no word's tokens begin another's.
    """

    words: tuple[str, ...]
    shared: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]
    end: str = ""

    @property
    def single_token(self) -> bool:
        return all(len(c) == 1 for c in self.continuations)

    @property
    def ids(self) -> list[int] | None:
        """The words' next-token ids after context + shared on the fast path, else None."""
        return [c[0] for c in self.continuations] if self.single_token else None

    @property
    def suffixes(self) -> list[list[int]]:
        """The token ids a forward pass appends to the context: [shared] on the fast path, else
        shared + continuation for each word."""
        if self.single_token:
            return [list(self.shared)]
        return [list(self.shared) + list(c) for c in self.continuations]


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def readout_plan(tokenizer, text: str, words, end: str = ".") -> ReadoutPlan:
    """The tokens to read `words` with after `text`; a space separates them unless text ends in whitespace."""
    words = tuple(str(w) for w in words)
    sep = "" if not text or text[-1].isspace() else " "
    context = _encode(tokenizer, text)

    def answers(tail: str) -> list[tuple[int, ...]]:
        out = []
        for word in words:
            full = _encode(tokenizer, text + sep + word + tail)
            if len(full) <= len(context) or full[: len(context)] != context:
                raise AesbenchError(
                    f"level word {word!r} merges with the end of the prompt when tokenized, so it has no tokens of its own there; change answer_prefix or level_words"
                )
            out.append(tuple(full[len(context) :]))
        return out

    def clash(seqs):  # the first pair (i, j) where seqs[i] begins seqs[j] (or equals it), else None
        return next(
            (
                (i, j)
                for i, a in enumerate(seqs)
                for j, b in enumerate(seqs)
                if i != j and len(a) <= len(b) and b[: len(a)] == a
            ),
            None,
        )

    used_end, seqs = "", answers("")
    pair = clash(seqs)
    if pair and seqs[pair[0]] == seqs[pair[1]]:
        i, j = sorted(pair)
        tokens = tokenizer.convert_ids_to_tokens(list(seqs[i]))
        raise AesbenchError(
            f"level words {words[i]!r} and {words[j]!r} tokenize alike ({tokens}), so the readout cannot tell them apart; choose other level_words"
        )
    if pair and end:
        used_end, seqs = end, answers(end)
        pair = clash(seqs)
    if pair:
        i, j = pair
        raise AesbenchError(
            f"level word {words[i]!r} tokenizes as the start of {words[j]!r} even with the end {end!r} after each, so their likelihoods overlap; choose other level_words"
        )
    shared = 0
    while all(len(s) > shared + 1 and s[shared] == seqs[0][shared] for s in seqs):
        shared += 1
    return ReadoutPlan(words, tuple(seqs[0][:shared]), tuple(s[shared:] for s in seqs), used_end)


def _as_rows(plan: ReadoutPlan, logits):
    """Logits as [batch, len(plan.suffixes), positions, vocab]; a [batch, vocab] tensor stands for
    the next-token logits when the only suffix is empty."""
    widths = [len(s) for s in plan.suffixes]
    if logits.dim() == 2 and widths == [0]:
        logits = logits[:, None, None]
    if logits.dim() != 4 or logits.shape[1] != len(widths) or logits.shape[2] < 1 + max(widths):
        raise ValueError(
            f"readout logits must be [batch, {len(widths)} suffixes, at least {1 + max(widths)} positions, vocab]; got {tuple(logits.shape)}"
        )
    return logits


def word_log_likelihoods(plan: ReadoutPlan, logits):
    """log P(shared + continuation of each word | context): [batch, n words], differentiable.

    logits: [batch, len(plan.suffixes), 1 + max suffix length (or more), vocab], where [b, k, t] is
    the logits after context + plan.suffixes[k][:t] (position 0: after the last context token).
    """
    import torch

    logp = _as_rows(plan, logits).float().log_softmax(-1)
    rows = []
    for k, suffix in enumerate(plan.suffixes):
        steps = list(range(len(suffix)))  # the logits at step t predict suffix[t]
        rows.append(logp[:, k, steps, suffix].sum(-1) if suffix else logp.new_zeros(logp.shape[0]))
    if plan.single_token:  # one row: the shared tokens, then each word's one token
        return rows[0][:, None] + logp[:, 0, len(plan.shared), plan.ids]
    return torch.stack(rows, -1)


Run = Callable[[list[list[int]]], "object"]


def word_probs(plan: ReadoutPlan, run: Run, normalise: bool = True, dtype=None):
    """The words' probabilities [batch, n words] (float32, or `dtype`: the softmax computed in it, as
    original code run in float16 or bfloat16 computes it).

    run(suffixes) runs the model on context + each suffix (token ids; right-padding them is fine)
    and returns the logits word_log_likelihoods describes; on the fast path with nothing shared the
    one suffix is empty and run may return the plain next-token logits [batch, vocab].
    normalise=True: softmax over the words (the field's readout). False: each word's probability
    under the model, not renormalised (mllm_readout's softmax="vocab").
    """
    import torch

    dtype = dtype or torch.float32
    logits = _as_rows(plan, run(plan.suffixes))
    if plan.single_token and (normalise or not plan.shared):
        last = logits[:, 0, len(plan.shared)].to(dtype)
        return last[:, plan.ids].softmax(-1) if normalise else last.softmax(-1)[:, plan.ids]
    ll = word_log_likelihoods(plan, logits).to(dtype)
    return ll.softmax(-1) if normalise else ll.exp()


def causal_lm_run(model, contexts: list[list[int]]) -> Run:
    """A `run` for a plain causal LM: every context (token ids, one batch row each) extended by every
    suffix in one forward pass. Contexts are left-padded and suffixes right-padded, with position ids
    counted from each row's first real token (as `generate` does), so each row reads as if unpadded
    and the logits wanted are the last 1 + width positions of every row (logits_to_keep)."""
    import torch

    def run(suffixes):
        width, longest = max(len(s) for s in suffixes), max(len(c) for c in contexts)
        rows = [(c, s) for c in contexts for s in suffixes]
        ids = torch.zeros(len(rows), longest + width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (c, s) in enumerate(rows):
            start = longest - len(c)
            ids[i, start : longest + len(s)] = torch.tensor(list(c) + list(s), dtype=torch.long)
            mask[i, start : longest + len(s)] = 1
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        device = next(model.parameters()).device
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=1 + width,
        ).logits
        return logits.reshape(len(contexts), len(suffixes), 1 + width, -1)

    return run
