"""`aesbench train nima` (NIMA trains in seconds on cached backbone features; see baselines/nima.py)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import distributed
from ..baselines.nima import TrainConfig, train_nima
from ..errors import AesbenchError
from ..progress import console, progress_bars
from ..task import load_task
from . import RECIPES


def _int_list(value: str | None, option: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers such as 5,11,17, got {value!r}", param_hint=option
        ) from None


@RECIPES.register("nima")
@click.command("nima")
@click.option("--task", "task_name", required=True, help="Score task name or YAML; trains on its training split.")
@click.option("--output", type=click.Path(path_type=Path), required=True, help="Checkpoint folder to create.")
@click.option(
    "--backbone",
    default=TrainConfig.backbone,
    show_default=True,
    help="efficientnet-lite0, or a local Hugging Face vision model folder.",
)
@click.option(
    "--layers",
    callback=lambda ctx, param, value: _int_list(value, "--layers"),
    help="Backbone layers averaged and concatenated before the head, e.g. 17 (the paper's last layer);"
    " default: 5,11,17 for efficientnet-lite0, the last layer otherwise.",
)
@click.option("--epochs", default=TrainConfig.epochs, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--lr",
    default=TrainConfig.lr,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Head learning rate (backbone: lr/10).",
)
@click.option("--batch-size", default=TrainConfig.batch_size, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=TrainConfig.seed, show_default=True)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop training after this long (feature caching not counted).",
)
@click.option(
    "--freeze-backbone/--no-freeze-backbone",
    default=TrainConfig.freeze_backbone,
    show_default=True,
    help="Train the head on cached backbone features (fast), or fine-tune the backbone too.",
)
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset root for real-dataset tasks.")
@click.option("--quiet", is_flag=True, help="No progress bars or summary.")
def train_nima_cmd(
    task_name, output, backbone, layers, epochs, lr, batch_size, seed, max_minutes, freeze_backbone, data_root, quiet
):
    """NIMA: EMD loss against vote distributions, ImageNet backbone (see baselines/nima.py)."""
    if distributed.world_size() > 1:
        raise AesbenchError(
            "`train nima` runs in one process (its head trains in seconds on cached features):"
            " run it without accelerate launch or torchrun"
        )
    settings = TrainConfig(
        backbone=backbone,
        layers=layers,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        max_minutes=max_minutes,
        freeze_backbone=freeze_backbone,
    )
    progress, track = progress_bars(quiet)
    bars = {}

    def on_step(stage, done, total, loss):
        if not bars:
            bars["train"] = progress.add_task("training", total=total)
        progress.update(bars["train"], completed=done, description=f"training · loss {loss:.4f}")

    with progress:
        _, record = train_nima(
            load_task(task_name), output, settings, data_root=data_root, track=track, on_step=on_step
        )
    if not quiet:
        console.print(
            f"trained on {record['n_train']} images, {record['epochs_done']} epochs ({record['stopped']}),"
            f" final loss {record['final_loss']:.4f}; checkpoint: {output} (use --model {output})",
            highlight=False,
            soft_wrap=True,
        )
