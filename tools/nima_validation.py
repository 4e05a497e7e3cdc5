"""Choose NIMA's defaults on validation data, never on a test split (baselines/nima.py cites this).

Usage (from the repository root; each subcommand writes its tasks, checkpoints and runs under --out):

    python tools/nima_validation.py layers --out /tmp/nima-val/layers
    python tools/nima_validation.py personal --out /tmp/nima-val/personal

`layers`: the pooled layers for EfficientNet-Lite0. tiny-ava-score's 75 training images (the ids not
in generic_test.jpgl: 25 source photos, 3 images each) are cut into 3 folds by source photo (a
seeded permutation of the sorted photos, item_rng(0, "nima-val/ava-folds"), dealt out: 9, 8 and 8
photos), so no photo is on both sides. For each fold, each candidate (--layers) and each seed, NIMA
trains on the other folds with `aesbench train nima` (its defaults otherwise) and is scored on the
fold with `aesbench eval`; the table gives validation SRCC per fold and seed and the mean. The test
images are never read.

`personal`: PIAA personalization (personal_lr, personal_steps) on tiny-flickr-aes-piaa's training
workers (those not in test_workers.txt), read through a task identical to tiny-flickr-aes-piaa but
whose test_workers file lists them. The generic model is trained as the committed record's was
(`aesbench train nima --task tiny-ava-score`, seed 0): on tiny-ava images and AVA-style votes, no
FLICKR-AES worker's rating. The table gives ΔSRCC (personalized minus generic, on the same query
images) at each k of the protocol, and how many repeats gave non-finite scores (the task leaves them
out of its means, which flatters a setting that diverges).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from aesbench.degradations import item_rng
from aesbench.task import load_task

FOLDS = 3


def aesbench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "aesbench", *args], check=True)


def metrics(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["metrics"]


def layers_cmd(out: Path, candidates: list[str], seeds: list[int]) -> None:
    task = load_task("tiny-ava-score")
    root = task.resolve_root()
    test = set(task.file("split_list").read_text().split())
    rows = [line for line in task.file("path").read_text().splitlines() if line.split() and line.split()[1] not in test]
    source = {r["id"]: r["source"] for r in csv.DictReader((root / "edits.csv").open())}
    photos = sorted({source[line.split()[1]] for line in rows})
    order = [photos[i] for i in item_rng(0, "nima-val/ava-folds").permutation(len(photos))]
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "AVA.txt").write_text("\n".join(rows) + "\n")  # the training ids only: the test ids are not there
    table = {}
    for fold in range(FOLDS):
        held = set(order[fold::FOLDS])
        ids = [line.split()[1] for line in rows if source[line.split()[1]] in held]
        (data / f"fold{fold}.jpgl").write_text("\n".join(ids) + "\n")
        yaml = out / f"tiny-ava-val-fold{fold}.yaml"
        yaml.write_text(
            f"name: tiny-ava-val-fold{fold}\nversion: 1\nfamily: score\n"
            f"description: tiny-ava-score's training images; fold {fold} of {FOLDS} by source photo held out\n"
            f"dataset:\n  format: ava\n  root: {data}\n  path: AVA.txt\n  split_list: fold{fold}.jpgl\n"
            f"  images: {root / task.dataset['images']}\n"
            "preprocessing: {exif_transpose: true, alpha: white}\n"
            "prompt: How would you rate the aesthetics of this image?\nmetrics: [srcc, plcc]\n"
            "protocol:\n  score_range: [1, 10]\n  bootstrap: {resamples: 100, seed: 0, level: 0.95}\n"
        )
        print(f"fold {fold}: {len(ids)} validation images ({len(held)} photos), {len(rows) - len(ids)} training")
        for layers in candidates:
            for seed in seeds:
                name = f"fold{fold}-layers{layers.replace(',', '_')}-seed{seed}"
                ckpt, run = out / "ckpt" / name, out / "runs" / name
                if not (ckpt / "training.json").is_file():
                    aesbench("train", "nima", "--task", str(yaml), "--output", str(ckpt), "--layers", layers,
                             "--seed", str(seed), "--quiet")  # fmt: skip
                if not (run / "results.json").is_file():
                    aesbench("eval", "--task", str(yaml), "--model", str(ckpt), "--output", str(run), "--no-plots", "--quiet")  # fmt: skip
                table[layers, fold, seed] = metrics(run)["srcc"]
    print("\nvalidation SRCC (rows: --layers; columns: fold/seed)")
    for layers in candidates:
        cells = [table[layers, f, s] for f in range(FOLDS) for s in seeds]
        per_fold = [np.mean([table[layers, f, s] for s in seeds]) for f in range(FOLDS)]
        print(
            f"{layers:>10}  mean {np.mean(cells):.3f}  range {min(cells):.3f}-{max(cells):.3f}"
            f"  per fold {' '.join(f'{v:.3f}' for v in per_fold)}"
        )
    (out / "table.json").write_text(json.dumps({"|".join(map(str, k)): v for k, v in table.items()}, indent=2))


def personal_cmd(out: Path, lrs: list[str], steps: list[str], model: Path | None) -> None:
    task = load_task("tiny-flickr-aes-piaa")
    root = task.resolve_root()
    test = set(task.file("test_workers").read_text().split())
    with task.file("path").open(newline="") as f:
        workers = sorted({row[0].strip() for row in list(csv.reader(f))[1:] if row})
    val = [w for w in workers if w not in test]
    out.mkdir(parents=True, exist_ok=True)
    (out / "val_workers.txt").write_text("\n".join(val) + "\n")
    text = task.path.read_text().replace("name: tiny-flickr-aes-piaa", "name: tiny-flickr-aes-piaa-val")
    text = text.replace("root: data/tiny-flickr-aes", f"root: {root}")
    text = text.replace("test_workers: test_workers.txt", f"test_workers: {out / 'val_workers.txt'}")
    yaml = out / "tiny-flickr-aes-piaa-val.yaml"
    yaml.write_text(text)
    print(f"validation workers: {', '.join(val)}")
    if model is None:
        model = out / "generic"
        if not (model / "training.json").is_file():
            aesbench("train", "nima", "--task", "tiny-ava-score", "--output", str(model), "--quiet")
    cache = out / "feature-cache"
    table = {}
    for n in steps:
        for lr in lrs:
            run = out / "runs" / f"steps{n}-lr{lr}"
            if not (run / "results.json").is_file():
                aesbench("eval", "--task", str(yaml), "--model", str(model), "--output", str(run), "--no-plots",
                         "--quiet", "--feature-cache", str(cache), "--model-arg", f"personal_lr={lr}",
                         "--model-arg", f"personal_steps={n}")  # fmt: skip
            table[n, lr] = m = metrics(run)
            record = json.loads((run / "results.json").read_text())
            diverged = sum("non-finite" in s["reason"] for s in record["skipped"])
            print(
                f"steps {n:>4} lr {lr:>4}: ΔSRCC k=10 {m['piaa_delta_srcc']:.3f}, k=50 {m['piaa_delta_srcc_k50']:.3f}"
                f" (SRCC k=10 {m['piaa_srcc']:.3f}, generic {m['piaa_srcc_generic']:.3f});"
                f" repeats with non-finite scores: {diverged}"
            )
    (out / "table.json").write_text(json.dumps({f"{n}|{lr}": m for (n, lr), m in table.items()}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("layers")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--candidates", nargs="+", default=["5,11,17", "17"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p = sub.add_parser("personal")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--lrs", nargs="+", default=["2", "10", "40"])
    p.add_argument("--steps", nargs="+", default=["50"])
    p.add_argument("--model", type=Path, help="generic NIMA checkpoint (default: train one as the committed runs did)")
    args = parser.parse_args()
    if args.what == "layers":
        layers_cmd(args.out.resolve(), args.candidates, args.seeds)
    else:
        personal_cmd(args.out.resolve(), args.lrs, args.steps, args.model and args.model.resolve())


if __name__ == "__main__":
    main()
