"""The Python API: `from aesbench import Model, load_task, load_model, evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .adapter import Model, load_model
from .errors import AesbenchError
from .pipeline import identity_track
from .runs import evaluate as run_evaluation
from .task import Task, load_task


def evaluate(
    task: Task | str,
    model: Model | str | None = None,
    output: str | Path | None = None,
    *,
    predictions: str | Path | None = None,
    model_options: dict | None = None,
    seed: int = 0,
    batch_size: int = 16,
    limit: int | None = None,
    data_root: str | Path | None = None,
    include: tuple | list = (),
    track: Callable = identity_track,
    plots: bool = True,
) -> dict:
    """Evaluate `model` (a Model, or a name, checkpoint folder or plug-in spec as --model takes) or a
    `predictions` file on `task` (a Task, or a name or YAML path); return the results record.

    With `output` the run is written and resumable exactly as `aesbench eval --output` does it, its
    plots drawn into OUTPUT/plots/ unless `plots=False` (as `--no-plots`); without, it runs in memory
    and writes nothing.
    """
    if (model is None) == (predictions is None):
        raise AesbenchError("give exactly one of model and predictions")
    if not isinstance(task, Task):
        task = load_task(str(task), include)
    if model is not None and not isinstance(model, Model):
        model = load_model(str(model), model_options, seed)
    return run_evaluation(
        task,
        None if output is None else Path(output),
        model=model,
        predictions=None if predictions is None else Path(predictions),
        seed=seed,
        batch_size=batch_size,
        limit=limit,
        data_root=None if data_root is None else Path(data_root),
        track=track,
        plots=plots,
    )
