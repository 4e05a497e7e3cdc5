"""One registry shape for everything aesbench looks up by name: models, dataset formats, families,
judges, metrics and training recipes.

An entry is an object registered under a name, or a lazy entry ("module:attribute") imported only when
it is asked for, so listing names never imports heavy modules. An unknown name is one line with the
closest known name. A registry with an entry-point `group` also holds the entries that installed
packages declare under that group (a pip-installed package adds models without touching aesbench).
"""

from __future__ import annotations

import difflib
import importlib
from importlib import metadata
from typing import Any, Callable

from .errors import AesbenchError, first_line


def nearest(name: str, choices) -> str:
    """'; did you mean X?' for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.4)
    return f"; did you mean {close[0]!r}?" if close else ""


def import_target(target: str, what: str) -> Any:
    """The attribute named by "package.module:attribute" (or a module by "package.module"), or one line
    saying what could not be imported."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except AesbenchError:
        raise
    except Exception as e:  # a missing module, or a plug-in's own error at import: one line
        raise AesbenchError(f"{what}: cannot import {module_name!r} ({first_line(e)})") from None
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise AesbenchError(f"{what}: module {module_name!r} has no {attribute!r}") from None


class Registry:
    """Named entries of one kind. `register(name)` decorates (or takes) the object; `lazy(name, target,
    **info)` names it by "module:attribute" and keeps `info` (what a listing shows), loaded or not.
    `discover` is called once before the first lookup (to import the modules that register entries)."""

    def __init__(self, kind: str, group: str | None = None, hint: str = "", discover: Callable[[], None] | None = None):
        self.kind, self.group, self.hint = kind, group, hint
        self._entries: dict[str, Any] = {}
        self._lazy: dict[str, tuple[str, dict]] = {}
        self._discover, self._discovered = discover, discover is None and group is None

    def register(self, name: str, obj: Any = None):
        def add(value):
            self._entries[name] = value
            return value

        return add if obj is None else add(obj)

    def lazy(self, name: str, target: str, **info) -> None:
        self._lazy[name] = (target, info)  # kept once loaded: what the listing says of it

    def _ensure(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        if self._discover is not None:
            self._discover()
        if self.group:
            for point in metadata.entry_points(group=self.group):
                if point.name not in self._entries and point.name not in self._lazy:
                    self._lazy[point.name] = (point.value, {"plugin": point.value})

    def names(self) -> list[str]:
        self._ensure()
        return sorted({*self._entries, *self._lazy})

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self.names()

    def info(self, name: str) -> dict | None:
        """What a lazy entry declared (None for an entry registered directly), loaded or not."""
        self._ensure()
        return self._lazy[name][1] if name in self._lazy else None

    def is_loaded(self, name: str) -> bool:
        self._ensure()
        return name in self._entries

    def get(self, name: str) -> Any:
        """The entry, importing a lazy one now; an unknown name is one line with the closest known one."""
        self._ensure()
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        if not isinstance(name, str) or name not in self._lazy:
            known = self.names()
            hint = nearest(name, known) if isinstance(name, str) else ""
            raise AesbenchError(
                f"unknown {self.kind} {name!r}{hint}"
                + (f" ({self.hint})" if self.hint else f"; known: {', '.join(known)}")
            )
        target, _ = self._lazy[name]
        value = import_target(target, f"{self.kind} {name!r}")
        if name not in self._entries:  # the module did not register it under this name itself
            self._entries[name] = value
        return self._entries[name]
