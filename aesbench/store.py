"""Prediction stores: an append-only JSON-lines file that survives kill -9 (records fsync'ed a batch at a
time, a torn last line cut off on resume, no id written twice), its per-process shard, an in-memory
store for runs that write nothing, and the reader for prediction files made elsewhere.

A run's predictions.jsonl starts with a header line, `{"aesbench_run": 1, ...}`: what the run is (task,
model and its describe(), seed, limit) and what scoring needs from the model (`scoring`: whether its
scores are on the task's scale, the score range it was asked for). Rescoring the file alone therefore
gives the run's own metrics, undefined ones included.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

from .errors import AesbenchError
from .values import is_number

HEADER_KEY = "aesbench_run"
LOCK = ".aesbench.lock"  # held by the run (an evaluation or a training) using the folder (run_lock)


class MemoryStore:
    """Records by id, kept in memory (an evaluation with no output folder)."""

    def __init__(self):
        self.lines: dict[str, dict] = {}

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.lines

    def write(self, lines: list[dict]) -> None:
        for line in lines:
            self.lines.setdefault(line["id"], line)


class PredictionStore(MemoryStore):
    """Records by id, appended and fsync'ed. With a `header`, the file's first line is that object and a
    file whose first line differs holds another run: it is refused, never mixed. `read_only` reads
    the complete lines and never touches the file (another process may be reading it too)."""

    def __init__(self, path: Path, header: dict | None = None, read_only: bool = False):
        super().__init__()
        self.path = Path(path)
        self.header = None if header is None else json.loads(json.dumps(header))  # as it reads back from the file
        if self.path.exists() or self.path.is_symlink():
            if not self.path.is_file():
                raise AesbenchError(f"{self.path} is not a regular file; choose another output")
            self._recover(repair=not read_only)
        if not read_only and header is not None and (not self.path.exists() or self.path.stat().st_size == 0):
            self._append(json.dumps(header) + "\n")

    def _recover(self, repair: bool) -> None:
        raw = self.path.read_bytes()
        good = raw.rfind(b"\n") + 1  # everything after the last newline is a torn write
        lines = raw[:good].splitlines()
        if self.header is not None and raw:
            # Whose file is it? Checked before anything is cut: a file of someone else's is left as it is.
            own = (json.dumps(self.header) + "\n").encode()
            if not lines and not own.startswith(raw):
                raise AesbenchError(
                    f"{self.path} does not start with a header line; choose another output or move the file away"
                )
            if lines:
                self._check_header(lines[0])
        if repair and good < len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(good)
        for n, line in enumerate(lines, start=1):
            if n == 1 and self.header is not None:
                continue
            if line.strip():
                try:
                    record = json.loads(line)
                    self.lines.setdefault(str(record["id"]), record)
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                    raise AesbenchError(
                        f"{self.path} line {n} is not a prediction record; move the file away to start over"
                    ) from None

    def _check_header(self, first: bytes) -> None:
        try:
            found = json.loads(first)
        except (json.JSONDecodeError, UnicodeDecodeError):
            found = None
        if found != self.header:
            if not isinstance(found, dict) or not set(found) & set(self.header):  # someone else's file: not echoed
                raise AesbenchError(
                    f"{self.path} does not start with a header line; choose another output or move the file away"
                )
            diff = next(k for k in sorted(set(found) | set(self.header)) if found.get(k) != self.header.get(k))
            raise AesbenchError(
                f"{self.path} holds a different run ({diff}: {found.get(diff)!r}, now {self.header.get(diff)!r});"
                " choose another output or move the file away"
            )

    def _append(self, text: str) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # disk full, read-only folder: what was fsync'ed before is kept
            raise AesbenchError(f"cannot write {self.path}: {e.strerror or type(e).__name__}") from None

    def write(self, lines: list[dict]) -> None:
        fresh: dict[str, dict] = {}
        for line in lines:
            if line["id"] not in self.lines:
                fresh.setdefault(line["id"], line)
        if not fresh:
            return
        self._append("".join(json.dumps(line, allow_nan=True) + "\n" for line in fresh.values()))
        self.lines.update(fresh)


class ShardStore(PredictionStore):
    """One process's predictions.rank{R}.jsonl: ids already in predictions.jsonl count as recorded, so
    they are neither redone nor written again."""

    def __init__(self, path: Path, header: dict, recorded: set[str]):
        super().__init__(path, header)
        self.recorded = recorded

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.recorded or super().__contains__(item_id)

    def write(self, lines: list[dict]) -> None:
        super().write([line for line in lines if line["id"] not in self.recorded])


def _check_run_header(path: Path, header) -> dict:
    """A prediction file's header as scoring reads it, or one line naming what is wrong (not the content)."""
    model, scoring = header.get("model"), header.get("scoring", {})
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(scoring, dict):
        raise AesbenchError(f"{path} line 1: the run header needs model {{name: ...}} and scoring {{...}} mappings")
    scale, score_range = scoring.get("on_task_scale", True), scoring.get("score_range")
    if not isinstance(scale, bool):
        raise AesbenchError(f"{path} line 1: scoring.on_task_scale must be true or false")
    ok_range = score_range is None or (
        isinstance(score_range, list) and len(score_range) == 2 and all(map(is_number, score_range))
    )
    if not ok_range:
        raise AesbenchError(f"{path} line 1: scoring.score_range must be [low, high]")
    return header


def read_predictions(path: Path) -> tuple[dict[str, dict], list[dict], dict | None]:
    """A predictions JSONL made elsewhere: (lines by id, skips, the run header or None). Bad lines and
    repeated ids become skips, never a crash; a run header (the first line) that is malformed is one line."""
    if not Path(path).is_file():
        raise AesbenchError(f"predictions file {path} not found")
    lines, skipped, header = {}, [], None
    for n, raw in enumerate(Path(path).read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if n == 1 and isinstance(record, dict) and HEADER_KEY in record:
            header = _check_run_header(Path(path), record)
            continue
        try:
            item_id = str(record["id"])
        except (KeyError, TypeError):
            skipped.append(
                {"id": f"{Path(path).name}:{n}", "reason": "malformed line: expected a JSON object with an 'id'"}
            )
            continue
        if item_id in lines:
            skipped.append({"id": item_id, "reason": f"duplicate prediction at line {n}; the first was kept"})
            continue
        lines[item_id] = record
    return lines, skipped, header


def json_safe(obj):
    """NaN and infinities (an undefined per-person SRCC, say) become null: results.json stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def write_text(path: Path, text: str) -> None:
    """Written whole or not at all: a temporary file renamed over `path`; on failure (disk full, a
    read-only folder) the temporary file is removed and the old `path`, if any, is left as it was."""
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise AesbenchError(f"cannot write {path}: {e.strerror or type(e).__name__}") from None


def refuse_foreign_folder(output: Path, marker: str, what: str) -> None:
    """A training writes into `output` only if it is absent, an empty folder (but for the run lock) or a
    folder holding its `marker` file (`what`: one it made, to resume); anything else is one line."""
    if output.exists() and (
        not output.is_dir() or (not (output / marker).is_file() and any(p.name != LOCK for p in output.iterdir()))
    ):
        raise AesbenchError(
            f"output {output} already exists and is not an empty folder (nor {what}); choose another --output"
            " or delete it"
        )


@contextlib.contextmanager
def run_lock(output: Path):
    """Exclusive use of a run folder while a run reads and writes it: a second run into the same
    folder is refused in one line naming the process that holds it (released when that process ends,
    even by kill -9)."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        yield
        return
    try:
        fd = os.open(output / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise AesbenchError(f"cannot use {output} as a run folder: {e.strerror or type(e).__name__}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = "".join(ch for ch in os.pread(fd, 32, 0).decode("ascii", "replace") if ch.isdigit()) or "?"
            raise AesbenchError(
                f"{output} is in use by pid {holder} (another aesbench run); wait for it to end"
                " or choose another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
