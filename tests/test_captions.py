"""Caption metrics equal pycocoevalcap's own pipeline on the same input, to floating-point precision."""
import json

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from aesbench.captions import CaptionScorer, bleu_counts, bleu_from_counts
from conftest import REPO, requires_java

pytestmark = requires_java


@pytest.fixture(scope="module")
def corpus():
    """References from the tiny AVA-Captions file; candidates are other images' references and edge cases."""
    data = json.loads((REPO / "tasks/data/tiny-ava/ava_captions.json").read_text())
    refs = {e["filename"][:-4]: [s["raw"] for s in e["sentences"]] for e in data["images"] if e["split"] == "test"}
    ids = sorted(refs)
    cands = {k: refs[ids[(i + 1) % len(ids)]][i % 5] for i, k in enumerate(ids)}
    cands[ids[0]] = ""  # an empty comment scores, it is not dropped
    cands[ids[1]] = refs[ids[1]][0]  # an exact match
    cands[ids[2]] = "Great photo!!! Well... the colours -- vivid; the focus (sharp)."
    return refs, cands


@pytest.fixture(scope="module")
def scored(corpus):
    scorer = CaptionScorer()
    refs, cands = corpus
    yield scorer, scorer.score(refs, cands)
    scorer.close()


def reference_pipeline(refs, cands):
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": r} for r in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": c}] for k, c in cands.items()})
    out = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"bleu{i + 1}": b for i, b in enumerate(bleu)})
    out["meteor"], _ = Meteor().compute_score(gts, res)
    out["rouge_l"], _ = Rouge().compute_score(gts, res)
    out["cider"], _ = Cider().compute_score(gts, res)
    return out, gts, res


def test_metrics_equal_pycocoevalcap(corpus, scored):
    _, result = scored
    expected, _, _ = reference_pipeline(*corpus)
    for name, value in expected.items():
        assert result["metrics"][name] == pytest.approx(float(value), rel=1e-12, abs=1e-15), name
    assert 0 < result["metrics"]["cider"] and 0 < result["metrics"]["meteor"] < 1


def test_bleu_from_counts_equals_bleu_scorer_on_resamples(corpus):
    refs, cands = corpus
    _, gts, res = reference_pipeline(refs, cands)
    ids = list(gts)
    scorer = BleuScorer(n=4)
    for k in ids:
        scorer += (res[k][0], gts[k])
    scorer.compute_score(option="closest", verbose=0)
    counts = bleu_counts(scorer)
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = rng.integers(0, len(ids), len(ids))
        resampled = BleuScorer(n=4)
        for i in idx:
            resampled += (res[ids[i]][0], gts[ids[i]])
        expected, _ = resampled.compute_score(option="closest", verbose=0)
        assert bleu_from_counts(counts, idx) == pytest.approx(expected, rel=1e-12)


def test_one_meteor_jvm_serves_many_evaluations(scored, corpus):
    scorer, result = scored
    pid = scorer.meteor.meteor_p.pid
    again = scorer.score(*corpus)
    assert scorer.meteor.meteor_p.pid == pid
    assert again["metrics"] == result["metrics"]


def test_bootstrap_intervals_bracket_the_corpus_scores(scored):
    scorer, result = scored
    ci = scorer.bootstrap(result, resamples=50, seed=0)
    for name, (lo, hi) in ci.items():
        assert lo <= hi
        assert lo - 1e-9 <= result["metrics"][name] <= hi + 1e-9 or name.startswith("bleu"), name
