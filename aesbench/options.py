"""Command-line options read strictly: one boolean parser, and the options no data file may set.

A boolean option (trust_remote_code, online, distribution...) is true/false/1/0/yes/no, in any case;
anything else (None, "n", "disabled", an empty value) is an error naming the option, never Python's
truthiness, so a typo cannot run a checkpoint's code or reach the network. Remote code and network
access are enabled on the command line only: a task YAML or a checkpoint's config.json that sets
one of COMMAND_LINE_ONLY is refused.
"""

from __future__ import annotations

import inspect

from .errors import AesbenchError
from .values import is_number

TRUE, FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})

# Options that run code shipped with a checkpoint or reach the network, with their safe value: only
# --model-arg / --judge-arg may set them otherwise.
COMMAND_LINE_ONLY = {"trust_remote_code": False, "online": False, "local_files_only": True}


def parse_bool(value, option: str) -> bool:
    """True or False from a bool, 1/0, or true/false/1/0/yes/no in any case; anything else: one line naming `option`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE:
            return True
        if word in FALSE:
            return False
    raise AesbenchError(f"option {option} must be true or false (also 1/0, yes/no), not {value!r}")


def is_bool_parameter(parameter: inspect.Parameter) -> bool:
    """A parameter declared as a boolean: annotated bool (or bool | None), or defaulting to True/False."""
    annotation = parameter.annotation
    if annotation is bool or (
        isinstance(annotation, str) and annotation.replace(" ", "") in ("bool", "bool|None", "None|bool")
    ):
        return True
    return isinstance(parameter.default, bool)


def _annotation_names(parameter: inspect.Parameter) -> set[str]:
    """{"int", "None"} for `int | None` (annotations are text under `from __future__ import annotations`)."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return set()
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return {part.strip() for part in text.split("|")}


def parse_option(value, parameter: inspect.Parameter, owner: str):
    """One option checked against the type its parameter declares: a boolean by parse_bool, an int a
    whole number (1.5 is refused, never truncated; a seed not negative), a float a finite number, a
    str text (a number given for it becomes its text). Parameters of other types are left to the model."""
    name, names = parameter.name, _annotation_names(parameter)
    if value is None and ("None" in names or parameter.default is None):
        return None
    if is_bool_parameter(parameter):
        return parse_bool(value, f"{name} of {owner}")
    kinds = names - {"None"}
    if kinds == {"int"}:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AesbenchError(f"option {name} of {owner} must be a whole number, not {value!r}")
        if name == "seed" and value < 0:
            raise AesbenchError(f"option seed of {owner} must be 0 or more, not {value}")
        return value
    if kinds in ({"float"}, {"int", "float"}):
        if not is_number(value):
            raise AesbenchError(f"option {name} of {owner} must be a finite number, not {value!r}")
        return float(value)
    if kinds and kinds <= {"str", "Path"}:
        if is_number(value):
            return str(value)
        if not isinstance(value, str):
            raise AesbenchError(f"option {name} of {owner} must be text, not {value!r}")
        return value
    return value


def keyword_parameters(function) -> dict[str, inspect.Parameter]:
    """The parameters an option can name: keyword-capable ones, not self/cls, not *args or **kwargs."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(function).parameters.items()
    return {n: p for n, p in parameters if p.kind in kinds and n not in ("self", "cls")}


def parse_options(options: dict, parameters: dict, owner: str) -> dict:
    """Options, each checked and converted by parse_option against the parameter it sets."""
    return {
        name: parse_option(value, parameters[name], owner) if name in parameters else value
        for name, value in options.items()
    }


def refuse_command_line_only(data, file: str, flag: str, allow_safe: bool = False) -> None:
    """One line when a data file (a task, a checkpoint's config.json) sets an option that only the
    command line may set, anywhere in it (mappings and lists, at any depth). With `allow_safe`, the
    option may be there with its safe value (a saved config records trust_remote_code: false)."""
    stack = [(data, "")]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{at}.{key}" if at else str(key)
                if key in COMMAND_LINE_ONLY and not (allow_safe and value is COMMAND_LINE_ONLY[key]):
                    raise AesbenchError(
                        f"{file}: {where} cannot be set in a file; only the command line can enable"
                        f" remote code or network access ({flag} {key}=...)"
                    )
                stack.append((value, where))
        elif isinstance(node, list):
            stack.extend((value, f"{at}[{i}]") for i, value in enumerate(node))
