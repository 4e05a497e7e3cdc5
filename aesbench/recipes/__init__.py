"""`aesbench train NAME`: one module per trainable model in this folder.

A recipe module registers its click command in RECIPES and, for a model whose module imports torch,
lists the model by name (`adapter.MODELS.lazy`), so a new trainable model is its model file and its
recipe file. The modules here are light: the training code (torch and all) is imported only when the
command runs. An installed package adds its own recipe (a click command) under the entry-point group
aesbench.recipes.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import click

from .. import distributed
from ..progress import console, progress_bars
from ..registry import Registry


def discover() -> None:
    """Import every recipe module here (each registers its command and lists its model)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


RECIPES = Registry(
    "training recipe", group="aesbench.recipes", hint="`aesbench train --help` lists them", discover=discover
)


def staged_recipe(
    name: str, module: str, config_class: str, train_function: str, default: str, stage_names: str, doc: str
) -> click.Command:
    """Register the command of a recipe trained in stages from a config YAML (CALM, ArtQuant): its config,
    the stages to run, resume; `module` (the training code) is imported only when the command runs."""

    @click.command(name, help=doc)
    @click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        help=f"Training config YAML (model: and train:) or a shipped config's name; default: {default}.",
    )
    @click.option(
        "--output",
        type=click.Path(path_type=Path),
        required=True,
        help="Checkpoint folder (resumed if it holds a stopped run).",
    )
    @click.option(
        "--stage",
        "stages",
        multiple=True,
        help=f"Run only these stages ({stage_names}; repeatable); default: the config's.",
    )
    @click.option("--seed", type=int, help="Overrides the config's seed.")
    @click.option(
        "--max-minutes",
        type=click.FloatRange(min=0, min_open=True),
        help="Stop after this long; run again to resume.",
    )
    @click.option("--data-root", type=click.Path(path_type=Path), help="Dataset root for real-dataset tasks.")
    @click.option("--quiet", is_flag=True, help="No progress bars or summary.")
    def command(config_file, output, stages, seed, max_minutes, data_root, quiet):
        recipe = importlib.import_module(module)
        config = getattr(recipe, config_class).load(config_file)
        if seed is not None:
            config.seed = seed
        if max_minutes is not None:
            config.max_minutes = max_minutes
        run = getattr(recipe, train_function)
        _train_in_stages(
            lambda on_step: run(config, output, data_root=data_root, stages=list(stages) or None, on_step=on_step),
            output,
            quiet,
        )

    return RECIPES.register(name, command)


def _train_in_stages(run, output, quiet):
    """Progress bars per stage and a summary line per stage."""
    quiet = quiet or distributed.rank() != 0  # under accelerate launch rank 0 reports
    progress, _ = progress_bars(quiet)
    bars = {}

    def on_step(stage, done, total, loss):
        if stage not in bars:
            bars[stage] = progress.add_task(stage, total=total)
        progress.update(bars[stage], completed=done, description=f"{stage} · loss {loss:.4f}")

    with progress:
        _, record = run(on_step)
    if quiet:
        return
    for s in record["stages"]:
        line = (
            f"{s['stage']}: skipped ({s['skipped']})"
            if "skipped" in s
            else f"{s['stage']}: {s['steps']}/{s['total_steps']} steps, final loss {s['final_loss']},"
            f" {s['seconds']:.0f} s ({s['stopped']})"
        )
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"checkpoint: {output} (use --model {output})", highlight=False, soft_wrap=True)
