"""Caption metrics the COCO way, through pycocoevalcap itself: PTB tokenizer, BLEU-1..4, METEOR 1.5,
ROUGE-L and CIDEr-D (document frequencies from the evaluated references).

Where the time goes (5,000 images x 5 references, 2 cores): METEOR's JVM spends about 8 s loading its
paraphrase table before it scores anything, scoring takes about 2 ms of CPU per segment, and the
Python metrics take about 7 s. So a CaptionScorer starts METEOR's JVMs first and tokenizes and
computes BLEU, ROUGE-L and CIDEr while they load; the per-segment statistics (pycocoevalcap's SCORE
lines, unchanged) are split over `workers` JVMs when the machine has cores to spare; and the corpus
score and per-segment scores come from one EVAL line on one JVM, the exact line pycocoevalcap's
Meteor.compute_score sends. Lines go to and from the JVMs through non-blocking pipes, never one
round trip per segment.

Bootstrap intervals reuse pycocoevalcap's per-item statistics: BLEU from its cooked n-gram counts,
ROUGE-L and CIDEr-D (corpus scores that are means of per-image scores, document frequencies held
fixed) from their per-image scores, and METEOR by EVAL on the same JVM. METEOR's EVAL scores the sum
of its segments' statistics (word counts, added as MeteorStats.addStats adds them); so each resample
is sent as one segment holding its summed counts, which gives the very double the full EVAL line
gives (tested) while the JVM parses one segment instead of n.
"""
from __future__ import annotations

import contextlib
import math
import os
import selectors
import shutil
import sys
import tempfile

import numpy as np

from .errors import AesbenchError
from .metrics import CAPTION_METRICS

SEGMENTS_PER_WORKER = 1000  # a further JVM costs ~8 s of CPU to load; it pays only on this many segments


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


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(segments: int) -> int:
    """METEOR JVMs for this many segments: one per SEGMENTS_PER_WORKER, at most half the cores (each
    JVM's garbage collector and compiler threads need some), at most 8 (each holds ~1 GB)."""
    return max(1, min(usable_cores() // 2, 8, math.ceil(segments / SEGMENTS_PER_WORKER)))


def _exchange(jobs: list[tuple[object, bytes, int]]) -> list[list[str]]:
    """Send each METEOR process its input and read back the number of lines it owes, all at once.

    Non-blocking writes and reads through one selector: a JVM whose output pipe is full never waits
    on a writer that waits on it, and no process waits for a Python round trip per line.
    """
    sel = selectors.DefaultSelector()
    state = []
    for n, (proc, payload, expected) in enumerate(jobs):
        for pipe in (proc.stdin, proc.stdout):
            os.set_blocking(pipe.fileno(), False)
        if payload:
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, (n, "w"))
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ, (n, "r"))
        state.append({"proc": proc, "todo": memoryview(payload), "out": bytearray(), "lines": 0, "expected": expected})
    open_reads = len(jobs)
    try:
        while open_reads:
            for key, _ in sel.select():
                n, kind = key.data
                s = state[n]
                try:
                    if kind == "w":
                        s["todo"] = s["todo"][os.write(key.fd, s["todo"][:1 << 16]):]
                        if not s["todo"]:
                            sel.unregister(key.fd)
                        continue
                    chunk = os.read(key.fd, 1 << 20)
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    chunk = b""
                if not chunk:
                    raise AesbenchError(f"METEOR's JVM stopped before answering: {_stderr_tail(s['proc'])}")
                s["out"] += chunk
                s["lines"] += chunk.count(b"\n")
                if s["lines"] >= s["expected"]:
                    sel.unregister(key.fd)
                    open_reads -= 1
    finally:
        sel.close()
    return [s["out"].decode().splitlines() for s in state]


def _stderr_tail(proc) -> str:
    """The last line Java wrote to stderr, once the process has ended."""
    proc.kill()
    proc.wait()
    lines = [line for line in proc.stderr.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit status {proc.returncode}, nothing on stderr"


def _meteor_addends(stats: list[str]) -> np.ndarray:
    """METEOR's per-segment statistics as the integers its EVAL adds up (MeteorStats.addStats).

    Fields: test and reference length, test and reference function words, for each of the 4 stages
    (test content, reference content, test function, reference function) matches, then chunks, test
    and reference word matches. addStats adds every field except the chunks of a perfect segment
    (every word matched, in one chunk), which count 0. All are word counts, so sums are exact.
    """
    values = np.array([line.split() for line in stats], dtype=np.float64).reshape(len(stats), -1)
    counts = values.astype(np.int64)
    if counts.shape[1] != 23 or not np.array_equal(counts, values):
        raise AesbenchError("METEOR returned per-segment statistics that are not 23 whole-number counts")
    matches = counts[:, 4:20].reshape(-1, 4, 4)
    perfect = ((matches[:, :, 0] + matches[:, :, 2]).sum(axis=1) == counts[:, 0]) \
        & ((matches[:, :, 1] + matches[:, :, 3]).sum(axis=1) == counts[:, 1]) & (counts[:, 20] == 1)
    counts[perfect, 20] = 0
    return counts


class CaptionScorer:
    def __init__(self, workers: int | None = None):
        require_java()
        self.workers = workers  # None: default_workers(segments) on each score() call
        self.meteors: list = []  # pycocoevalcap Meteor objects; [0] lives as long as the scorer

    def _start(self, count: int) -> None:
        from pycocoevalcap.meteor.meteor import Meteor

        while len(self.meteors) < count:
            try:
                self.meteors.append(Meteor())
            except OSError as e:
                raise AesbenchError(f"cannot start METEOR's JVM ({e}); {JAVA_HINT}") from None

    def _stop_extra(self) -> None:
        for meteor in self.meteors[1:]:
            meteor.__del__()
        del self.meteors[1:]

    def close(self) -> None:
        for meteor in self.meteors:
            meteor.__del__()
        self.meteors = []

    @property
    def meteor(self):
        """The JVM that evaluates: EVAL lines and the bootstrap."""
        self._start(1)
        return self.meteors[0]

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
        self._start(self.workers or default_workers(len(references)))  # they load while Python works below
        try:
            gts, res = self.tokenize(references, candidates)
            bleu_scorer = BleuScorer(n=4)
            for k in gts:  # exactly pycocoevalcap.bleu.Bleu.compute_score, keeping the scorer for its counts
                bleu_scorer += (res[k][0], gts[k])
            bleu, _ = bleu_scorer.compute_score(option="closest", verbose=0)
            rouge, rouge_items = Rouge().compute_score(gts, res)
            cider, cider_items = Cider().compute_score(gts, res)
            meteor_stats = self.meteor_stats([(res[k][0], gts[k]) for k in gts])
        finally:
            self._stop_extra()
        meteor, meteor_items = self.meteor_eval(meteor_stats)
        metrics = {f"bleu{n + 1}": float(bleu[n]) for n in range(4)}
        metrics.update(meteor=float(meteor), rouge_l=float(rouge), cider=float(cider))
        per_item = {
            "meteor": list(meteor_items),
            "rouge_l": [float(x) for x in rouge_items],
            "cider": [float(x) for x in cider_items],
        }
        return {"metrics": metrics, "per_item": per_item, "bleu_counts": bleu_counts(bleu_scorer), "meteor_stats": meteor_stats}

    def meteor_stats(self, pairs: list[tuple[str, list[str]]]) -> list[str]:
        """Per-segment statistics for (hypothesis, references) pairs: Meteor._stat's SCORE lines, in
        contiguous chunks over the running JVMs."""
        lines = []
        for hypothesis, references in pairs:  # exactly Meteor._stat's line
            hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(references), hypothesis)) + "\n")
        size = math.ceil(len(lines) / len(self.meteors)) if lines else 1
        parts = [lines[i:i + size] for i in range(0, len(lines), size)]
        jobs = [(m.meteor_p, "".join(part).encode(), len(part)) for m, part in zip(self.meteors, parts)]
        return [line.strip() for answer in _exchange(jobs) for line in answer]

    def meteor_eval(self, stats: list[str]) -> tuple[float, list[float]]:
        """METEOR's EVAL over per-segment statistics: the line pycocoevalcap's Meteor.compute_score sends."""
        (answer,) = _exchange([(self.meteor.meteor_p, ("EVAL ||| " + " ||| ".join(stats) + "\n").encode(), len(stats) + 1)])
        return float(answer[-1].strip()), [float(x.strip()) for x in answer[:-1]]

    def meteor_resampled(self, stats: list[str], draws: np.ndarray) -> list[float]:
        """Corpus METEOR of each row of `draws` (indices into `stats`), equal to meteor_eval on those segments."""
        counts = _meteor_addends(stats)
        lines = "".join("EVAL ||| " + " ".join(f"{v}.0" for v in counts[idx].sum(axis=0)) + "\n" for idx in draws)
        (answer,) = _exchange([(self.meteor.meteor_p, lines.encode(), 2 * len(draws))])
        return [float(x.strip()) for x in answer[1::2]]  # each EVAL answers its segment's score, then the corpus's

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
            samples["rouge_l"].append(float(rouge[idx].mean()))
            samples["cider"].append(float(cider[idx].mean()))
        samples["meteor"] = self.meteor_resampled(scored["meteor_stats"], draws)
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
