"""A plain `pip install .` (not editable) installs only the packages pyproject.toml lists: every
package folder under aesbench/ must be listed, or the installed command fails on import."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_for_installation():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "aesbench").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found, "no package folders found"
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
