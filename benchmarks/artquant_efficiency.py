"""ArtQuant's training-efficiency claim at tiny scale: SRCC on tiny-art-score's held-out images
against training epochs, for ArtQuant with descriptions, the same model on scores alone, and NIMA.

Each ArtQuant variant runs the full recipe (lm, then instruct for --epochs epochs) and is scored on
the test split after every instruct epoch; NIMA (frozen EfficientNet-Lite0, the same encoder) is
trained afresh for 1..--epochs epochs. Writes results/artquant-efficiency.{md,json,png}.

    python benchmarks/artquant_efficiency.py [--epochs 8] [--output runs/artquant-efficiency]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from aesbench.baselines.nima import TrainConfig, train_nima
from aesbench.models.artquant_train import ArtQuantTrainConfig, train_artquant
from aesbench.runs import evaluate
from aesbench.task import load_task

TASK = "tiny-art-score"


SEEN_N: set[int] = set()


def srcc_of(model, output: Path) -> float:
    results = evaluate(load_task(TASK), output, model=model)
    SEEN_N.add(results["n"])
    return results["metrics"].get("srcc", float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--output", type=Path, default=Path("runs/artquant-efficiency"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    curves, seconds = {}, {}
    for label, descriptions in (("ArtQuant (descriptions + scores)", True), ("same model, scores alone", False)):
        config = ArtQuantTrainConfig(descriptions=descriptions)
        config.schedules["instruct"] = dataclasses.replace(config.schedules["instruct"], epochs=args.epochs)
        folder = args.output / ("descriptions" if descriptions else "scores-only")
        curve = []

        def on_epoch(stage, epoch, model, folder=folder, curve=curve):
            if stage == "instruct":
                curve.append(srcc_of(model, folder / f"eval-epoch{epoch}"))

        start = time.monotonic()
        train_artquant(config, folder / "ckpt", on_epoch=on_epoch)
        curves[label], seconds[label] = curve, round(time.monotonic() - start)
    curve, start = [], time.monotonic()
    for epochs in range(1, args.epochs + 1):
        folder = args.output / f"nima-{epochs}"
        model, _ = train_nima(load_task(TASK), folder / "ckpt", TrainConfig(epochs=epochs))
        curve.append(srcc_of(model, folder / "eval"))
    curves["NIMA (EfficientNet-Lite0, EMD)"], seconds["NIMA (EfficientNet-Lite0, EMD)"] = (
        curve,
        round(time.monotonic() - start),
    )

    n = "/".join(str(v) for v in sorted(SEEN_N))  # one value unless an image failed to decode somewhere
    header = "| model | " + " | ".join(f"ep {e}" for e in range(1, args.epochs + 1)) + " | wall s |"
    lines = [header, "|---" * (args.epochs + 2) + "|"]
    lines += [
        f"| {label} | " + " | ".join(f"{v:.3f}" for v in curve) + f" | {seconds[label]} |"
        for label, curve in curves.items()
    ]
    text = (
        f"SRCC on {TASK} held-out images (n = {n}) after each training epoch; small configs, seed 0, CPU.\n"
        "Synthetic labels (tasks/data/README.md): this measures the machinery and the recipe's behaviour, not real aesthetic skill.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "artquant-efficiency.md").write_text(text)
    (args.results / "artquant-efficiency.json").write_text(
        json.dumps({"task": TASK, "n": n, "srcc": curves, "seconds": seconds}, indent=2) + "\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=label)
    ax.set_xlabel("training epochs")
    ax.set_ylabel(f"SRCC, {TASK} test")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.results / "artquant-efficiency.png")


if __name__ == "__main__":
    main()
