"""Caption metrics the COCO way, with pycocoevalcap 1.2's numbers exactly: PTB tokenizer, BLEU-1..4,
METEOR 1.5, ROUGE-L and CIDEr-D (document frequencies from the evaluated references).

pycocoevalcap's Java parts run as they are (its PTB tokenizer; its METEOR jar, fed the very SCORE
and EVAL lines its Meteor class sends). Its pure-Python metrics are computed here with the same
arithmetic, operation for operation, minus the overhead: n-grams counted once for BLEU and CIDEr-D,
integer counts and LCS lengths found by faster means, CIDEr-D's logs taken once per distinct value.
Every number, corpus and per item, is tested equal to pycocoevalcap's own pipeline.

Where the time goes (5,000 images x 5 references, 2 cores, measured): METEOR's JVM spends 7-8 s (9 s
of CPU) loading its paraphrase table before it scores anything, then 1-3 ms of CPU per segment; the
EVAL line costs 0.1-0.8 ms per segment (Java's Scanner parses each number); pycocoevalcap's Python
metrics take about 6.5 s (3 s here). So a CaptionScorer starts METEOR's JVMs first and tokenizes
and computes BLEU, ROUGE-L and CIDEr-D while they load; the per-segment statistics are split over
several JVMs only when the machine has cores to spare, since each further JVM costs another 9 s of
CPU to load; and the corpus score and per-segment scores come from one EVAL line on one JVM, the
exact line pycocoevalcap's Meteor.compute_score sends. Lines go to and from the JVMs through
non-blocking pipes, never one round trip per segment.

Bootstrap intervals reuse the per-item statistics: BLEU from its cooked n-gram counts,
ROUGE-L and CIDEr-D (corpus scores that are means of per-image scores, document frequencies held
fixed) from their per-image scores, and METEOR by EVAL on the same JVM. METEOR's EVAL scores the sum
of its segments' statistics (word counts, added as MeteorStats.addStats adds them); so each resample
is sent as one segment holding its summed counts, which gives the very double the full EVAL line
gives (tested) while the JVM parses one segment instead of n.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import selectors
import shutil
import subprocess
import tempfile
import unicodedata

import numpy as np

from .errors import AesbenchError
from .images import cpu_cores
from .metrics import CAPTION_METRICS

SEGMENTS_PER_WORKER = 1000  # each further JVM takes ~9 s of CPU and ~1 GB to load: worth it only on many segments


# The tokenizer JVM runs a second or two: its C2 compiler threads cost more CPU than they save there
# (5,000 x 5 references: 1.4 s of CPU by default, 0.6 s with C1 only, measured). A JIT setting
# changes how fast the Java code runs, never what it computes: the tokens are the same (parity tests).
PTB_JVM_FLAGS = ("-XX:TieredStopAtLevel=1",)

JAVA_HINT = "install Java 8 or newer (e.g. `apt-get install default-jre-headless`) and put `java` on PATH"


def require_java() -> None:
    if shutil.which("java") is None:
        raise AesbenchError(f"java not found: caption metrics (PTB tokenizer, METEOR) run on Java; {JAVA_HINT}")


def default_workers(segments: int) -> int:
    """METEOR JVMs for this many segments: one per SEGMENTS_PER_WORKER, at most half the cores (each
    JVM's garbage collector and compiler threads need some), at most 8 (each holds ~1 GB)."""
    return max(1, min(cpu_cores() // 2, 8, math.ceil(segments / SEGMENTS_PER_WORKER)))


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
                        s["todo"] = s["todo"][os.write(key.fd, s["todo"][: 1 << 16]) :]
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
    try:
        values = np.array([line.split() for line in stats], dtype=np.float64).reshape(len(stats), 23)
    except ValueError:
        values = None
    if values is None or not np.array_equal(values, np.round(values)):
        raise AesbenchError("METEOR returned per-segment statistics that are not 23 whole-number counts")
    counts = values.astype(np.int64)
    matches = counts[:, 4:20].reshape(-1, 4, 4)
    perfect = (
        ((matches[:, :, 0] + matches[:, :, 2]).sum(axis=1) == counts[:, 0])
        & ((matches[:, :, 1] + matches[:, :, 3]).sum(axis=1) == counts[:, 1])
        & (counts[:, 20] == 1)
    )
    counts[perfect, 20] = 0
    return counts


# Line breaks and other control characters inside a caption. The PTB tokenizer runs with
# -preserveLines (one caption a line) and breaks lines at \r, \x0b, \x0c, U+0085, U+2028 and
# U+2029 as well as \n, so one of them inside a caption would shift every later caption onto the
# wrong image; pycocoevalcap replaces only \n. Every such character (Unicode categories Cc, Zl,
# Zp; tabs too, which the tokenizer treats as spaces anyway) becomes a space, on references and
# candidates alike, and a lone surrogate (not encodable as UTF-8) becomes U+FFFD.
CAPTION_NORMALISATION = (
    "control and line-separator characters (Unicode Cc, Zl, Zp) inside a caption become spaces;"
    " lone surrogates become U+FFFD"
)


def normalise_caption(text: str) -> str:
    if text.isprintable() and "\t" not in text:  # the common case: nothing to do
        return text
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        out.append(" " if category in ("Cc", "Zl", "Zp") else "\ufffd" if category == "Cs" else ch)
    return "".join(out)


def count_normalised(texts) -> int:
    """How many of the texts normalise_caption changes (recorded with the results)."""
    return sum(normalise_caption(t) != t for t in texts)


def ptb_tokenize(captions: dict) -> dict:
    """pycocoevalcap's PTBTokenizer.tokenize (same Java class and flags, same punctuation removal, so
    the same tokens) on {key: [caption, ...]}, with the sentences in a temporary file of our own in
    the system's temporary folder: pycocoevalcap writes its file into its own package folder, which
    may be read-only. Captions must hold no line breaks (normalise_caption)."""
    return ptb_tokenize_calls([captions])[0]


def ptb_tokenize_calls(calls: list[dict]) -> list[dict]:
    """Several PTBTokenizer.tokenize calls, each its own JVM on its own file, exactly as that many calls
    of pycocoevalcap's (a line's tokens can depend on where it stands in its call: the PTB tokenizer
    reads an emoticon at the very end of its input differently, so calls are never merged), run at once."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    folder = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
    jar = os.path.join(folder, ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    with contextlib.ExitStack() as stack:
        running = []
        for captions in calls:
            text = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".txt"))
            log = stack.enter_context(tempfile.TemporaryFile())
            text.write("\n".join(c for caps in captions.values() for c in caps).encode())
            text.flush()
            cmd = [
                "java",
                *PTB_JVM_FLAGS,
                "-cp",
                jar,
                "edu.stanford.nlp.process.PTBTokenizer",
                "-preserveLines",
                "-lowerCase",
                text.name,
            ]
            try:
                proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
            except OSError as e:
                reason = e.strerror or type(e).__name__
                raise AesbenchError(f"cannot run the PTB tokenizer ({reason}); {JAVA_HINT}") from None
            stack.callback(_end, proc)
            running.append((captions, log, proc))
        results = []
        for captions, log, proc in running:
            lines = proc.communicate()[0].decode().split("\n")
            keys = [k for k, caps in captions.items() for _ in caps]
            if proc.returncode != 0 or len(lines) < len(keys):
                log.seek(0)
                java_said = log.read().decode(errors="replace").strip()  # its progress line, kept for errors
                raise AesbenchError(
                    f"PTB tokenizer returned fewer lines than it was given (Java said: {java_said[-300:] or 'nothing'})"
                )
            tokens: dict = {}
            for key, line in zip(keys, lines):
                words = [w for w in line.rstrip().split(" ") if w not in ptbtokenizer.PUNCTUATIONS]
                tokens.setdefault(key, []).append(" ".join(words))
            results.append(tokens)
        return results


def _end(proc) -> None:
    """Stop a tokenizer JVM still running (after an error elsewhere)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


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
        """COCOEvalCap.evaluate's tokenization: one PTBTokenizer call for the references, another for the
        candidates, each in the order of the items (run at the same time), each caption normalised first
        (normalise_caption). Never one joint call: the PTB tokenizer reads an emoticon ending the last line
        of its input differently (`too dark :)` gives `too dark -rrb-` there, `too dark :-rrb-` elsewhere)."""
        gts, res = ptb_tokenize_calls(
            [
                {k: [normalise_caption(r) for r in refs] for k, refs in references.items()},
                {k: [normalise_caption(c)] for k, c in candidates.items()},
            ]
        )
        return gts, res

    def score(self, references: dict[str, list[str]], candidates: dict[str, str]) -> dict:
        """Corpus metrics and the per-item statistics the bootstrap needs; keys in `references` order."""
        if references.keys() != candidates.keys():
            raise ValueError("references and candidates must cover the same ids")
        self._start(self.workers or default_workers(len(references)))  # they load while Python works below
        try:
            gts, res = self.tokenize(references, candidates)
            cooked = cook(gts, res)
            counts = bleu_counts(cooked)
            rouge, rouge_items = rouge_l(gts, res)
            cider, cider_items = cider_d(cooked)
            meteor_stats = self.meteor_stats([(res[k][0], gts[k]) for k in gts])
        finally:
            self._stop_extra()
        meteor, meteor_items = self.meteor_eval(meteor_stats)
        metrics = {f"bleu{n + 1}": b for n, b in enumerate(bleu_from_counts(counts))}
        metrics.update(meteor=float(meteor), rouge_l=rouge, cider=cider)
        per_item = {f"bleu{n + 1}": values for n, values in enumerate(bleu_per_item(counts))}
        per_item.update(meteor=list(meteor_items), rouge_l=rouge_items, cider=cider_items)
        normalised = {
            "rule": CAPTION_NORMALISATION,
            "references": count_normalised(r for refs in references.values() for r in refs),
            "candidates": count_normalised(candidates.values()),
        }
        return {
            "metrics": metrics,
            "per_item": per_item,
            "bleu_counts": counts,
            "meteor_stats": meteor_stats,
            "normalised": normalised,
        }

    def meteor_stats(self, pairs: list[tuple[str, list[str]]]) -> list[str]:
        """Per-segment statistics for (hypothesis, references) pairs: Meteor._stat's SCORE lines, in
        contiguous chunks over the running JVMs."""
        lines = []
        for hypothesis, references in pairs:  # exactly Meteor._stat's line
            hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(references), hypothesis)) + "\n")
        size = math.ceil(len(lines) / len(self.meteors)) if lines else 1
        parts = [lines[i : i + size] for i in range(0, len(lines), size)]
        jobs = [(m.meteor_p, "".join(part).encode(), len(part)) for m, part in zip(self.meteors, parts)]
        return [line.strip() for answer in _exchange(jobs) for line in answer]

    def meteor_eval(self, stats: list[str]) -> tuple[float, list[float]]:
        """METEOR's EVAL over per-segment statistics: the line pycocoevalcap's Meteor.compute_score sends."""
        (answer,) = _exchange(
            [(self.meteor.meteor_p, ("EVAL ||| " + " ||| ".join(stats) + "\n").encode(), len(stats) + 1)]
        )
        return float(answer[-1].strip()), [float(x.strip()) for x in answer[:-1]]

    def meteor_resampled(self, stats: list[str], draws: np.ndarray) -> list[float]:
        """Corpus METEOR of each row of `draws` (indices into `stats`), equal to meteor_eval on those segments."""
        counts = _meteor_addends(stats)
        lines = "".join("EVAL ||| " + " ".join(f"{v}.0" for v in counts[idx].sum(axis=0)) + "\n" for idx in draws)
        (answer,) = _exchange([(self.meteor.meteor_p, lines.encode(), 2 * len(draws))])
        return [float(x.strip()) for x in answer[1::2]]  # each EVAL answers its segment's score, then the corpus's

    def bootstrap_samples(self, scored: dict, draws: np.ndarray) -> dict[str, list[float]]:
        """Each metric on each resample (a row of item indices), from the per-item statistics of `scored`:
        BLEU from its counts, ROUGE-L and CIDEr-D as means of per-item scores, METEOR by its EVAL."""
        samples = {name: [] for name in CAPTION_METRICS}
        rouge, cider = np.array(scored["per_item"]["rouge_l"]), np.array(scored["per_item"]["cider"])
        for idx in draws:
            for k, value in enumerate(bleu_from_counts(scored["bleu_counts"], idx)):
                samples[f"bleu{k + 1}"].append(value)
            samples["rouge_l"].append(float(rouge[idx].mean()))
            samples["cider"].append(float(cider[idx].mean()))
        samples["meteor"] = self.meteor_resampled(scored["meteor_stats"], draws)
        return samples

    def bootstrap(self, scored: dict, resamples: int, seed: int, level: float = 0.95) -> dict[str, list[float]]:
        n = len(scored["meteor_stats"])
        if n < 2 or resamples <= 0:
            return {}
        rng = np.random.default_rng(seed)
        samples = self.bootstrap_samples(scored, rng.integers(0, n, size=(resamples, n)))
        alpha = (1.0 - level) / 2.0
        return {name: [float(np.quantile(v, alpha)), float(np.quantile(v, 1.0 - alpha))] for name, v in samples.items()}


def _ngram_counts(sentence: str, n: int = 4) -> collections.Counter:
    """pycocoevalcap's precook (BLEU's and CIDEr's alike): counts of 1..n-grams of the whitespace-split
    sentence, in its order (by length, then first occurrence); counted in C."""
    words = sentence.split()
    counts = collections.Counter()
    for k in range(1, n + 1):
        counts.update(zip(*[words[i:] for i in range(k)]))
    return counts


def cook(
    gts: dict[str, list[str]], res: dict[str, list[str]]
) -> list[tuple[list[collections.Counter], collections.Counter]]:
    """Each image's n-gram counts, (references, candidate), computed once for BLEU and CIDEr-D."""
    return [([_ngram_counts(ref) for ref in gts[k]], _ngram_counts(res[k][0])) for k in gts]


def bleu_counts(cooked: list) -> dict[str, np.ndarray]:
    """Per-item BLEU statistics as pycocoevalcap's BleuScorer cooks them (cook_refs, cook_test, the
    'closest' reference length): all whole numbers, so computed any way they are the same."""
    testlen, reflen, guess, correct = [], [], [], []
    for refs, test in cooked:
        length = sum(c for g, c in test.items() if len(g) == 1)
        lengths = [sum(c for g, c in ref.items() if len(g) == 1) for ref in refs]
        maxcounts = {}
        for ref in refs:
            for ngram, count in ref.items():
                if count > maxcounts.get(ngram, 0):
                    maxcounts[ngram] = count
        right = [0, 0, 0, 0]
        for ngram, count in test.items():
            right[len(ngram) - 1] += min(maxcounts.get(ngram, 0), count)
        testlen.append(length)
        reflen.append(min((abs(l - length), l) for l in lengths)[1])
        guess.append([max(0, length - k + 1) for k in range(1, 5)])
        correct.append(right)
    return {
        key: np.array(values, dtype=np.int64)
        for key, values in (("testlen", testlen), ("reflen", reflen), ("guess", guess), ("correct", correct))
    }


def _lcs_length(candidate: list[str], reference: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (rouge.my_lcs's number), by the
    bit-parallel algorithm of Crochemore et al. (2001): one big-integer step per reference token."""
    masks = {}
    for i, token in enumerate(candidate):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(candidate)) - 1
    row = full
    for token in reference:
        hit = row & masks.get(token, 0)
        row = ((row + hit) | (row - hit)) & full
    return len(candidate) - bin(row).count("1")


def rouge_l(gts: dict[str, list[str]], res: dict[str, list[str]], beta: float = 1.2) -> tuple[float, list[float]]:
    """pycocoevalcap's Rouge().compute_score(gts, res): the same LCS lengths (whole numbers, found
    faster) and the same floating-point formula (equality tested)."""
    scores = []
    for k in gts:
        token_c = res[k][0].split(" ")
        prec, rec = [], []
        for reference in gts[k]:
            token_r = reference.split(" ")
            lcs = _lcs_length(token_c, token_r)
            prec.append(lcs / float(len(token_c)))
            rec.append(lcs / float(len(token_r)))
        prec_max, rec_max = max(prec), max(rec)
        if prec_max != 0 and rec_max != 0:
            scores.append(((1 + beta**2) * prec_max * rec_max) / float(rec_max + beta**2 * prec_max))
        else:
            scores.append(0.0)
    return float(np.mean(np.array(scores))), [float(x) for x in scores]


def cider_d(cooked: list, n: int = 4, sigma: float = 6.0) -> tuple[float, list[float]]:
    """pycocoevalcap's Cider().compute_score(gts, res), the same floating-point operations in the same
    order (equality tested), several times faster: the log of each document frequency is taken once
    per distinct frequency instead of once per n-gram occurrence, and per-n-gram arithmetic is on
    Python floats instead of numpy scalars (both IEEE doubles; pow(x, 2) is C pow either way)."""
    frequency = collections.Counter()
    for refs, _ in cooked:
        frequency.update({ngram for ref in refs for ngram in ref})
    ref_len = float(np.log(float(len(cooked))))
    logs = {}  # document frequency -> CiderScorer's np.log(max(1.0, df))

    def counts2vec(counts):
        vec, norm, length = [{} for _ in range(n)], [0.0] * n, 0
        for ngram, term_freq in counts.items():
            df = frequency.get(ngram, 0)
            if df not in logs:
                logs[df] = float(np.log(max(1.0, float(df))))
            k = len(ngram) - 1
            value = vec[k][ngram] = float(term_freq) * (ref_len - logs[df])
            norm[k] += pow(value, 2)
            if k == 1:
                length += term_freq
        return vec, [np.sqrt(x) for x in norm], length

    scores = []
    for refs, test in cooked:
        vec, norm, length = counts2vec(test)
        score = np.array([0.0] * n)
        for ref in refs:
            vec_ref, norm_ref, length_ref = counts2vec(ref)
            delta = float(length - length_ref)
            val = [0.0] * n
            for k in range(n):
                theirs = vec_ref[k]
                for ngram, mine in vec[k].items():
                    if ngram in theirs:  # an n-gram the reference lacks adds exactly 0.0
                        val[k] += min(mine, theirs[ngram]) * theirs[ngram]
                if norm[k] != 0 and norm_ref[k] != 0:
                    val[k] /= norm[k] * norm_ref[k]
                val[k] *= np.e ** (-(delta**2) / (2 * sigma**2))
            score += np.array(val)
        scores.append(np.mean(score) / len(refs) * 10.0)
    return float(np.mean(np.array(scores))), [float(x) for x in scores]


def bleu_per_item(counts: dict[str, np.ndarray]) -> list[list[float]]:
    """Each item's BLEU-1..4 as BleuScorer.compute_score lists them per image (its 'closest' reference
    length, its smoothing), operation for operation: [[bleu1 of each item], ..., [bleu4 of each item]]."""
    small, tiny = 1e-9, 1e-15
    out = [[], [], [], []]
    for testlen, reflen, guess, correct in zip(
        counts["testlen"].tolist(), counts["reflen"].tolist(), counts["guess"].tolist(), counts["correct"].tolist()
    ):
        bleu = 1.0
        for k in range(4):
            bleu *= (float(correct[k]) + tiny) / (float(guess[k]) + small)
            out[k].append(bleu ** (1.0 / (k + 1)))
        ratio = (testlen + tiny) / (reflen + small)
        if ratio < 1:
            for k in range(4):
                out[k][-1] *= math.exp(1 - 1 / ratio)
    return out


def bleu_from_counts(counts: dict[str, np.ndarray], idx: np.ndarray | None = None) -> list[float]:
    """Corpus BLEU-1..4 over the items `idx` (all by default), with BleuScorer.compute_score's
    arithmetic and smoothing, operation for operation (equality tested)."""
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
