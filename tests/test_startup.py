"""Start-up: listing and torch-free commands import neither torch nor transformers (the reference
models are registered lazily), and the lazy entries say what the real classes say."""

import subprocess
import sys

import pytest

from aesbench.adapter import MODELS, load_model, model_class, model_listing

PROBE = """
import runpy, sys
sys.argv = ["aesbench"] + sys.argv[1:]
try:
    runpy.run_module("aesbench", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
print("HEAVY", [m for m in ("torch", "transformers") if m in sys.modules], "EXIT", code)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["tasks"],
        ["tasks", "tiny-ava-score"],
        ["models"],
        ["train", "--help"],
        ["train", "calm", "--help"],
        ["eval", "--task", "tiny-ava-score", "--model", "constant", "--quiet", "--limit", "5"],
    ],
)
def test_commands_import_no_torch(argv, tmp_path):
    if argv[0] == "eval":
        argv = argv + ["--output", str(tmp_path / "run")]
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=600)
    assert "HEAVY [] EXIT 0" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def test_lazy_entries_match_the_classes():
    """What the recipe modules (aesbench/recipes/) declare of the trainable models is what their classes say."""
    listing = model_listing()
    for name in ("calm", "artquant"):
        declared = MODELS.info(name)
        assert listing[name] == (declared["capabilities"], declared["doc"])
        real = model_class(name)
        assert real.__module__ == f"aesbench.models.{name}" and real.name == name
        assert real.capabilities == declared["capabilities"]
        assert real.__doc__.strip().splitlines()[0] == declared["doc"]
        assert MODELS.is_loaded(name) and model_class(name) is real  # loaded once, the real class stays registered


def test_lazy_model_loads_and_refuses_like_the_real_one():
    with pytest.raises(Exception) as info:
        load_model("calm", {"no_such_option": 1})
    assert "no_such_option" in str(info.value)
