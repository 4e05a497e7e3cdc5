"""The shared stage runner (aesbench/training.py) on a tiny linear model: how a stage stops, resumes and logs."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from aesbench.training import (  # noqa: E402
    LOG_FILE,
    STATE_DIR,
    Schedule,
    StagePlan,
    native_bf16,
    resolve_mixed_precision,
    run_stage,
)


def _plan(stage: str = "tiny", max_steps: int | None = None) -> StagePlan:
    """A linear model on 8 samples, batches of 2 (4 steps an epoch), state saved every 2 steps."""
    torch.manual_seed(0)
    module = torch.nn.Linear(4, 1)

    def build(epoch, index):
        x = torch.arange(4, dtype=torch.float32) * (index + 1) / 10 - epoch
        return x, torch.sin(x).sum()

    def loss_fn(net, samples):
        x = torch.stack([s[0] for s in samples])
        y = torch.stack([s[1] for s in samples])
        return {"mse": ((net(x)[:, 0] - y) ** 2).mean()}

    schedule = Schedule(epochs=1, batch_size=2, lr=0.05, warmup=0.0, max_steps=max_steps)
    return StagePlan(stage, module, list(module.parameters()), 8, build, loss_fn, schedule, 0, "no", save_every=2)


def _log(output) -> list[dict]:
    return [json.loads(line) for line in (output / LOG_FILE).read_text().splitlines()]


def test_a_last_step_past_the_deadline_finishes_the_stage(tmp_path):
    summary = run_stage(_plan(max_steps=1), tmp_path, deadline=time.monotonic() - 1)
    assert summary["stopped"] == "finished" and summary["steps"] == 1 == summary["total_steps"]
    assert summary["final_loss"] == _log(tmp_path)[-1]["loss"]
    assert not (tmp_path / STATE_DIR).exists()


def test_a_resumed_stage_with_nothing_left_reports_its_final_loss_from_the_log(tmp_path):
    """A state saved at the stage's last step (what a stop on the last step used to leave): the rerun
    trains nothing and reports the logged loss of that step, not None."""
    stopped = run_stage(_plan(max_steps=2), tmp_path, deadline=time.monotonic() - 1)
    assert stopped["stopped"] == "time budget" and stopped["steps"] == 1
    rerun = run_stage(_plan(max_steps=1), tmp_path)
    assert rerun["stopped"] == "finished" and rerun["steps"] == 1
    assert rerun["final_loss"] == stopped["final_loss"] == _log(tmp_path)[-1]["loss"]


def test_a_resumed_stage_logs_each_step_once(tmp_path):
    """Killed after step 3 with the state saved at step 2: the rerun replays step 3, and the log holds
    each step of each stage once, with the losses of an uninterrupted run."""
    straight = tmp_path / "straight"
    straight.mkdir()
    for stage in ("first", "second"):
        run_stage(_plan(stage), straight)

    def interrupt(stage, step, total, loss):
        if step == 3:
            raise KeyboardInterrupt

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    run_stage(_plan("first"), resumed)
    with pytest.raises(KeyboardInterrupt):
        run_stage(_plan("second"), resumed, on_step=interrupt)
    assert [(r["stage"], r["step"]) for r in _log(resumed)][-3:] == [("second", 1), ("second", 2), ("second", 3)]
    run_stage(_plan("second"), resumed)
    steps = [(r["stage"], r["step"], r["loss"]) for r in _log(resumed)]
    assert steps == [(r["stage"], r["step"], r["loss"]) for r in _log(straight)]
    assert [(stage, step) for stage, step, _ in steps] == [("first", s) for s in (1, 2, 3, 4)] + [
        ("second", s) for s in (1, 2, 3, 4)
    ]


# ---- CALM's and ArtQuant's recipes (aesbench/models/recipe.py): their records in the checkpoint folder ----


def _unreachable(*args):
    raise AssertionError("the recipe went on past its damaged stages_done.json")


@pytest.mark.parametrize("recipe", ["calm", "artquant"])
@pytest.mark.parametrize("torn", ['{"config": {"seed": 0}, "do', "", "[]", '{"config": null, "done": "pretrain"}'])
def test_a_torn_stages_done_json_is_one_line(tmp_path, recipe, torn):
    """Rerunning a recipe whose stages_done.json was cut short (killed while it was written) names the file
    and what to do before anything is built or trained; it was a JSONDecodeError traceback."""
    from aesbench.errors import AesbenchError
    from aesbench.models.artquant_train import ArtQuantTrainConfig
    from aesbench.models.calm_train import CalmTrainConfig
    from aesbench.models.recipe import PROGRESS_FILE, run_recipe

    config = CalmTrainConfig() if recipe == "calm" else ArtQuantTrainConfig()
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / PROGRESS_FILE).write_text(torn)
    with pytest.raises(AesbenchError) as error:
        run_recipe(config, folder, ["pretrain"], ("pretrain",), _unreachable, _unreachable, {})
    line = str(error.value)
    assert "\n" not in line
    assert line == (
        f"{folder / PROGRESS_FILE} is damaged (empty, truncated or not a stages record), so which stages"
        f" finished is unknown; delete {folder} to train again from the start, or choose another --output"
    )


def test_training_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A recipe's training.json goes through store.write_text (a temporary file renamed over it): a write
    that fails (disk full) leaves the previous record as it was and is one line, not a truncated file."""
    from aesbench import store
    from aesbench.errors import AesbenchError
    from aesbench.models.recipe import PROVENANCE_FILE, write_provenance

    class Described:
        def describe(self):
            return {"name": "tiny", "config": {}}

    write_provenance(tmp_path, {"stages_done": ["pretrain"]}, Described())
    before = (tmp_path / PROVENANCE_FILE).read_text()
    assert json.loads(before) == {"stages_done": ["pretrain"], "model": {"name": "tiny", "config": {}}}

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(AesbenchError, match="cannot write .*training.json: No space left on device"):
        write_provenance(tmp_path, {"stages_done": ["pretrain", "comment"]}, Described())
    assert (tmp_path / PROVENANCE_FILE).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROVENANCE_FILE]


def test_auto_precision_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    assert resolve_mixed_precision("auto", torch) == ("bf16" if native_bf16(torch) else "no")
    assert [resolve_mixed_precision(p, torch) for p in ("no", "bf16", "fp16")] == ["no", "bf16", "fp16"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):  # an older torch, or a CPU without
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert resolve_mixed_precision("auto", torch) == "no"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert resolve_mixed_precision("auto", torch) == "bf16"


def test_stages_of_different_precisions_run_in_one_process(tmp_path):
    """accelerate keeps one precision per process; from Python a user may train in fp32, then in bf16."""
    for n, precision in enumerate(["no", "bf16", "no"]):
        (tmp_path / str(n)).mkdir()
        summary = run_stage(dataclasses.replace(_plan(), mixed_precision=precision), tmp_path / str(n))
        assert summary["stopped"] == "finished" and summary["mixed_precision"] == precision
