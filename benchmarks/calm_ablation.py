"""CALM's ablations at tiny scale: thematic tokens only vs all levels, with and without SSL pre-training.

Trains each variant with the small config (only the switches differ) once per seed, evaluates each
checkpoint on tiny-ava-score's test images, and prints SRCC and PLCC as mean ± sd over the seeds; the
table goes to results/calm-ablation.md. Stages align, pretrain and score (commenting does not feed
the score readout). "no SSL" drops the pretrain stage's SSL samples (only image-text pairs are left); the
align stage, our addition, runs in every variant. A stopped run resumes: finished checkpoints and evaluations are reused.

    python benchmarks/calm_ablation.py --output runs/calm-ablation [--seeds 0 1 2] [--epochs-scale 0.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from aesbench.adapter import load_model
from aesbench.models.calm_train import CalmTrainConfig, train_calm
from aesbench.runs import evaluate
from aesbench.task import load_task

VARIANTS = {
    "all levels + SSL": {},
    "all levels, no SSL": {"ssl": False},
    "thematic only + SSL": {"qformer_layers": []},
    "thematic only, no SSL": {"qformer_layers": [], "ssl": False},
}


def variant_config(switches: dict, seed: int, epochs_scale: float) -> CalmTrainConfig:
    config = CalmTrainConfig(seed=seed)
    config.stages = [
        "align",
        "pretrain",
        "score",
    ]  # lm is the from-scratch decoder's; comment does not feed the readout
    for key, value in switches.items():
        target = config.model if hasattr(config.model, key) else config
        setattr(target, key, value)
    config.schedules = {k: dataclasses.replace(v, epochs=v.epochs * epochs_scale) for k, v in config.schedules.items()}
    return config


def run_one(label: str, switches: dict, seed: int, args) -> dict:
    folder = args.output / label.replace(" ", "_").replace(",", "").replace("+", "with") / f"seed{seed}"
    _, record = train_calm(variant_config(switches, seed, args.epochs_scale), folder / "ckpt")
    done = folder / "eval" / "results.json"
    results = (
        json.loads(done.read_text())
        if done.is_file()
        else evaluate(load_task("tiny-ava-score"), folder / "eval", model=load_model(str(folder / "ckpt")))
    )
    seconds = sum(s.get("seconds", 0) for s in record["stages"])
    return {
        "variant": label,
        "seed": seed,
        "n": results["n"],
        **{k: results["metrics"].get(k) for k in ("srcc", "plcc")},
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("runs/calm-ablation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="Multiply every stage's epochs (0.5: half).")
    parser.add_argument("--table", type=Path, default=Path("results/calm-ablation.md"))
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:  # seed-major, so a stopped run has every variant at the first seeds
        for label, switches in VARIANTS.items():
            rows.append(run_one(label, switches, seed, args))
            write_table(rows, args)  # after every run, so a stopped run keeps what it measured


def mean_sd(values: list) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "—"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_table(rows: list, args) -> None:
    lines = ["| variant | seeds | SRCC | PLCC | SRCC per seed | training s (mean) |", "|---|---|---|---|---|---|"]
    for label in VARIANTS:
        mine = [r for r in rows if r["variant"] == label]
        if mine:
            per_seed = ", ".join(f"{r['srcc']:.3f}" for r in mine)
            lines.append(
                f"| {label} | {len(mine)} | {mean_sd([r['srcc'] for r in mine])} | {mean_sd([r['plcc'] for r in mine])}"
                f" | {per_seed} | {statistics.mean(r['seconds'] for r in mine):.0f} |"
            )
    n = "/".join(str(v) for v in sorted({r["n"] for r in rows}))
    text = (
        f"CALM ablation on tiny-ava-score (n = {n} test images), small config (EfficientNet-Lite0 +"
        f" SmolLM2-135M-Instruct), stages align, pretrain, score ('no SSL': pretrain on image-text pairs only; align runs in every variant), epochs x {args.epochs_scale:g}; SRCC and PLCC as mean ± sd"
        f" over seeds; {len(rows)} of {len(VARIANTS) * len(args.seeds)} runs measured."
        " Synthetic labels: this checks the recipe, not aesthetic skill.\n\n" + "\n".join(lines) + "\n"
    )
    print(text)
    args.table.write_text(text)
    (args.output / "ablation.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
