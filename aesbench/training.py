"""The training loop every trainable model here shares: stages of optimiser steps through accelerate.

The same code runs as is on one CPU and, under `accelerate launch`, on several GPUs or machines:
each optimiser step's batch is split across processes (process r takes samples r, r + world, ...),
the module is wrapped for distributed gradients, each process's loss is weighted so that the mean
of their gradients is the whole batch's (a step gives the weights one process would), and only the
main process writes. A stage is warm-up then cosine decay, gradient accumulation, mixed precision
where the hardware has it, and seeded: the order of samples in epoch e is a permutation drawn from
(seed, stage, e), and each sample is built from (seed, stage, e, index), so a resumed run sees
exactly the batches an uninterrupted one would. State (weights being trained, optimiser, scheduler,
step) is saved every `save_every` steps into OUTPUT/state and the stage resumes from it; the log's lines
of the steps after it, written before the stop, are dropped then, so the log holds each step once.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import distributed
from .degradations import item_rng
from .errors import AesbenchError
from .store import write_json, write_text
from .weights import optional_import

LOG_FILE, PLOT_FILE, STATE_DIR = "train_log.jsonl", "loss.png", "state"


@dataclass
class Schedule:
    """One stage's optimisation settings."""

    epochs: float = 1.0
    batch_size: int = 8  # samples per optimiser step, over all processes and accumulation steps
    grad_accum: int = 1
    lr: float = 1e-4
    aligner_lr: float | None = None  # the VLMs' aligner's own rate (None: lr); their LLM takes lr
    warmup: float = 0.05  # fraction of the stage's steps
    weight_decay: float = 0.0
    max_steps: int | None = None

    def check(self, stage: str) -> None:
        if (
            self.epochs <= 0
            or self.batch_size < 1
            or self.grad_accum < 1
            or not self.lr > 0
            or not 0 <= self.warmup < 1
            or (self.aligner_lr is not None and not self.aligner_lr > 0)
        ):
            raise AesbenchError(
                f"stage {stage!r}: needs epochs > 0, batch_size >= 1, grad_accum >= 1, lr > 0 and 0 <= warmup < 1; got {self}"
            )


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def native_bf16(torch) -> bool:
    """Whether this machine computes bf16 matrix products in hardware: a GPU with bf16, or a CPU with
    AMX or AVX512-BF16 (without them bf16 is emulated on a CPU and slower than fp32). On 2 AMX cores
    bf16 autocast runs the frozen encoder's passes twice as fast and an LLM's training steps 5-30%
    faster (PyTorch's CPU flash-attention backward is slower in bf16 than in fp32; measured)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def resolve_mixed_precision(mixed_precision: str, torch) -> str:
    """The precision "auto" means on this machine: bf16 where it is native, else "no" (fp32)."""
    if mixed_precision == "auto":
        return "bf16" if native_bf16(torch) else "no"
    return mixed_precision


def make_accelerator(mixed_precision: str = "auto"):
    accelerate = optional_import("accelerate", "train", "training")
    torch = optional_import("torch", "train", "training")
    mixed_precision = resolve_mixed_precision(mixed_precision, torch)
    state = accelerate.state.AcceleratorState
    if state._shared_state.get("_mixed_precision", mixed_precision) != mixed_precision:
        # accelerate holds one precision per process; a stage of another one ran here before (from Python:
        # NIMA in fp32, then CALM in bf16), so its state starts afresh (the process group, if any, stays)
        state._reset_state(reset_partial_state=False)
    # Without cpu=True accelerate treats launched processes on a machine without GPUs as unrelated single ones.
    cpu = distributed.world_size() > 1 and not torch.cuda.is_available()
    # split_batches: each step's batch is split across the processes, so the schedule moves once per step
    # (without it accelerate steps it once per process).
    return accelerate.Accelerator(
        mixed_precision=mixed_precision,
        cpu=cpu,
        dataloader_config=accelerate.utils.DataLoaderConfiguration(split_batches=True),
    )


@dataclass
class StagePlan:
    """One stage of training: `params` (tensors, or optimiser groups with their own "lr") of `module`,
    trained on `n_samples` samples, build(epoch, index) -> one sample, towards loss_fn(module, samples)
    -> dict of named loss tensors whose sum is minimised."""

    stage: str
    module: object
    params: list
    n_samples: int
    build: Callable
    loss_fn: Callable
    schedule: Schedule
    seed: int = 0
    mixed_precision: str = "auto"
    save_every: int = 50


def run_stage(
    plan: StagePlan,
    output: Path,
    on_step: Callable | None = None,
    deadline: float | None = None,
    on_epoch: Callable | None = None,
) -> dict:
    """Run one stage of training into `output` (resuming its saved state); return a summary (steps, final
    loss, stopped why). on_step(stage, step, total, loss) feeds a progress bar; on_epoch(stage, epoch)
    runs after each whole epoch (learning curves), with the module in eval mode.
    """
    stage, module, params, n_samples, build, loss_fn = (
        plan.stage,
        plan.module,
        plan.params,
        plan.n_samples,
        plan.build,
        plan.loss_fn,
    )
    schedule, seed, mixed_precision, save_every = plan.schedule, plan.seed, plan.mixed_precision, plan.save_every
    torch = optional_import("torch", "train", "training")
    accelerate_utils = optional_import("accelerate.utils", "train", "training")
    schedule.check(stage)
    accelerator = make_accelerator(mixed_precision)  # one per stage: it saves and restores this stage's state only
    world, rank = accelerator.num_processes, accelerator.process_index
    steps_per_epoch = math.ceil(n_samples / schedule.batch_size)
    total = math.ceil(steps_per_epoch * schedule.epochs)
    if schedule.max_steps:
        total = min(total, schedule.max_steps)
    optimiser = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    warm = int(schedule.warmup * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: warmup_cosine(s, total, warm))
    wrapped, optimiser, scheduler = accelerator.prepare(module, optimiser, scheduler)
    state_dir, step = output / STATE_DIR, 0
    marker = state_dir / "stage.json"
    saved = _read_marker(marker) if marker.is_file() else {}
    if saved.get("stage") == stage:
        accelerator.load_state(str(state_dir))
        step = saved["step"]
    # A resumed stage with nothing left to do reports its final loss from the log.
    record = _trim_log(output / LOG_FILE, stage, step) if accelerator.is_main_process else None
    started, stopped = time.monotonic(), "finished"
    wrapped.train()
    log = open(output / LOG_FILE, "a") if accelerator.is_main_process else None
    order_epoch, order = None, []
    try:
        while step < total:
            epoch, position = divmod(step, steps_per_epoch)
            if epoch != order_epoch:  # drawn once an epoch (a permutation of 230k samples takes 15 ms)
                generator = torch.Generator().manual_seed(_seed(seed, stage, epoch))
                order_epoch, order = epoch, torch.randperm(n_samples, generator=generator).tolist()
            batch = order[position * schedule.batch_size : (position + 1) * schedule.batch_size]
            mine = batch[rank::world]
            # Each sample counts world / len(batch), so the mean over processes of their gradients is the batch
            # mean even when shards differ in size; a process with no sample (a short last batch) still joins
            # the gradient all-reduce, with one sample weighted 0.
            own = bool(mine)
            mine = mine or batch[:1]
            micro = [mine[i :: schedule.grad_accum] for i in range(schedule.grad_accum)]
            micro = [m for m in micro if m]
            parts_sum: dict[str, float] = {}
            for i, indices in enumerate(micro):
                samples = [build(epoch, index) for index in indices]
                with accelerator.autocast():
                    parts = loss_fn(wrapped, samples)
                loss = sum(parts.values()) * (len(indices) * world / len(batch) if own else 0.0)
                if i < len(micro) - 1:
                    with accelerator.no_sync(wrapped):
                        accelerator.backward(loss)
                else:
                    accelerator.backward(loss)
                for name, value in parts.items():
                    parts_sum[name] = parts_sum.get(name, 0.0) + (
                        value.item() * len(indices) / len(batch) if own else 0.0
                    )
            optimiser.step()
            scheduler.step()
            optimiser.zero_grad()
            step += 1
            if world > 1:  # every process's share of the batch mean, by name (a batch may lack a part)
                parts_sum = _sum_by_name(accelerate_utils.gather_object([parts_sum]))
            value = sum(parts_sum.values())
            record = {
                "stage": stage,
                "step": step,
                "epoch": round(step / steps_per_epoch, 4),
                "loss": round(value, 6),
                **{k: round(v, 6) for k, v in parts_sum.items()},
                "lr": scheduler.get_last_lr()[0],
                "time_s": round(time.monotonic() - started, 3),
            }
            if log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if on_step:
                on_step(stage, step, total, value)
            if step % save_every == 0 and step < total:
                _save_state(accelerator, state_dir, stage, step)
            if on_epoch and step % steps_per_epoch == 0:
                wrapped.eval()
                on_epoch(stage, step // steps_per_epoch)
                wrapped.train()
            if deadline and step < total and time.monotonic() > deadline:
                stopped = "time budget"
                break
    finally:
        if log:
            log.close()
    if stopped != "finished":
        _save_state(accelerator, state_dir, stage, step)
    elif accelerator.is_main_process and state_dir.exists():
        shutil.rmtree(state_dir)
    wrapped.eval()
    return {
        "stage": stage,
        "steps": step,
        "total_steps": total,
        "samples": n_samples,
        "final_loss": record and record["loss"],
        "stopped": stopped,
        "seconds": round(time.monotonic() - started, 3),
        "processes": world,
        "mixed_precision": str(accelerator.mixed_precision),
        "schedule": schedule.__dict__,
    }


def _sum_by_name(parts: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, 0.0) + value
    return total


def _seed(seed: int, stage: str, epoch: int) -> int:
    return int(item_rng(seed, f"{stage}/order/{epoch}").integers(2**62))


def _trim_log(log_file: Path, stage: str, step: int) -> dict | None:
    """Keep the log's lines of other stages and of this stage's steps up to `step`, where it resumes (the
    steps after it were logged before a stop and are about to be replayed); a torn line goes too.
    Returns this stage's last record kept, if any."""
    if not log_file.is_file():
        return None
    lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    kept, last = [], None
    for line in lines:
        try:
            record = json.loads(line)
            if record["stage"] != stage:
                kept.append(line)
            elif record["step"] <= step:
                kept.append(line)
                last = record
        except (json.JSONDecodeError, TypeError, KeyError):
            pass  # a torn write: dropped
    if len(kept) < len(lines):
        write_text(log_file, "".join(line + "\n" for line in kept))
    return last


def _read_marker(marker: Path) -> dict:
    """The saved state's stage.json ({"stage": ..., "step": ...}), or one line saying what to do."""
    try:
        saved = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        saved = None
    if not (isinstance(saved, dict) and isinstance(saved.get("stage"), str) and isinstance(saved.get("step"), int)):
        raise AesbenchError(
            f"{marker} is damaged (empty, truncated or not a stage record), so the saved training state cannot"
            f" be resumed; delete {marker.parent} to restart the stage, or choose another --output"
        )
    return saved


def _save_state(accelerator, state_dir: Path, stage: str, step: int) -> None:
    accelerator.save_state(str(state_dir))
    if accelerator.is_main_process:
        write_json(state_dir / "stage.json", {"stage": stage, "step": step})


def plot_losses(log_file: Path, out: Path) -> None:
    """Loss against step, one colour per stage (PNG next to the log)."""
    from .plots import pyplot

    plt = pyplot()
    rows = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    offset = 0
    for stage in dict.fromkeys(r["stage"] for r in rows):
        mine = [r for r in rows if r["stage"] == stage]
        ax.plot([offset + r["step"] for r in mine], [r["loss"] for r in mine], label=stage, linewidth=1)
        offset += mine[-1]["step"]
    ax.set_xlabel("optimiser step (stages in order)")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
