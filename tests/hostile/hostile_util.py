"""Shared by the hostile-input tests: the CLI as a user runs it, and what its stderr must look like."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import REPO, run_cli  # noqa: F401  (re-exported for the hostile tests)

VENV_BIN = Path(sys.executable).parent


def cli(*args, env=None, cwd=None):
    """`aesbench ARGS` in a subprocess (optionally from another folder), with this interpreter's venv first on PATH."""
    import subprocess

    exe = VENV_BIN / "aesbench"
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "aesbench", *args]
    env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def one_line_error(result) -> str:
    """Exit code 2 and stderr exactly one non-blank line starting 'error:', no traceback; returns the line."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]
