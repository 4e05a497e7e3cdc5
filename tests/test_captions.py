"""Caption metrics equal pycocoevalcap's own pipeline on the same input, exactly: the corpus scores,
the per-item scores, BLEU's counts, ROUGE-L's LCS lengths, and BLEU and METEOR on bootstrap resamples."""

import json
import sys

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge, my_lcs
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from aesbench.captions import CaptionScorer, _lcs_length, bleu_counts, bleu_from_counts, cook
from aesbench.errors import AesbenchError
from conftest import REPO, requires_java

sys.path.append(str(REPO / "benchmarks"))
from corpora import caption_corpus  # noqa: E402

pytestmark = requires_java


@pytest.fixture(scope="module")
def corpus():
    """The tiny AVA-Captions references with other images' references and edge cases as candidates, and
    400 synthetic critiques (varied templates, exact copies, empty, punctuation only, |||, accents, newlines)."""
    data = json.loads((REPO / "tasks/data/tiny-ava/ava_captions.json").read_text())
    refs = {e["filename"][:-4]: [s["raw"] for s in e["sentences"]] for e in data["images"] if e["split"] == "test"}
    ids = sorted(refs)
    cands = {k: refs[ids[(i + 1) % len(ids)]][i % 5] for i, k in enumerate(ids)}
    cands[ids[0]] = ""  # an empty comment scores, it is not dropped
    cands[ids[1]] = refs[ids[1]][0]  # an exact match
    cands[ids[2]] = "Great photo!!! Well... the colours -- vivid; the focus (sharp)."
    synthetic_refs, synthetic_cands = caption_corpus(400, seed=1)
    refs.update({f"syn{k}": v for k, v in synthetic_refs.items()})
    cands.update({f"syn{k}": v for k, v in synthetic_cands.items()})
    return refs, cands


@pytest.fixture(scope="module")
def scored(corpus):
    scorer = CaptionScorer(workers=2)  # the statistics split over two JVMs, as on a machine with cores to spare
    refs, cands = corpus
    yield scorer, scorer.score(refs, cands)
    scorer.close()


@pytest.fixture(scope="module")
def reference(corpus):
    """pycocoevalcap's own pipeline: two tokenizer calls, then each scorer's compute_score."""
    refs, cands = corpus
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": r} for r in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": c}] for k, c in cands.items()})
    out, per_item = {}, {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"bleu{i + 1}": b for i, b in enumerate(bleu)})
    meteor = Meteor()
    out["meteor"], per_item["meteor"] = meteor.compute_score(gts, res)
    meteor.__del__()
    out["rouge_l"], per_item["rouge_l"] = Rouge().compute_score(gts, res)
    out["cider"], per_item["cider"] = Cider().compute_score(gts, res)
    return out, per_item, gts, res


def test_metrics_equal_pycocoevalcap(scored, reference):
    _, result = scored
    expected, expected_items, _, _ = reference
    for name, value in expected.items():
        assert result["metrics"][name] == float(value), name
    for name, values in expected_items.items():
        assert result["per_item"][name] == [float(v) for v in values], name
    assert 0 < result["metrics"]["cider"] and 0 < result["metrics"]["meteor"] < 1


def test_bleu_counts_and_resamples_equal_bleu_scorer(reference):
    """The per-item counts are BleuScorer's, and corpus BLEU over any resample is BleuScorer's on it."""
    _, _, gts, res = reference
    ids = list(gts)
    scorer = BleuScorer(n=4)
    for k in ids:
        scorer += (res[k][0], gts[k])
    counts = bleu_counts(cook(gts, res))
    assert counts["testlen"].tolist() == [c["testlen"] for c in scorer.ctest]
    assert counts["guess"].tolist() == [c["guess"] for c in scorer.ctest]
    assert counts["correct"].tolist() == [c["correct"] for c in scorer.ctest]
    assert counts["reflen"].tolist() == [
        scorer._single_reflen(c["reflen"], "closest", c["testlen"]) for c in scorer.ctest
    ]
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = rng.integers(0, len(ids), len(ids))
        resampled = BleuScorer(n=4)
        for i in idx:
            resampled += (res[ids[i]][0], gts[ids[i]])
        expected, _ = resampled.compute_score(option="closest", verbose=0)
        assert bleu_from_counts(counts, idx) == expected


def test_lcs_lengths_equal_rouges_own():
    rng = np.random.default_rng(2)
    words = ["a", "b", "c", "d", "", "the"]  # "" as split(" ") leaves it for an empty caption
    for _ in range(3000):
        a = [words[i] for i in rng.integers(0, 6, rng.integers(1, 30))]
        b = [words[i] for i in rng.integers(0, 6, rng.integers(1, 30))]
        assert _lcs_length(a, b) == my_lcs(b, a), (a, b)


def test_meteor_of_summed_statistics_equals_the_full_eval_line(scored):
    """A resample sent as one segment of summed counts gives the very double its full EVAL line gives."""
    scorer, result = scored
    stats = result["meteor_stats"]
    draws = np.random.default_rng(1).integers(0, len(stats), size=(6, len(stats)))
    draws[0] = np.arange(len(stats))  # the corpus itself
    full = [scorer.meteor_eval([stats[i] for i in idx])[0] for idx in draws]
    assert scorer.meteor_resampled(stats, draws) == full
    assert full[0] == result["metrics"]["meteor"] and len(set(full)) == len(full)


def test_one_meteor_jvm_serves_many_evaluations(scored, corpus):
    scorer, result = scored
    pid = scorer.meteor.meteor_p.pid
    assert len(scorer.meteors) == 1  # the extra worker JVMs end with the statistics
    scorer.workers = 1  # no new worker to wait for: this time all statistics come from the first JVM
    again = scorer.score(*corpus)
    assert scorer.meteor.meteor_p.pid == pid
    assert again["metrics"] == result["metrics"] and again["meteor_stats"] == result["meteor_stats"]


def test_bootstrap_intervals_bracket_the_corpus_scores(scored):
    scorer, result = scored
    ci = scorer.bootstrap(result, resamples=50, seed=0)
    assert set(ci) == set(result["metrics"])
    for name, (lo, hi) in ci.items():
        assert lo < hi, name
        assert lo - 1e-9 <= result["metrics"][name] <= hi + 1e-9 or name.startswith("bleu"), name
    assert scorer.bootstrap(result, resamples=50, seed=0) == ci  # seeded


def test_a_jvm_that_dies_is_one_clear_error(corpus):
    scorer = CaptionScorer()
    try:
        scorer.meteor.meteor_p.kill()
        with pytest.raises(AesbenchError, match="METEOR's JVM stopped") as e:
            scorer.meteor_eval(
                ["1.0 1.0 0.0 0.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 1.0 1.0"]
            )
        assert "\n" not in str(e.value)
    finally:
        scorer.close()
