"""Hostile inputs, class 1: code runs only when the command line asks for it.

A would-be payload is a model folder whose config.json has an auto_map pointing at
configuration_evil.py, which writes a marker file when Python imports it. The positive control
shows the payload is live (trust_remote_code=true on the command line does import it); every other
test asserts exit code 2, one line on stderr and no marker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aesbench.errors import AesbenchError
from aesbench.options import parse_bool
from aesbench.task import load_task

from hostile_util import cli, one_line_error

pytest.importorskip("transformers")

NOT_BOOLEANS = ["None", "n", "disabled", "'no-thanks'", "", "on", "2", "[true]"]


@pytest.fixture
def payload(tmp_path):
    """(folder, marker): a Hugging Face-style folder that ships code; importing it writes the marker."""
    folder = tmp_path / "judge_model"
    folder.mkdir()
    marker = tmp_path / "MARKER"
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil-judge",
                "auto_map": {
                    "AutoConfig": "configuration_evil.EvilConfig",
                    "AutoModelForCausalLM": "configuration_evil.EvilModel",
                    "AutoModelForImageTextToText": "configuration_evil.EvilModel",
                    "AutoProcessor": "configuration_evil.P",
                },
            }
        )
    )
    (folder / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('payload ran')\n")
    (folder / "model.safetensors").write_bytes(b"")
    return folder, marker


@pytest.fixture
def hf_env(tmp_path):
    return {"HF_MODULES_CACHE": str(tmp_path / "hf_modules"), "HF_HUB_OFFLINE": "1"}


def test_parse_bool_is_strict():
    for word in ("true", "TRUE", "Yes", "1", 1, True):
        assert parse_bool(word, "x") is True
    for word in ("false", "False", "NO", "0", 0, False):
        assert parse_bool(word, "x") is False
    for bad in ("None", "n", "disabled", "on", "off", "", None, 2, 1.0, [], "true!"):
        with pytest.raises(AesbenchError, match="option x must be true or false") as e:
            parse_bool(bad, "x")
        assert "\n" not in str(e.value)


def test_positive_control_the_payload_is_live(payload, hf_env, tmp_path):
    folder, marker = payload
    cli(
        "eval",
        "--task",
        "tiny-pccd-suggest",
        "--model",
        "constant",
        "--output",
        str(tmp_path / "run"),
        "--limit",
        "2",
        "--judge",
        "llm",
        "--judge-arg",
        f"path={folder}",
        "--judge-arg",
        "trust_remote_code=true",
        "--quiet",
        env=hf_env,
    )
    assert marker.read_text() == "payload ran"


@pytest.mark.parametrize("value", NOT_BOOLEANS)
def test_judge_arg_not_a_boolean_is_refused(payload, hf_env, tmp_path, value):
    folder, marker = payload
    r = cli(
        "eval",
        "--task",
        "tiny-pccd-suggest",
        "--model",
        "constant",
        "--output",
        str(tmp_path / "run"),
        "--judge",
        "llm",
        "--judge-arg",
        f"path={folder}",
        "--judge-arg",
        f"trust_remote_code={value}",
        "--quiet",
        env=hf_env,
    )
    assert "option trust_remote_code of judge 'llm' must be true or false" in one_line_error(r)
    assert not marker.exists() and not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize("value", ["no", "'no'", "false", "0"])
def test_judge_arg_false_refuses_a_folder_with_code(payload, hf_env, tmp_path, value):
    folder, marker = payload
    r = cli(
        "eval",
        "--task",
        "tiny-pccd-suggest",
        "--model",
        "constant",
        "--output",
        str(tmp_path / "run"),
        "--judge",
        "llm",
        "--judge-arg",
        f"path={folder}",
        "--judge-arg",
        f"trust_remote_code={value}",
        "--quiet",
        env=hf_env,
    )
    assert "ships its own modelling code" in one_line_error(r)
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["None", "n", "disabled", "'no'", "on"])
def test_model_arg_trust_remote_code(payload, hf_env, tmp_path, value):
    """Not a boolean: refused by name. 'no': false, so the folder's code is refused (it ships an auto_map)."""
    folder, marker = payload
    r = cli(
        "eval",
        "--task",
        "tiny-ava-score",
        "--model",
        "mllm-readout",
        "--model-arg",
        f"path={folder}",
        "--model-arg",
        f"trust_remote_code={value}",
        "--output",
        str(tmp_path / "run"),
        "--quiet",
        env=hf_env,
    )
    line = one_line_error(r)
    if value == "'no'":
        assert "ships its own modelling code" in line and "trust_remote_code=true" in line
    else:
        assert (
            "option trust_remote_code of model 'mllm-readout' must be true or false (also 1/0, yes/no),"
            f" not {value.strip(chr(39))!r}" in line
        )
    assert not marker.exists()


@pytest.mark.parametrize("option", ["online", "distribution"])
def test_other_boolean_model_options_are_strict(tmp_path, option):
    """online (laion-aesthetic) and distribution (a CALM checkpoint) go through the same parser."""
    if option == "online":
        r = cli(
            "eval",
            "--task",
            "tiny-ava-score",
            "--model",
            "laion-aesthetic",
            "--model-arg",
            "clip_path=x",
            "--model-arg",
            "head_path=y",
            "--model-arg",
            "online=None",
            "--output",
            str(tmp_path / "run"),
            "--quiet",
        )
        assert "option online of model 'laion-aesthetic' must be true or false" in one_line_error(r)
    else:
        ckpt = tmp_path / "ckpt"
        ckpt.mkdir()
        (ckpt / "config.json").write_text(json.dumps({"model_type": "calm"}))
        r = cli(
            "eval",
            "--task",
            "tiny-ava-score",
            "--model",
            str(ckpt),
            "--model-arg",
            "distribution=disabled",
            "--output",
            str(tmp_path / "run"),
            "--quiet",
        )
        assert "option distribution of checkpoint" in one_line_error(r)


def suggest_task(folder, judge: str, extra: str = "") -> str:
    """A suggest task beside the judge folder, reading the tiny PCCD data by absolute path."""
    from hostile_util import REPO

    root = REPO / "tasks" / "data" / "tiny-pccd"
    path = folder / "task.yaml"
    path.write_text(
        f"name: hostile-suggest\nfamily: suggest\n"
        f"dataset: {{format: pccd, root: {root}, path: pccd.json, images: images, image_key: title, image_suffix: .jpg}}\n"
        f"protocol: {{judge: {judge}}}\n{extra}"
    )
    return str(path)


@pytest.mark.parametrize(
    "judge",
    [
        "{name: llm, path: judge_model, trust_remote_code: true}",
        "{name: llm, path: judge_model, online: true}",
        "{name: llm, path: judge_model, trust_remote_code: false}",
    ],
)
def test_task_file_cannot_enable_remote_code_or_network(payload, hf_env, tmp_path, judge):
    folder, marker = payload
    task = suggest_task(folder.parent, judge)
    r = cli("eval", "--task", task, "--model", "constant", "--output", str(tmp_path / "run"), "--quiet", env=hf_env)
    key = "online" if "online" in judge else "trust_remote_code"
    line = one_line_error(r)
    assert (
        f"protocol.judge.{key} cannot be set in a file; only the command line can enable remote code or network" in line
    )
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_command_line_only_keys_refused_anywhere_in_a_task(payload, tmp_path):
    folder, _ = payload
    for extra, where in (
        ("notes: {online: true}\n", "notes.online"),
        ("preprocessing: {trust_remote_code: true}\n", "preprocessing.trust_remote_code"),
    ):
        task = suggest_task(folder.parent, "keyword", extra)
        with pytest.raises(AesbenchError, match=f"{where} cannot be set in a file"):
            load_task(task)
    task = suggest_task(folder.parent, "keyword")
    Path(task).write_text(
        Path(task).read_text().replace("image_suffix: .jpg}", "image_suffix: .jpg, local_files_only: false}")
    )
    with pytest.raises(AesbenchError, match="dataset.local_files_only cannot be set in a file"):
        load_task(task)


def test_task_judge_path_resolves_beside_the_task_and_command_line_can_trust_it(payload, hf_env, tmp_path):
    """path: judge_model in a task is the folder beside the task file, whatever the working folder; the task's code
    folder is refused without the flag, and --judge-arg trust_remote_code=true (alone) keeps the task's path."""
    folder, marker = payload
    task = suggest_task(folder.parent, "{name: llm, path: judge_model}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert load_task(task).protocol.judge["path"] == str(folder)
    r = cli(
        "eval",
        "--task",
        task,
        "--model",
        "constant",
        "--output",
        str(tmp_path / "run"),
        "--quiet",
        env=hf_env,
        cwd=elsewhere,
    )
    assert f"llm judge: {folder} ships its own modelling code" in one_line_error(r)
    assert not marker.exists()
    cli(
        "eval",
        "--task",
        task,
        "--model",
        "constant",
        "--output",
        str(tmp_path / "run2"),
        "--limit",
        "2",
        "--quiet",
        "--judge-arg",
        "trust_remote_code=yes",
        env=hf_env,
        cwd=elsewhere,
    )
    assert marker.exists()  # the user asked for it on the command line


def test_checkpoint_config_cannot_enable_remote_code(payload, hf_env, tmp_path):
    """A checkpoint whose config.json sets trust_remote_code: true is refused (false is what a save writes)."""
    folder, marker = payload
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(
        json.dumps({"model_type": "mllm-readout", "path": str(folder), "trust_remote_code": True})
    )
    r = cli(
        "eval",
        "--task",
        "tiny-ava-score",
        "--model",
        str(ckpt),
        "--output",
        str(tmp_path / "run"),
        "--quiet",
        env=hf_env,
    )
    assert "trust_remote_code cannot be set in a file" in one_line_error(r)
    (ckpt / "config.json").write_text(
        json.dumps({"model_type": "mllm-readout", "path": str(folder), "trust_remote_code": False})
    )
    r = cli(
        "eval",
        "--task",
        "tiny-ava-score",
        "--model",
        str(ckpt),
        "--output",
        str(tmp_path / "run"),
        "--quiet",
        env=hf_env,
    )
    assert "ships its own modelling code" in one_line_error(r)
    assert not marker.exists()


def test_yaml_tags_refused_and_no_code_runs(tmp_path):
    marker = tmp_path / "MARKER"
    task = tmp_path / "task.yaml"
    task.write_text(
        f"name: !!python/object/apply:os.system ['touch {marker}']\nfamily: score\n"
        "dataset: {format: csv, path: l.csv, images: i}\n"
    )
    assert "is not valid YAML" in one_line_error(cli("tasks", str(task)))
    assert not marker.exists()
