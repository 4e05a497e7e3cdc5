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


def parse_bool_options(options: dict, parameters, owner: str) -> dict:
    """Options with each one that a boolean parameter receives parsed by parse_bool (None stays None
    where the parameter defaults to None)."""
    parsed = dict(options)
    for name, value in options.items():
        parameter = parameters.get(name)
        if parameter is None or not is_bool_parameter(parameter):
            continue
        if value is None and parameter.default is None:
            continue
        parsed[name] = parse_bool(value, f"{name} of {owner}")
    return parsed


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
