"""ArtiMuse's "token-as-score" readout: a 0..100 score read from 101 score tokens.

The prompt tells the model to answer with two letters standing for a score; the readout is the
same as mllm_readout's with 101 "level words" weighted 0..100 and no answer prefix (the tokens are
read right after the assistant turn opens):

    p     = softmax over the 101 score tokens' logits at the answer position
    E     = Σ n · p_n,  n = 0..100
    score = lo + E / 100 · (hi − lo)                      onto request.score_range = (lo, hi)

Token mapping (ArtiMuse's aes_tokens; "b" is never a first letter), option `level_words`, index =
score:
     0..25  → aa, ab, …, az
    26..50  → ca, cb, …, cy
    51..75  → da, db, …, dy
    76..100 → ea, eb, …, ey

Where a tokenizer writes some score tokens as two pieces (SmolLM2: "aa" is "a", "a"), each token's
logit is replaced by its whole answer's log-likelihood, as mllm_readout explains.

Images get ArtiMuse's plain 448×448 bicubic resize (option `resize`), no padding. The default prompt
is ArtiMuse's released scoring question word for word, whitespace included, because a trained
checkpoint read exactly that text; it spells out a few tokens per range and elides the rest. Pass
`prompt` with `level_words` when using another mapping.
"""

from __future__ import annotations

from typing import ClassVar

from aesbench.adapter import register
from aesbench.baselines.mllm_readout import MllmReadout

RANGES = (("a", 0), ("c", 26), ("d", 51), ("e", 76))  # first letter, first score of its range


def score_token(n: int) -> str:
    """ArtiMuse's two-letter token for score n in 0..100."""
    first, start = next((letter, s) for letter, s in reversed(RANGES) if n >= s)
    return first + chr(ord("a") + n - start)


SCORE_TOKENS = tuple(score_token(n) for n in range(101))

ARTIMUSE_PROMPT = (
    "\n        Rate the aesthetics score of the image in 0-100. \n"
    "        In the output format, numbers are replaced by 2 corresponding letters, \n"
    "        and the mapping relationship is: \n"
    "        score 0 to 25: 0-aa, 1-ab, 2-ac, 3-ad, ... , 25-az,\n"
    "        score 26 to 50: 26-ca, 27-cb, 28-cc, 29-cd, ..., 50-cy,\n"
    "        score 51 to 75: 51-da, 52-db, 53-dc, 54-dd, ..., 75-dy,\n"
    "        score 76 to 100: 76-ea, 77-eb, 78-ec, 79-ed, ..., 100-ey.\n"
    "\n"
    "        The answer only outputs 2 corresponding letters.\n"
    "        "
)


@register("artimuse-readout")
class ArtiMuseReadout(MllmReadout):
    """ArtiMuse's token-as-score readout: expectation over 101 two-letter score tokens, 448 px resize."""

    preset = dict(
        MllmReadout.preset,
        prompt=ARTIMUSE_PROMPT,
        answer_prefix="",
        level_words=SCORE_TOKENS,
        level_weights=tuple(float(n) for n in range(101)),
        pad_square=False,
        resize=448,
    )
    original: ClassVar[dict] = {
        "dtype": "bfloat16",
        "readout": "bfloat16",
    }  # modeling_artimuse.py: bf16 model, softmax and expectation
