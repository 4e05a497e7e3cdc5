"""The model adapter interface and the model registry.

A model declares its capabilities and implements the matching request methods; a task asks for one
capability only. Models are named by registry name (`handcrafted`), by a checkpoint folder whose
config.json names a registered `model_type`, or from outside the package: `path/to/file.py:Class`,
`package.module:Class`, or a name an installed package declares in the entry-point group `aesbench.models`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .errors import AesbenchError
from .options import keyword_parameters, parse_options, refuse_command_line_only
from .registry import Registry, import_target


@dataclass(frozen=True)
class Request:
    """What a task tells the model besides the images: the instruction, the score scale and the
    attributes it would also like scored (a model may answer {"attributes": {name: value}})."""

    prompt: str | None = None
    score_range: tuple[float, float] = (1.0, 10.0)
    attributes: tuple[str, ...] = ()


class Model:
    """Base adapter. Subclasses set `name` and `capabilities` and implement what they declare.

    score       -> list of {"score": float} (plus "distribution": 10 probabilities with "distribution",
                   and "attributes": {name: float} for any of the request's attributes it scores)
    comment     -> list of str
    suggest     -> list of str (how to improve each image)
    personalize -> a Model with "score", adapted to one person's (image, score) support set
    """

    name: str = ""
    capabilities: frozenset[str] = frozenset()
    on_task_scale: bool = True  # False: scores rank images but are not on the task's scale (acc, MSE undefined)
    feature_cache = None  # a features.FeatureCache once use_feature_cache has set one up

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        raise NotImplementedError

    def comment(self, images: list[Image.Image], request: Request) -> list[str]:
        raise NotImplementedError

    def suggest(self, images: list[Image.Image], request: Request) -> list[str]:
        raise NotImplementedError

    def personalize(self, images: list[Image.Image], scores: list[float], request: Request) -> "Model":
        raise NotImplementedError

    def use_feature_cache(self, root: Path) -> bool:
        """Keep the frozen backbone's outputs in an on-disk FeatureCache under root; False when the
        model has no frozen backbone whose outputs could be reused."""
        return False

    def config(self) -> dict:
        """Constructor arguments; saved as config.json by save_pretrained."""
        return {}

    def describe(self) -> dict:
        """Identity for provenance: name, settings, and the sha256 of weight files where there are any."""
        return {"name": self.name, "config": self.config()}

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"model_type": self.name, **self.config()}, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "Model":
        """The model from config.json's settings (what save_pretrained wrote), each checked like a --model-arg."""
        config = read_config(Path(path) / "config.json")
        config.pop("model_type", None)
        params = keyword_parameters(cls.__init__)
        unknown = sorted(k for k in config if k not in params)
        if unknown:
            raise AesbenchError(
                f"{Path(path) / 'config.json'}: {cls.name} takes no setting {unknown[0]!r}"
                f" (accepted: {', '.join(params) or 'none'}); re-save the checkpoint"
            )
        return cls(**parse_options(config, params, f"checkpoint {path}"))


def _discover() -> None:
    from . import baselines

    for info in pkgutil.iter_modules(baselines.__path__):
        importlib.import_module(f"{baselines.__name__}.{info.name}")
    from . import recipes  # the trainable models' recipe modules list them lazily (their modules import torch)

    recipes.discover()


SPEC_HINT = (
    "`aesbench models` lists them; a checkpoint folder, path/to/file.py:Class or package.module:Class also works"
)
MODELS = Registry("model", group="aesbench.models", hint=SPEC_HINT, discover=_discover)


def register(name: str):
    """Class decorator: make a model available as `--model NAME`."""

    def wrap(cls):
        cls.name = name
        return MODELS.register(name, cls)

    return wrap


def model_listing() -> dict[str, tuple[frozenset, str]]:
    """Every model by name with its capabilities and the first line of its description, importing nothing
    that is registered lazily: the trainable models (torch) are listed from what their recipe modules
    declare, and a plug-in (entry point aesbench.models) by where it lives, until something loads it."""
    listing = {}
    for name in MODELS.names():
        info = MODELS.info(name)
        if info is None or MODELS.is_loaded(name):
            try:
                cls = model_class(name)
            except AesbenchError as e:  # a plug-in loaded earlier that is not a Model
                listing[name] = (frozenset(), f"(cannot load: {e})")
                continue
            doc = (cls.__doc__ or "").strip().splitlines()
            listing[name] = (cls.capabilities, doc[0] if doc else "")
        elif "plugin" in info:
            listing[name] = (frozenset(), f"plug-in {info['plugin']} (its capabilities are read when it loads)")
        elif importlib.util.find_spec("torch") is None:  # what its import would say, without importing anything
            listing[name] = (
                info["capabilities"],
                f"(not installed: model {name!r} needs the 'train' extra: pip install 'aesbench[train]')",
            )
        else:
            listing[name] = (info["capabilities"], info["doc"])
    return listing


def _plugin_class(spec: str) -> type[Model]:
    """The Model subclass named by path/to/file.py:Class or package.module:Class (code the command line asked for)."""
    where, _, attribute = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise AesbenchError(f"model file {path} not found (--model {spec})")
        module_name = f"aesbench_plugin_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        module = sys.modules.get(module_name)
        if module is None:
            loader = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[module_name] = module
            try:
                loader.loader.exec_module(module)
            except AesbenchError:
                raise
            except Exception as e:  # the user's file: its own error, in one line
                del sys.modules[module_name]
                raise AesbenchError(
                    f"cannot import {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                ) from None
        cls = getattr(module, attribute, None)
        if cls is None:
            raise AesbenchError(f"{path} defines no {attribute!r} (--model {spec})")
    else:
        cls = import_target(spec, f"model {spec!r}")
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise AesbenchError(f"{spec} is not a subclass of aesbench.Model")
    if not cls.name:
        cls.name = cls.__name__
    return cls


def model_class(name: str) -> type[Model]:
    """The class of a registered model (imported now if lazy), or of a plug-in spec with a ':'."""
    if ":" in name:
        return _plugin_class(name)
    cls = MODELS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        declared = MODELS.info(name) or {}
        origin = f" (plug-in {declared['plugin']})" if "plugin" in declared else ""
        raise AesbenchError(f"model {name!r}{origin} is not a subclass of aesbench.Model")
    if not cls.name:
        cls.name = name
    return cls


def read_config(config_file: Path) -> dict:
    """A checkpoint's config.json as a mapping, or one line saying what is wrong with it (not its content)."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise AesbenchError(f"{config_file} is not UTF-8 text (byte {e.start}): re-save the checkpoint") from None
    except json.JSONDecodeError as e:
        raise AesbenchError(f"{config_file} is not valid JSON ({e}): re-save the checkpoint") from None
    except OSError as e:
        raise AesbenchError(f"cannot read {config_file}: {e.strerror or type(e).__name__}") from None
    if not isinstance(config, dict):
        raise AesbenchError(f"{config_file} is not a JSON object: re-save the checkpoint")
    return config


def load_model(name_or_path: str, options: dict | None = None, seed: int | None = None) -> Model:
    """A registered model by name, a checkpoint folder holding config.json with `model_type`, or a plug-in:
    path/to/file.py:Class or package.module:Class (a Model subclass)."""
    options = dict(options or {})
    path = Path(name_or_path)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise AesbenchError(
                f"model folder {path} has no config.json: point --model at a checkpoint folder or a registered name"
            )
        config = read_config(config_file)
        model_type = config.get("model_type")
        refuse_command_line_only(config, str(config_file), "--model-arg", allow_safe=True)
        if not isinstance(model_type, str) or model_type not in MODELS:
            raise AesbenchError(
                f"{config_file} names model_type {model_type!r}, which is not an aesbench model; for a Hugging Face"
                f" checkpoint pick an adapter and pass the folder: --model qalign --model-arg path={path}"
                " (`aesbench models` lists the adapters)"
            )
        cls = model_class(model_type)
        accepted = {n: p for n, p in keyword_parameters(cls.from_pretrained).items() if n != "path"}
        unknown = [k for k in options if k not in accepted]
        if unknown:
            takes = ", ".join(accepted) or "none"
            raise AesbenchError(f"checkpoint {path} ({model_type}) takes no option {unknown[0]!r} (accepted: {takes})")
        return cls.from_pretrained(path, **parse_options(options, accepted, f"checkpoint {path}"))
    cls = model_class(name_or_path)
    params = keyword_parameters(cls.__init__)  # a model without its own __init__ takes none
    if seed is not None and "seed" in params and "seed" not in options:
        options["seed"] = seed
    unknown = [k for k in options if k not in params]
    if unknown:
        accepted = ", ".join(params) or "none"
        raise AesbenchError(f"model {name_or_path!r} takes no option {unknown[0]!r} (accepted: {accepted})")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in options]
    if missing:
        raise AesbenchError(f"model {name_or_path!r} needs option {missing[0]!r}: add --model-arg {missing[0]}=...")
    return cls(**parse_options(options, params, f"model {name_or_path!r}"))


def require(model: Model, capability: str, task_name: str) -> None:
    if capability not in model.capabilities:
        have = ", ".join(sorted(model.capabilities)) or "nothing"
        raise AesbenchError(
            f"model {model.name!r} cannot {capability} (it can: {have}), which task {task_name!r} needs"
        )
