"""Side-by-side timings in one run: the harness against a bare loop, and the tiny suite per task.

    python benchmarks/bench.py [--repeats 3]

Prints, for the handcrafted baseline on tiny-ava-score's test images:
  - the harness's predict phase (decode, batch, model, append + fsync to predictions.jsonl) against a
    plain loop (decode, model) on the same images, as a throughput ratio (1.0 = no overhead);
and the wall time of each tiny task's whole evaluation (predict + metrics + bootstrap) per model.
Each measurement builds a fresh model, so the handcrafted feature cache never carries over.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from aesbench.adapter import load_model
from aesbench.datasets import read_dataset
from aesbench.families import ScoreFamily, _request, chunks
from aesbench.images import load_image
from aesbench.runs import PredictionStore, evaluate, identity_track
from aesbench.task import load_task

TINY = ("tiny-ava-score", "tiny-ava-comment", "tiny-pccd-suggest", "tiny-flickr-aes-piaa")


def bare_loop(task, data, batch_size: int) -> float:
    model, request = load_model("handcrafted"), _request(task)
    start = time.perf_counter()
    for batch in chunks(data.items, batch_size):
        model.score([load_image(it.image, task.preprocessing) for it in batch], request)
    return time.perf_counter() - start


def harness(task, data, batch_size: int) -> float:
    model = load_model("handcrafted")
    with tempfile.TemporaryDirectory() as tmp:
        store = PredictionStore(Path(tmp) / "predictions.jsonl")
        start = time.perf_counter()
        ScoreFamily().predict(model, task, data, store, batch_size, identity_track)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    task = load_task("tiny-ava-score")
    task.resolve_root()
    data = read_dataset(task)
    bare, ours = [], []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        bare.append(bare_loop(task, data, args.batch_size))
        ours.append(harness(task, data, args.batch_size))
    b, h = statistics.median(bare), statistics.median(ours)
    n = len(data.items)
    print(f"handcrafted on {task.name} ({n} images, batch {args.batch_size}, median of {args.repeats}):")
    print(f"  bare loop  {n / b:8.1f} img/s   harness {n / h:8.1f} img/s   harness/bare throughput {b / h:.3f}")

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


if __name__ == "__main__":
    main()
