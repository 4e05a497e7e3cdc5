"""A finished run read back from its folder: what `aesbench plot` and `aesbench compare` work from.

results.json gives the metrics, the task definition as run and the per-item details a family keeps
(comment: per-item caption scores; suggest: the judge's verdicts; PIAA: per-person SRCC);
predictions.jsonl gives the model's outputs. Labels a family does not keep in results.json (MOS,
vote distributions, attribute scores, reference captions) are read from the task's dataset, rebuilt
from the definition recorded in results.json, and checked against the sha256 of the label files the
run recorded: a run is never plotted or compared against other labels than those it was scored on.
No model runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .datasets import Item, read_dataset
from .errors import AesbenchError
from .families import FAMILIES, get_family
from .families.piaa import PIAA_COLUMNS
from .images import Preprocessing
from .provenance import sha256_file
from .runs import PREDICTIONS, RESULTS, load_results
from .store import read_predictions
from .task import Task, builtin_tasks


@dataclass
class Run:
    folder: Path
    results: dict  # as load_results checks it
    lines: dict[str, dict]  # predictions by id (a model run's header line is not one)

    @property
    def family(self) -> str:
        return self.results.get("family") or self.results["protocol"].get("family", "")

    @property
    def label(self) -> str:
        return f"{self.results['task']} · {self.results['model']}"


def read_run(folder: Path) -> Run:
    """A run folder (or its results.json); one line when it holds no results or predictions."""
    folder = Path(folder)
    if folder.name == RESULTS and folder.is_file():
        folder = folder.parent
    if not (folder / RESULTS).is_file():
        raise AesbenchError(f"{folder} holds no {RESULTS}: give a run folder (the --output of `aesbench eval`)")
    (results,) = load_results([folder / RESULTS])
    if not (folder / PREDICTIONS).is_file():
        raise AesbenchError(f"{folder} holds no {PREDICTIONS}: the run's predictions are needed as well as its results")
    lines, _, _ = read_predictions(folder / PREDICTIONS)  # the run's header line (store.py) is not a prediction
    return Run(folder, results, lines)


def run_folders(paths: list[Path]) -> list[Path]:
    """Each path that is a run folder, else every run folder under it."""
    found = []
    for path in map(Path, paths):
        if (path / RESULTS).is_file() or path.name == RESULTS:
            found.append(path)
        elif path.is_dir() and (below := sorted(p.parent for p in path.rglob(RESULTS))):
            found += below
        else:
            raise AesbenchError(f"{path} holds no {RESULTS}: give run folders or a folder of them")
    return found


def run_task(results: dict, data_root: Path | None = None) -> Task:
    """The task as the run recorded it. Its dataset root: --data-root, else the root the run used when
    that folder is here, else the task's own (a built-in task's embedded data)."""
    p = results["protocol"]
    prov = results.get("provenance", {})
    builtin = builtin_tasks()
    path = builtin[results["task"]] if results["task"] in builtin else Path(str(prov.get("task_file", ".")))
    family = p.get("family")
    if family not in FAMILIES or not isinstance(p.get("dataset"), dict):
        raise AesbenchError(f"the results of {results['task']!r} record no usable task definition (family and dataset)")
    task = Task(
        name=results["task"],
        family=family,
        dataset=p["dataset"],
        path=path,
        version=p.get("version", 1),
        preprocessing=Preprocessing.from_dict(p.get("preprocessing")),
        prompt=p.get("prompt"),
        metrics=list(p.get("metrics") or []),
        notes=p.get("notes") or {},
        protocol=get_family(family).Protocol.from_record(p.get("protocol") or {}),
    )
    recorded_root = prov.get("data_root")
    if data_root is None and recorded_root and Path(recorded_root).is_dir():
        data_root = Path(recorded_root)
    task.resolve_root(data_root)
    return task


def read_labels(task: Task) -> tuple[dict[str, Item], set[str]]:
    """The task's items by id, in the dataset's order, and the sha256 of the label files they were read from."""
    data = read_dataset(task)
    return data.by_id(), {sha256_file(p) for p in data.label_files}


def labels(run: Run, data_root: Path | None = None, read=read_labels) -> dict[str, Item]:
    """The task's items by id, in the dataset's order, from the very label files the run was scored on.
    `read` reads them (read_labels; compare passes one that reads each dataset root once for many runs)."""
    task = run_task(run.results, data_root)
    items, found = read(task)
    recorded = set((run.results["provenance"].get("label_files") or {}).values())
    if recorded and found != recorded:
        raise AesbenchError(
            f"the label files of {task.name!r} under {task.data_root} are not those {run.folder} was"
            " scored on (their sha256 differ); give --data-root with the run's dataset"
        )
    return items


OLD_PIAA_NAMES = {"srcc": "piaa_srcc", "srcc_generic": "piaa_srcc_generic"}  # results.json before per-person ΔSRCC


def per_person(results: dict) -> dict[str, dict[str, dict]]:
    """details.per_worker of a PIAA run, k<K> -> person -> {column: value} under the metric names
    (PIAA_COLUMNS); an older results.json wrote `srcc` and `srcc_generic` and no per-person ΔSRCC,
    so that column is absent there."""
    table = (results.get("details") or {}).get("per_worker") or {}
    return {
        k: {
            w: {OLD_PIAA_NAMES.get(c, c): v for c, v in row.items() if OLD_PIAA_NAMES.get(c, c) in PIAA_COLUMNS}
            for w, row in people.items()
        }
        for k, people in table.items()
    }
