"""Runs: an append-only predictions file that survives kill -9, results records with provenance.

predictions.jsonl gets one line per finished item, written and fsync'ed a batch at a time. On
resume a torn last line (the process died mid-write) is cut off, finished ids are not recomputed
and no id is written twice. run.json pins what the run is (task, model, seed); resuming into a
folder that holds a different run is refused rather than mixing the two.

Under a launcher (aesbench.distributed) the work not yet recorded is split by position across the
processes; each appends to its own predictions.rank{R}.jsonl the same way, and at the end rank 0
folds those lines into predictions.jsonl and alone scores them. Leftover shard files (an
interrupted multi-process run, any number of processes) are folded in first, so nothing recorded is
redone or written twice, whatever the number of processes now.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from . import distributed, provenance
from .adapter import Model, require
from .datasets import Dataset, read_dataset
from .errors import AesbenchError
from .pipeline import identity_track
from .provenance import sha256_file
from .store import (
    HEADER_KEY,
    MemoryStore,
    run_lock,
    PredictionStore,
    ShardStore,
    read_predictions,
    write_json,
    write_text,
)
from .task import Task
from .values import is_number

PREDICTIONS, RESULTS, RUN = "predictions.jsonl", "results.json", "run.json"
SHARD, SHARDS = "predictions.rank{}.jsonl", "predictions.rank*.jsonl"  # one per process of a multi-process run


def run_provenance(
    task: Task,
    data: Dataset,
    model_desc: dict,
    seed: int,
    batch_size: int | None,
    started: float,
    ended: float,
    processes: int = 1,
) -> dict:
    return provenance.build(
        started,
        ended,
        ("torch", "transformers", "pycocoevalcap"),
        {
            "device": model_desc.get("device", "cpu"),
            "task_file": str(task.path),
            "task_sha256": task.sha256(),
            "label_files": {str(p): sha256_file(p) for p in data.label_files},
            "data_root": str(task.data_root),
            "model": model_desc,
            "seed": seed,
            "batch_size": batch_size,
            "processes": processes,
        },
    )


def _pin_run(output: Path, identity: dict) -> dict:
    """Write run.json, or check that the folder's is this run's; return the identity. A folder with
    predictions or results but no valid run.json is refused: what made them is unknown. Called
    under run_lock, so two runs cannot both pass this check."""
    run_file = output / RUN
    if run_file.exists() or run_file.is_symlink():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if not isinstance(previous, dict):
            raise AesbenchError(
                f"{run_file} is not a valid run record (empty, truncated or not a JSON object), so"
                " what the folder holds cannot be checked; choose another --output or move the"
                " folder away"
            )
        if previous != identity:
            diff = next(k for k in sorted(set(previous) | set(identity)) if previous.get(k) != identity.get(k))
            raise AesbenchError(
                f"{output} holds a different run ({diff}: {previous.get(diff)!r}, now {identity.get(diff)!r});"
                " choose another --output or delete that folder"
            )
    else:
        # (shard files need no run.json: each starts with its run's identity, checked when folded in)
        held = [p.name for p in (output / PREDICTIONS, output / RESULTS) if p.exists() or p.is_symlink()]
        if held:
            raise AesbenchError(
                f"{output} holds {held[0]} but no run.json, so what made it is unknown; choose another"
                " --output or move the folder away"
            )
        write_json(run_file, identity)
    return identity


def _fold_shards(output: Path, shards: list[Path], header: dict) -> PredictionStore | None:
    """Move shard lines into predictions.jsonl; return that store on rank 0. Each rank sends rank 0
    the lines of the shard files it sees (the folder need not be shared), rank 0 appends those it
    lacks, and only then do the files go: a kill at any point loses nothing."""
    lines: dict[str, dict] = {}
    for path in shards:
        for item_id, line in PredictionStore(path, header, read_only=True).lines.items():
            lines.setdefault(item_id, line)
    gathered = distributed.gather(list(lines.values()))
    store = None
    if distributed.rank() == 0:
        store = PredictionStore(output / PREDICTIONS, header)
        store.write([line for part in gathered for line in part])
    distributed.barrier()
    for path in shards:
        path.unlink(missing_ok=True)
    distributed.barrier()  # no rank starts a new shard file while another may still remove an old one
    return store


def _predict(
    model: Model, task: Task, data: Dataset, output: Path, header: dict, batch_size: int, track: Callable
) -> tuple[dict[str, dict] | None, int]:
    """Record what is missing, this process's share of it; return all lines (None off rank 0) and
    how many were recorded before."""
    rank, world = distributed.rank(), distributed.world_size()
    store = _fold_shards(output, sorted(output.glob(SHARDS)), header)
    recorded = set(distributed.broadcast(list(store.lines) if store else None))
    family = task.family_module
    mine = family.shard(task, data, recorded, rank, world)
    if world == 1:
        family.predict(model, task, mine, store, batch_size, track)
        return store.lines, len(recorded)
    shard = output / SHARD.format(rank)
    family.predict(model, task, mine, ShardStore(shard, header, recorded), batch_size, track)
    store = _fold_shards(output, [shard], header)
    return (store.lines if store else None), len(recorded)


def evaluate(
    task: Task,
    output: Path | None,
    model: Model | None = None,
    model_name: str | None = None,
    predictions: Path | None = None,
    seed: int = 0,
    batch_size: int = 16,
    limit: int | None = None,
    data_root: Path | None = None,
    track: Callable = identity_track,
    plots: bool = False,
) -> dict | None:
    """Run (or resume) a model on a task, or score a predictions file; write results.json; return it.
    Under a launcher every process predicts its share and rank 0 alone scores: the others get None.
    The run folder is locked (run_lock) from the run check to results.json and, with `plots` (on in the
    CLI and the API), the run's plots drawn from it into OUTPUT/plots/. With no `output` the run is held
    in memory (one process) and nothing is written or drawn."""
    with contextlib.ExitStack() as held:
        results = _evaluate(
            task, output, model, model_name, predictions, seed, batch_size, limit, data_root, track, held
        )
        if plots and output is not None and results is not None:
            from .plots import draw  # plots.py reads the run back through rundata.py, which imports this module

            draw(Path(output), data_root)
        return results


def _refuse_overwriting_inputs(output: Path, inputs: list[Path]) -> None:
    """One line when a file this run writes (predictions.jsonl, results.json, run.json) is one of its
    inputs (the predictions file, the task, a label file): an input is never written to."""
    for name in (PREDICTIONS, RESULTS, RUN, Path(RESULTS).with_suffix(".tmp").name, Path(RUN).with_suffix(".tmp").name):
        target = output / name
        for source in inputs:
            try:
                same = target.exists() and Path(source).exists() and os.path.samefile(target, source)
            except OSError:
                same = False
            if same:
                raise AesbenchError(
                    f"--output {output} would overwrite {source} ({name}), an input of this run;"
                    " choose another --output"
                )


def _evaluate(
    task, output, model, model_name, predictions, seed, batch_size, limit, data_root, track, held: contextlib.ExitStack
) -> dict | None:
    started = time.time()
    distributed.start()  # the CLI has joined already; a script run under a launcher may not have
    if model is None and distributed.rank() != 0:
        return None  # scoring a file is one process's work
    if model is not None:
        require(model, task.capability, task.name)
    if output is None and distributed.world_size() > 1:
        raise AesbenchError("an evaluation held in memory runs in one process: give an output folder under a launcher")
    family = task.family_module
    family.prepare(task)  # what it needs besides the model (Java, a judge's folder): before the model runs
    task.resolve_root(data_root)
    data = read_dataset(task)
    if limit is not None:
        before = {it.id for it in data.items} | set(data.groups)
        data.items = data.items[:limit]
        if data.groups:
            data.groups = dict(list(data.groups.items())[:limit])
            data.items = [it for items in data.groups.values() for it in items]
        dropped = before - {it.id for it in data.items} - set(data.groups)
        data.skipped = [s for s in data.skipped if s["id"] not in dropped]
    if output is None:
        lines, extra_skips, resumed, desc, scoring = _in_memory(
            task, data, model, model_name, predictions, batch_size, track
        )
    else:
        output = Path(output)
        _refuse_overwriting_inputs(
            output, [task.path, *data.label_files, *([Path(predictions)] if predictions else [])]
        )
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file in the way, a read-only parent
            raise AesbenchError(f"cannot create run folder {output}: {e.strerror or type(e).__name__}") from None

        def lock_and_pin(identity: dict) -> dict:
            held.enter_context(run_lock(output))
            return _pin_run(output, identity)

        if model is not None:
            desc = model.describe()
            own = {"task": task.name, "task_sha256": task.sha256(), "model": desc, "seed": seed, "limit": limit}
            # rank 0 locks and pins; its identity everywhere: a device name may differ per rank
            identity = distributed.on_main(lambda: lock_and_pin(own))
            scoring = family.scoring(model, task)
            lines, resumed = _predict(
                model, task, data, output, {HEADER_KEY: 1, **identity, "scoring": scoring}, batch_size, track
            )
            if lines is None:
                return None
            extra_skips = []
        else:
            lines, extra_skips, header = read_predictions(predictions)
            desc, scoring = _file_model(predictions, model_name, header)
            lock_and_pin({"task": task.name, "task_sha256": task.sha256(), "model": desc, "seed": seed, "limit": limit})
            resumed = 0
            kept = ([header] if header else []) + list(lines.values())
            write_text(output / PREDICTIONS, "".join(json.dumps(line) + "\n" for line in kept))
    summary = family.score(task, data, lines, scoring)
    ended = time.time()
    results = {
        "task": task.name,
        "task_version": task.version,
        "family": task.family,
        "model": desc["name"],
        "n": summary["n"],
        "metrics": summary["metrics"],
        "ci95": summary["ci95"],
        "undefined": summary["undefined"],
        "skipped": extra_skips + summary["skipped"],
        "protocol": task.to_dict(),
        "bootstrap": dict(task.protocol.bootstrap),
        "resumed_from": resumed,
        "provenance": run_provenance(
            task,
            data,
            desc,
            seed,
            batch_size if model else None,
            started,
            ended,
            distributed.world_size() if model else 1,
        ),
        "details": summary["details"],
    }
    if model is not None and model.feature_cache is not None:  # this process's hits and misses
        results["provenance"]["feature_cache"] = model.feature_cache.describe()
    if output is not None:
        write_json(output / RESULTS, results)
    return results


def _file_model(predictions: Path, model_name: str | None, header: dict | None) -> tuple[dict, dict]:
    """The model behind a predictions file and what scoring needs from it: the run header's (store.py)
    when the file has one, so a run's own file scores as the run did; else nothing is assumed."""
    source = {"predictions_file": str(predictions), "predictions_sha256": sha256_file(predictions)}
    if header is None:
        return {"name": model_name or Path(predictions).stem, **source}, {}
    return {**header["model"], "name": model_name or header["model"]["name"], **source}, header.get("scoring", {})


def _in_memory(
    task: Task,
    data: Dataset,
    model: Model | None,
    model_name: str | None,
    predictions: Path | None,
    batch_size: int,
    track: Callable,
) -> tuple[dict, list, int, dict, dict]:
    """(lines, extra skips, resumed, model description, scoring) of an evaluation that writes nothing."""
    if model is None:
        lines, extra_skips, header = read_predictions(predictions)
        desc, scoring = _file_model(predictions, model_name, header)
        return lines, extra_skips, 0, desc, scoring
    store = MemoryStore()
    task.family_module.predict(model, task, data, store, batch_size, track)
    return store.lines, [], 0, model.describe(), task.family_module.scoring(model, task)


def check_results(path: Path, record) -> dict:
    """A results record as the leaderboard reads it, or one line naming the file and the field that is
    wrong (never the file's content). A null metric is an undefined one (results.json writes a
    non-finite number as null); a null protocol or provenance is an empty one."""

    def bad(what: str):
        raise AesbenchError(f"{path} is not an aesbench results record: {what}")

    if not isinstance(record, dict):
        bad("not a JSON object")
    for key in ("task", "model"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            bad(f"{key} is missing or not text")
    if not isinstance(record.get("metrics"), dict):
        bad("metrics is missing or not a mapping of name to number")
    for name, value in record["metrics"].items():
        if value is not None and not is_number(value):
            bad(f"metric {name!r} is not a number")
    ci = record.get("ci95") or {}
    if not isinstance(ci, dict):
        bad("ci95 is not a mapping of name to [low, high]")
    for name, pair in ci.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(map(is_number, pair))):
            bad(f"ci95 of {name!r} is not [low, high]")
    n = record.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        bad("n is not a whole number")
    clean = dict(record)
    clean["metrics"] = {k: float(v) for k, v in record["metrics"].items() if v is not None}
    clean["ci95"] = {k: v for k, v in ci.items() if k in clean["metrics"]}
    for key in ("protocol", "provenance"):
        if not isinstance(record.get(key) or {}, dict):
            bad(f"{key} is not a mapping")
        clean[key] = record.get(key) or {}
    protocol = dict(clean["protocol"])
    if not isinstance(protocol.get("protocol") or {}, dict):
        bad("protocol.protocol is not a mapping")
    protocol["protocol"] = protocol.get("protocol") or {}
    attributes = protocol["protocol"].get("attributes") or []
    metrics = protocol.get("metrics") or []
    if (
        not isinstance(attributes, list)
        or not all(isinstance(a, str) for a in attributes)
        or not isinstance(metrics, list)
        or not all(isinstance(m, str) for m in metrics)
    ):
        bad("protocol.metrics and protocol.protocol.attributes must be lists of names")
    clean["protocol"] = protocol
    if not isinstance(clean["provenance"].get("git") or {}, dict):
        bad("provenance.git is not a mapping")
    return clean


def load_results(paths: list[Path]) -> list[dict]:
    """Every results.json under the given folders (or files), checked (check_results)."""
    found = []
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob(RESULTS))
        for f in files:
            if not f.is_file():
                raise AesbenchError(f"{f} is not a regular file")
            try:
                record = json.loads(f.read_text(encoding="utf-8"))
            except UnicodeDecodeError as e:
                raise AesbenchError(f"{f} is not UTF-8 text (byte {e.start})") from None
            except json.JSONDecodeError as e:
                raise AesbenchError(f"{f} is not valid JSON ({e})") from None
            except OSError as e:
                raise AesbenchError(f"cannot read {f}: {e.strerror or type(e).__name__}") from None
            record = check_results(f, record)
            record["_path"] = str(f)
            found.append(record)
    return found
