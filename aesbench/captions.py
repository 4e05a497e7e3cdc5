"""Caption metrics the COCO way, through pycocoevalcap itself: PTB tokenizer, BLEU-1..4, METEOR 1.5,
ROUGE-L and CIDEr-D (document frequencies from the evaluated references).

One CaptionScorer holds one METEOR JVM for the whole run, and the references and candidates are
tokenized in a single PTB tokenizer call, so Java starts twice per run, not once per metric call.
Bootstrap intervals reuse pycocoevalcap's per-item statistics: BLEU from its cooked n-gram counts,
METEOR from its per-segment statistics sent back to the same JVM, ROUGE-L and CIDEr-D (corpus scores
that are means of per-image scores, document frequencies held fixed) from their per-image scores.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import tempfile

import numpy as np

from .errors import AesbenchError
from .metrics import CAPTION_METRICS

@contextlib.contextmanager
def _stderr_to(file):
    """Point file descriptor 2 (inherited by Java subprocesses) at `file` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


JAVA_HINT = "install Java 8 or newer (e.g. `apt-get install default-jre-headless`) and put `java` on PATH"


def require_java() -> None:
    if shutil.which("java") is None:
        raise AesbenchError(f"java not found: caption metrics (PTB tokenizer, METEOR) run on Java; {JAVA_HINT}")


class CaptionScorer:
    def __init__(self):
        require_java()
        from pycocoevalcap.meteor.meteor import Meteor

        try:
            self.meteor = Meteor()
        except OSError as e:
            raise AesbenchError(f"cannot start METEOR's JVM ({e}); {JAVA_HINT}") from None

    def close(self) -> None:
        if getattr(self, "meteor", None) is not None:
            self.meteor.__del__()
            self.meteor = None

    @staticmethod
    def tokenize(references: dict[str, list[str]], candidates: dict[str, str]) -> tuple[dict, dict]:
        """One PTBTokenizer call for both sides; lines are tokenized independently, so this equals two calls."""
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        both = {("ref", k): [{"caption": r} for r in refs] for k, refs in references.items()}
        both.update({("cand", k): [{"caption": c}] for k, c in candidates.items()})
        with tempfile.TemporaryFile() as log, _stderr_to(log):  # Java's progress line, kept for errors
            tokens = PTBTokenizer().tokenize(both)
            log.seek(0)
            java_said = log.read().decode(errors="replace").strip()
        if any(len(tokens.get(k, [])) != len(v) for k, v in both.items()):
            raise AesbenchError(f"PTB tokenizer returned fewer lines than it was given (Java said: {java_said[-300:] or 'nothing'})")
        gts = {k: tokens[("ref", k)] for k in references}
        res = {k: tokens[("cand", k)] for k in candidates}
        return gts, res

    def score(self, references: dict[str, list[str]], candidates: dict[str, str]) -> dict:
        """Corpus metrics and the per-item statistics the bootstrap needs; keys in `references` order."""
        from pycocoevalcap.bleu.bleu_scorer import BleuScorer
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        if references.keys() != candidates.keys():
            raise ValueError("references and candidates must cover the same ids")
        gts, res = self.tokenize(references, candidates)
        bleu_scorer = BleuScorer(n=4)
        for k in gts:  # exactly pycocoevalcap.bleu.Bleu.compute_score, keeping the scorer for its counts
            bleu_scorer += (res[k][0], gts[k])
        bleu, _ = bleu_scorer.compute_score(option="closest", verbose=0)
        rouge, rouge_items = Rouge().compute_score(gts, res)
        cider, cider_items = Cider().compute_score(gts, res)
        meteor_stats = [self.meteor._stat(res[k][0], gts[k]) for k in gts]
        meteor, meteor_items = self.meteor_eval(meteor_stats)
        metrics = {f"bleu{n + 1}": float(bleu[n]) for n in range(4)}
        metrics.update(meteor=float(meteor), rouge_l=float(rouge), cider=float(cider))
        per_item = {
            "meteor": list(meteor_items),
            "rouge_l": [float(x) for x in rouge_items],
            "cider": [float(x) for x in cider_items],
        }
        return {"metrics": metrics, "per_item": per_item, "bleu_counts": bleu_counts(bleu_scorer), "meteor_stats": meteor_stats}

    def meteor_eval(self, stats: list[str]) -> tuple[float, list[float]]:
        """METEOR's EVAL over per-segment statistics, as pycocoevalcap's Meteor.compute_score sends it."""
        m = self.meteor
        with m.lock:
            m.meteor_p.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
            m.meteor_p.stdin.flush()
            per_segment = [float(m.meteor_p.stdout.readline().strip()) for _ in stats]
            corpus = float(m.meteor_p.stdout.readline().strip())
        return corpus, per_segment

    def bootstrap(self, scored: dict, resamples: int, seed: int, level: float = 0.95) -> dict[str, list[float]]:
        n = len(scored["meteor_stats"])
        if n < 2 or resamples <= 0:
            return {}
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n, size=(resamples, n))
        samples = {name: [] for name in CAPTION_METRICS}
        rouge, cider = np.array(scored["per_item"]["rouge_l"]), np.array(scored["per_item"]["cider"])
        for idx in draws:
            for k, value in enumerate(bleu_from_counts(scored["bleu_counts"], idx)):
                samples[f"bleu{k + 1}"].append(value)
            samples["meteor"].append(self.meteor_eval([scored["meteor_stats"][i] for i in idx])[0])
            samples["rouge_l"].append(float(rouge[idx].mean()))
            samples["cider"].append(float(cider[idx].mean()))
        alpha = (1.0 - level) / 2.0
        return {name: [float(np.quantile(v, alpha)), float(np.quantile(v, 1.0 - alpha))] for name, v in samples.items()}


def bleu_counts(scorer) -> dict[str, np.ndarray]:
    """Per-item sufficient statistics from pycocoevalcap's BleuScorer ('closest' reference length)."""
    tests = scorer.ctest
    return {
        "testlen": np.array([c["testlen"] for c in tests], dtype=np.int64),
        "reflen": np.array([scorer._single_reflen(c["reflen"], "closest", c["testlen"]) for c in tests], dtype=np.int64),
        "guess": np.array([c["guess"] for c in tests], dtype=np.int64),
        "correct": np.array([c["correct"] for c in tests], dtype=np.int64),
    }


def bleu_from_counts(counts: dict[str, np.ndarray], idx: np.ndarray | None = None) -> list[float]:
    """Corpus BLEU-1..4 over the items `idx`, with BleuScorer.compute_score's arithmetic and smoothing."""
    if idx is None:
        idx = np.arange(len(counts["testlen"]))
    small, tiny = 1e-9, 1e-15
    testlen, reflen = int(counts["testlen"][idx].sum()), int(counts["reflen"][idx].sum())
    guess, correct = counts["guess"][idx].sum(axis=0), counts["correct"][idx].sum(axis=0)
    bleus, bleu = [], 1.0
    for k in range(4):
        bleu *= float(int(correct[k]) + tiny) / (int(guess[k]) + small)
        bleus.append(bleu ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    if ratio < 1:
        bleus = [b * math.exp(1 - 1 / ratio) for b in bleus]
    return bleus
