"""The model adapter interface and the model registry.

A model declares its capabilities and implements the matching request methods; a task asks for one
capability only. Models are named by registry name (`handcrafted`) or by a checkpoint folder whose
config.json names a registered `model_type`.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .errors import AesbenchError
from .options import parse_bool_options, refuse_command_line_only


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
        config = json.loads((Path(path) / "config.json").read_text())
        config.pop("model_type", None)
        return cls(**config)


_REGISTRY: dict[str, type[Model]] = {}
_DISCOVERED = False


def register(name: str):
    """Class decorator: make a model available as `--model NAME`."""

    def wrap(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


# The trainable reference models: their modules build torch networks at import, so without torch
# they are listed by a stand-in that says what to install.
REFERENCE_MODELS = {"calm": "aesbench.models.calm", "artquant": "aesbench.models.artquant"}


def _discover() -> None:
    from . import baselines

    for info in pkgutil.iter_modules(baselines.__path__):
        importlib.import_module(f"{baselines.__name__}.{info.name}")
    for name, module in REFERENCE_MODELS.items():
        try:
            importlib.import_module(module)
        except AesbenchError as e:
            _REGISTRY[name] = _unavailable(name, str(e))


def _unavailable(name: str, reason: str) -> type[Model]:
    class Unavailable(Model):
        __doc__ = f"(not installed: {reason})"

        def __init__(self, **options):
            raise AesbenchError(reason)

        @classmethod
        def from_pretrained(cls, path, **options):
            raise AesbenchError(reason)

    Unavailable.name = name
    return Unavailable


def registry() -> dict[str, type[Model]]:
    global _DISCOVERED
    if not _DISCOVERED:
        _discover()
        _DISCOVERED = True
    return dict(sorted(_REGISTRY.items()))


def nearest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.4)
    return f"; did you mean {close[0]!r}?" if close else ""


def load_model(name_or_path: str, options: dict | None = None, seed: int | None = None) -> Model:
    """A registered model by name, or a checkpoint folder holding config.json with `model_type`."""
    models = registry()
    options = dict(options or {})
    path = Path(name_or_path)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise AesbenchError(f"model folder {path} has no config.json: point --model at a checkpoint folder or a registered name")
        try:
            config = json.loads(config_file.read_text())
            model_type = config.get("model_type")
        except (json.JSONDecodeError, AttributeError) as e:
            raise AesbenchError(f"{config_file} is not a JSON object ({e}): re-save the checkpoint") from None
        refuse_command_line_only(config, str(config_file), "--model-arg", allow_safe=True)
        if model_type not in models:
            raise AesbenchError(
                f"{config_file} names model_type {model_type!r}, which is not an aesbench model; for a Hugging Face"
                f" checkpoint pick an adapter and pass the folder: --model qalign --model-arg path={path}"
                " (`aesbench models` lists the adapters)")
        cls = models[model_type]
        accepted = inspect.signature(cls.from_pretrained).parameters
        unknown = [k for k in options if k not in accepted or k == "path"]
        if unknown:
            takes = ", ".join(p for p in accepted if p not in ("path", "cls")) or "none"
            raise AesbenchError(f"checkpoint {path} ({model_type}) takes no option {unknown[0]!r} (accepted: {takes})")
        return cls.from_pretrained(path, **parse_bool_options(options, accepted, f"checkpoint {path}"))
    if name_or_path not in models:
        hint = nearest(name_or_path, models)
        raise AesbenchError(f"unknown model {name_or_path!r}{hint or ''} (`aesbench models` lists them; a checkpoint folder also works)")
    cls = models[name_or_path]
    params = inspect.signature(cls.__init__).parameters
    if seed is not None and "seed" in params and "seed" not in options:
        options["seed"] = seed
    unknown = [k for k in options if k not in params]
    if unknown:
        accepted = ", ".join(p for p in params if p != "self") or "none"
        raise AesbenchError(f"model {name_or_path!r} takes no option {unknown[0]!r} (accepted: {accepted})")
    missing = [n for n, p in params.items() if n != "self" and p.default is p.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in options]
    if missing:
        raise AesbenchError(f"model {name_or_path!r} needs option {missing[0]!r}: add --model-arg {missing[0]}=...")
    return cls(**parse_bool_options(options, params, f"model {name_or_path!r}"))


def require(model: Model, capability: str, task_name: str) -> None:
    if capability not in model.capabilities:
        have = ", ".join(sorted(model.capabilities)) or "nothing"
        raise AesbenchError(f"model {model.name!r} cannot {capability} (it can: {have}), which task {task_name!r} needs")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
