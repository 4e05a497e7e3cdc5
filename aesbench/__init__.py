"""aesbench: benchmark image aesthetics assessment models on the standard protocols.

from aesbench import Model, load_task, load_model, evaluate
"""

__version__ = "0.1.0"

_API = {
    "Model": "adapter",
    "Request": "adapter",
    "register": "adapter",
    "load_model": "adapter",
    "load_task": "task",
    "evaluate": "api",
}
__all__ = ["Model", "Request", "__version__", "evaluate", "load_model", "load_task", "register"]


def __getattr__(name: str):
    """The API, imported on first use: `import aesbench` alone stays cheap (the CLI's start-up)."""
    if name not in _API:
        raise AttributeError(f"module 'aesbench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"aesbench.{_API[name]}"), name)
