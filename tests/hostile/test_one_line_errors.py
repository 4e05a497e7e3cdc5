"""Hostile inputs, class 7: what used to end in a traceback is one line (exit 2) or a recorded skip.
Model options of the wrong type, broken checkpoint folders, a damaged feature cache, non-UTF-8 or
misshapen label files. Real checkpoints (a NIMA trained here), real decoding, the CLI as users run it."""

from __future__ import annotations

import json
import shutil

import pytest

from aesbench.adapter import MODELS, Model, load_model, register
from aesbench.errors import AesbenchError

from hostile_util import REPO, cli, one_line_error

DATA = REPO / "tasks" / "data"
EVAL = ("eval", "--task", "tiny-ava-score", "--quiet")


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("--model", "constant", "--model-arg", "value=abc"),
            "option value of model 'constant' must be a finite number, not 'abc'",
        ),
        (
            ("--model", "constant", "--model-arg", "value=.inf"),
            "option value of model 'constant' must be a finite number, not inf",
        ),
        (("--model", "random", "--seed", "-1"), "option seed of model 'random' must be 0 or more, not -1"),
        (
            ("--model", "random", "--model-arg", "seed=1.5"),
            "option seed of model 'random' must be a whole number, not 1.5",
        ),
        (
            ("--model", "handcrafted", "--model-arg", "ridge_alpha=abc"),
            "option ridge_alpha of model 'handcrafted' must be a finite number",
        ),
        (
            ("--model", "handcrafted", "--model-arg", "personal_steps=3"),
            "model 'handcrafted' takes no option 'personal_steps'",
        ),
    ],
)
def test_model_option_types(tmp_path, args, message):
    r = cli(*EVAL, *args, "--output", str(tmp_path / "run"))
    assert message in one_line_error(r)
    assert not (tmp_path / "run").exists()


def test_model_without_init_given_an_option():
    @register("hostile-no-init")
    class NoInit(Model):
        capabilities = frozenset({"score"})

    try:
        for option in ("x", "args", "kwargs"):
            with pytest.raises(
                AesbenchError, match=f"model 'hostile-no-init' takes no option '{option}' \\(accepted: none\\)"
            ):
                load_model("hostile-no-init", {option: 1})
        assert isinstance(load_model("hostile-no-init"), NoInit)
    finally:
        MODELS._entries.pop("hostile-no-init", None)


@pytest.fixture(scope="module")
def nima(tmp_path_factory):
    """A NIMA checkpoint trained here for one epoch (6 s on 2 cores)."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("nima") / "ckpt"
    r = cli("train", "nima", "--task", "tiny-ava-score", "--output", str(folder), "--epochs", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    return folder


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model-arg", "personal_steps=1.5"), "must be a whole number, not 1.5"),  # was truncated to 1
        (("--model-arg", "personal_steps=abc"), "must be a whole number, not 'abc'"),
        (("--model-arg", "personal_lr=abc"), "must be a finite number, not 'abc'"),
    ],
)
def test_checkpoint_option_types(nima, tmp_path, args, message):
    assert message in one_line_error(cli(*EVAL, "--model", str(nima), *args, "--output", str(tmp_path / "run")))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: (c / "config.json").write_bytes(b"\xff\xfe{}"), "config.json is not UTF-8 text (byte 0)"),
        (lambda c: (c / "config.json").write_text("[1, 2]"), "config.json is not a JSON object"),
        (
            lambda c: (c / "config.json").write_text('{"model_type": ["nima"]}'),
            "names model_type ['nima'], which is not",
        ),
        (
            lambda c: (c / "config.json").write_text(
                json.dumps({**json.loads((c / "config.json").read_text()), "layers": "abc"})
            ),
            "layers must be a list of layer numbers",
        ),
        (lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:100]), "cannot load"),
    ],
)
def test_broken_checkpoint_folders(nima, tmp_path, damage, message):
    folder = tmp_path / "ckpt"
    shutil.copytree(nima, folder)
    damage(folder)
    assert message in one_line_error(cli(*EVAL, "--model", str(folder), "--output", str(tmp_path / "run")))


def _torn_training_json(folder):
    (folder / "training.json").write_text('{"stopped": "fin')


def _torn_stage_json(folder):
    """A stopped training (no training.json yet) whose saved state's stage.json was cut short."""
    (folder / "training.json").unlink()
    (folder / "state").mkdir()
    (folder / "state" / "stage.json").write_text('{"stage": "ni')


@pytest.mark.parametrize(
    "damage, name", [(_torn_training_json, "training.json"), (_torn_stage_json, "state/stage.json")]
)
def test_torn_training_records_are_one_line(nima, tmp_path, damage, name):
    """Rerunning a training whose training.json or saved stage.json was cut short (killed while it was
    written) names the file and what to do; it was a traceback."""
    folder = tmp_path / "ckpt"
    shutil.copytree(nima, folder)
    damage(folder)
    r = cli("train", "nima", "--task", "tiny-ava-score", "--output", str(folder), "--epochs", "1", "--quiet")
    line = one_line_error(r)
    assert f"{folder / name} is damaged" in line and "delete" in line


def test_config_json_with_an_extra_key_or_wrong_type(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "constant", "value": 3, "colour": "red"}')
    line = one_line_error(cli(*EVAL, "--model", str(folder), "--output", str(tmp_path / "run")))
    assert "constant takes no setting 'colour' (accepted: value); re-save the checkpoint" in line
    (folder / "config.json").write_text('{"model_type": "constant", "value": "x"}')
    line = one_line_error(cli(*EVAL, "--model", str(folder), "--output", str(tmp_path / "run")))
    assert "option value of checkpoint" in line and "must be a finite number, not 'x'" in line


def test_damaged_feature_cache_entry_is_repaired(nima, tmp_path):
    """entry.json of {} (was a KeyError): the entries are recomputed, the numbers unchanged, the repair counted."""
    cache = tmp_path / "cache"
    args = (*EVAL, "--model", str(nima), "--feature-cache", str(cache), "--limit", "8")
    assert cli(*args, "--output", str(tmp_path / "a")).returncode == 0
    (entry,) = cache.glob("*/entry.json")
    entry.write_text("{}")
    r = cli(*args, "--output", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    a, b = (json.loads((tmp_path / x / "results.json").read_text()) for x in "ab")
    assert b["provenance"]["feature_cache"]["repaired"] >= 1
    assert b["metrics"] == pytest.approx(a["metrics"], abs=1e-5)
    assert json.loads(entry.read_text())["shape"]  # written again


def copy_task(tmp_path, name: str) -> tuple:
    """A copy of a tiny task and its data folder, the YAML's root pointing at the copy."""
    src = REPO / "tasks" / f"{name}.yaml"
    text = src.read_text()
    root = text.split("root: ")[1].split("\n")[0].strip()
    shutil.copytree(REPO / "tasks" / root, tmp_path / "data", ignore=shutil.ignore_patterns("images"))
    (tmp_path / "data" / "images").symlink_to(REPO / "tasks" / root / "images")
    task = tmp_path / "t.yaml"
    task.write_text(text.replace(f"root: {root}", "root: data"))
    return task, tmp_path / "data"


@pytest.mark.parametrize(
    "task, file",
    [
        ("tiny-ava-score", "AVA.txt"),
        ("tiny-ava-score", "aesthetics_image_lists/generic_test.jpgl"),
        ("tiny-flickr-aes-piaa", "FLICKR-AES_image_labeled_by_each_worker.csv"),
        ("tiny-flickr-aes-piaa", "test_workers.txt"),
        ("tiny-ava-comment", "ava_captions.json"),
    ],
)
def test_non_utf8_label_files(tmp_path, task, file):
    path, data = copy_task(tmp_path, task)
    target = data / file
    target.write_bytes(target.read_bytes()[:40] + b"caf\xe9 \xff\n" + target.read_bytes()[40:])
    line = one_line_error(cli("eval", "--task", str(path), "--model", "handcrafted", "--output", str(tmp_path / "run")))
    assert f"{target} is not UTF-8 text (byte " in line and "re-save it as UTF-8" in line


def test_misshapen_captions_json(tmp_path):
    path, data = copy_task(tmp_path, "tiny-ava-comment")
    captions = data / "ava_captions.json"
    original = json.loads(captions.read_text())
    captions.write_text('{"images": 5}')
    line = one_line_error(cli("eval", "--task", str(path), "--model", "handcrafted", "--output", str(tmp_path / "r1")))
    assert "'images' must be a list of entries, not int" in line
    original["images"][0]["filename"] = 12345  # an integer filename: a recorded skip, the rest scored
    captions.write_text(json.dumps(original))
    from aesbench.datasets import read_dataset
    from aesbench.task import load_task

    data_read = read_dataset(load_task(str(path)))
    assert {"id": "ava_captions.json:images[0]", "reason": "malformed entry: no filename text"} in data_read.skipped
