"""Tasks are data: a YAML file with the dataset, preprocessing, prompt, metrics and protocol choices.

Built-in tasks ship in `aesbench.tasks` (the repository's tasks/ folder); a user's own task is a
path to a YAML file, with its dataset paths relative to that file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path

import yaml

from .datasets import FORMATS
from .errors import AesbenchError
from .families import FAMILIES, Family, Protocol, get_family
from .families.base import is_int
from .images import Preprocessing
from .options import refuse_command_line_only
from .provenance import sha256_file
from .registry import nearest

TASK_GROUP = "aesbench.tasks"  # entry points naming packages whose folders hold task YAMLs


def family_formats(family: str) -> list[str]:
    """The dataset formats whose label type is the one the family scores against."""
    label = get_family(family).label
    return [name for name in FORMATS.names() if FORMATS.get(name).label == label]


# A task's name names folders (suite writes OUTPUT/<task>/<model>/): letters, digits, '.', '_', '-', not
# starting with '.' or '-', so it can never be '..', absolute or hold a separator.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_TASK_BYTES = 1 << 20  # a task file is a few hundred bytes; more is not a task


def check_safe_name(name, what: str) -> str:
    """`name` when it is safe as one folder name, else one line saying the rule."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise AesbenchError(
            f"{what} {name!r} cannot name a folder: use letters, digits, '.', '_' and '-'"
            " (128 at most), starting with a letter or digit"
        )
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

# AVA-Captions: which text of each sentence is a reference (`tokens` is a word list, joined by spaces).
REFERENCE_FIELDS = ("raw", "clean", "tokens")

# PCCD as released: the authors' raw.json with images/<title>, or Aestheval's guru_{train,validation,test}.json
# with images/full/<title>. The folder each layout implies is the default for dataset.images.
PCCD_LAYOUTS = {"raw": "images", "guru": "images/full"}


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
    protocol: Protocol = field(default_factory=Protocol)  # the family's protocol dataclass, defaults resolved
    notes: dict = field(default_factory=dict)  # choices fixed by the code, recorded with the results
    data_root: Path | None = None  # set by resolve_root

    @property
    def family_module(self) -> Family:
        return get_family(self.family)

    @property
    def capability(self) -> str:
        return self.family_module.capability

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
            "protocol": self.protocol.to_dict(),
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
            raise AesbenchError(
                f"dataset root {root} for task {self.name!r} is not a folder (it should hold {self.expected_files()})"
            )
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
            raise AesbenchError(
                f"task {self.name!r}: dataset.{key} must map each split to its file, e.g. {{train: train.csv, test: test.csv}}"
            )
        if self.split not in files:
            raise AesbenchError(
                f"task {self.name!r}: split {self.split!r} is not in dataset.{key} (it has {', '.join(map(str, files))})"
            )
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


def _yaml_files(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p for p in found if p.suffix in (".yaml", ".yml") and p.is_file())


def builtin_tasks() -> dict[str, Path]:
    return {p.stem: p for p in sorted(builtin_dir().glob("*.yaml"))}


def task_index(include: tuple | list = ()) -> dict[str, Path]:
    """Every task by name (its file's stem): the built-in ones, those of installed packages (entry-point
    group aesbench.tasks: a package whose folder holds task YAMLs) and those under each `include` folder
    (searched recursively, as lm-eval's --include_path). A name given twice is refused, never shadowed."""
    tasks = builtin_tasks()
    sources = {name: "aesbench" for name in tasks}
    folders = []
    for point in metadata.entry_points(group=TASK_GROUP):
        try:
            folders.append((Path(str(resources.files(point.value))), f"package {point.value}", False))
        except (ImportError, TypeError) as e:
            raise AesbenchError(f"task plug-in {point.name!r} ({point.value}) cannot be read: {e}") from None
    for folder in include:
        folder = Path(folder)
        if not folder.is_dir():
            raise AesbenchError(f"--include-path {folder} is not a folder")
        folders.append((folder, str(folder), True))
    for folder, source, recursive in folders:
        for path in _yaml_files(folder, recursive):
            if path.stem in tasks and tasks[path.stem] != path:
                raise AesbenchError(
                    f"task {path.stem!r} is defined twice: {path} ({source}) and {tasks[path.stem]}"
                    f" ({sources[path.stem]}); rename one"
                )
            tasks[path.stem], sources[path.stem] = path, source
    return tasks


def load_task(name_or_path: str, include: tuple | list = ()) -> Task:
    """A task by name (built-in, a plug-in package's or under an `include` folder) or a YAML path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise AesbenchError(f"task file {path} not found")
    else:
        tasks = task_index(include)
        if name_or_path not in tasks:
            raise AesbenchError(
                f"unknown task {name_or_path!r}{nearest(name_or_path, tasks)} (`aesbench tasks` lists them; a YAML path also works)"
            )
        path = tasks[name_or_path]
    return parse_task(path)


def _check_dataset(path: Path, family: str, dataset: dict) -> None:
    """The dataset block: a format this family reads, only the keys that format's reader reads, and values of the
    right type (text; split also a whole number; split_files / split_lists a {split: file} mapping)."""
    fmt = dataset["format"]
    formats = FORMATS.names()
    if not isinstance(fmt, str) or fmt not in formats:
        hint = nearest(fmt, formats) if isinstance(fmt, str) else ""
        raise AesbenchError(f"{path}: unknown dataset format {fmt!r}{hint}; known: {', '.join(formats)}")
    reader, scored = FORMATS.get(fmt), get_family(family).label
    if reader.label != scored:
        raise AesbenchError(
            f"{path}: a {family} task cannot read dataset format {fmt!r}: it gives {reader.label} labels,"
            f" {family} scores against {scored} labels; {family} reads {', '.join(family_formats(family))}"
        )
    unknown = sorted(set(dataset) - reader.keys, key=str)
    if unknown:
        hint = nearest(str(unknown[0]), reader.keys)
        raise AesbenchError(
            f"{path}: unknown dataset key {unknown[0]!r} for format {fmt}{hint}"
            f" (known: {', '.join(sorted(reader.keys))})"
        )
    for key, value in dataset.items():
        if key in SPLIT_MAPS:
            ok = (
                isinstance(value, dict)
                and value
                and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            )
            expected = "a mapping of each split to its file, e.g. {train: train.csv, test: test.csv}"
        elif key == "split":
            ok, expected = isinstance(value, str) or is_int(value), "a split name such as test"
        elif key == "layout" and fmt == "pccd":
            ok, expected = value in PCCD_LAYOUTS, " or ".join(PCCD_LAYOUTS)
        elif key == "image_suffix":
            ok, expected = isinstance(value, str), 'text ("" for none)'
        elif key == "reference_field":
            ok, expected = value in REFERENCE_FIELDS, " or ".join(REFERENCE_FIELDS)
        else:
            ok, expected = isinstance(value, str) and value != "", "text"
        if not ok:
            raise AesbenchError(f"{path}: dataset.{key} must be {expected}, not {value!r}")


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
        hint = nearest(family, FAMILIES.names()) if isinstance(family, str) else ""
        raise AesbenchError(f"{path}: family {family!r} is not one of {', '.join(FAMILIES.names())}{hint}")
    kind = get_family(family)
    dataset = data["dataset"]
    if not isinstance(dataset, dict) or "format" not in dataset:
        raise AesbenchError(f"{path}: dataset must be a mapping with a format ({', '.join(FORMATS.names())})")
    known = {
        "name",
        "version",
        "family",
        "description",
        "dataset",
        "preprocessing",
        "prompt",
        "metrics",
        "protocol",
        "notes",
    }
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
    metrics = data.get("metrics") or list(kind.default_metrics)
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise AesbenchError(f"{path}: metrics must be a list of metric names, e.g. [{kind.default_metrics[0]}]")
    for key in ("prompt", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise AesbenchError(f"{path}: {key} must be text, not {type(data[key]).__name__}")
    if not is_int(data.get("version", 1)):
        raise AesbenchError(f"{path}: version must be a whole number, not {data['version']!r}")
    bad = [m for m in metrics if m not in kind.metrics()]
    if bad:
        raise AesbenchError(f"{path}: metric {bad[0]!r} is not a {family} metric{nearest(bad[0], kind.metrics())}")
    for key in ("protocol", "notes", "preprocessing"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise AesbenchError(f"{path}: {key} must be a mapping (key: value), not {type(data[key]).__name__}")
    given = dict(data.get("protocol") or {})
    if "judge" in given:
        given["judge"] = resolve_judge_path(given["judge"], path.resolve().parent)
    protocol = kind.Protocol.from_dict(given, str(path), family)
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
        prompt=data.get("prompt", kind.prompt),
        metrics=list(metrics),
        protocol=protocol,
        notes=dict(data.get("notes") or {}),
    )
