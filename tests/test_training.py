"""The shared stage runner (aesbench/training.py) on a tiny linear model: how a stage stops, resumes and logs."""

from __future__ import annotations

import json
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from aesbench.training import LOG_FILE, STATE_DIR, Schedule, StagePlan, run_stage  # noqa: E402


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
