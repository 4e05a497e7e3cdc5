"""What the commands print while they work: one stderr console and rich progress bars."""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# No markup: names, paths, reasons and install hints ("pip install 'aesbench[train]'") print as they are.
console = Console(stderr=True, markup=False)


def progress_bars(quiet: bool):
    """A rich Progress (disabled when quiet) and a `track(iterable, total, description)` that drives it."""
    if quiet:  # also silences Hugging Face's own bars ("Loading weights"), read when transformers is imported
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )

    def track(iterable, total, description):
        return progress.track(iterable, total=total, description=description)

    return progress, track
