"""Several processes on one run, started by `accelerate launch` or `torchrun`.

Both launchers set WORLD_SIZE, RANK and LOCAL_RANK; without them (WORLD_SIZE 1) everything here is a
no-op and torch is never imported, so the command works without torch. A process that fails stops:
the launcher then ends the others, and what they had written stays in their shard files.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import sys

from .errors import AesbenchError

# A rank that finishes its share early waits at the gather for the slowest one: hours on a big task.
WAIT = dt.timedelta(hours=12)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0


def start() -> None:
    """Join the launcher's process group, before any model is built: on GPUs each process takes
    cuda:LOCAL_RANK, which is where a model asking for "cuda" lands. finish() leaves it."""
    if world_size() == 1:
        if any(
            int(os.environ.get(k, "1")) > 1 for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
        ):  # else each would run it all
            raise AesbenchError("MPI launches are not supported: use accelerate launch --multi_gpu or torchrun")
        return
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise AesbenchError("several processes need torch: pip install torch") from None
    if dist.is_initialized():
        return
    gpu = torch.cuda.is_available()
    if gpu:
        local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= count:
            raise AesbenchError(
                f"process with LOCAL_RANK {local} has no GPU ({count} visible):"
                f" launch at most {count} processes per machine"
            )
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if gpu else "gloo", timeout=WAIT)


def finish(ok: bool = True) -> None:
    """Leave the process group, whoever made it (this module or accelerate): left to the interpreter's
    teardown, gloo's threads can abort a process whose work is done. After a failure only a gloo group
    is destroyed, without waiting: NCCL's teardown is collective and would wait for the others."""
    dist = sys.modules.get("torch.distributed")  # not imported: no group (and maybe no torch)
    if dist is None or not dist.is_initialized():
        return
    if ok:
        dist.barrier()  # the processes leave together
    if ok or dist.get_backend() == "gloo":
        gc.collect()  # a DDP wrapper in a reference cycle still holds the group: it must go first
        dist.destroy_process_group()


def gather(obj) -> list | None:
    """Every rank's `obj` in rank order on rank 0, None on the others."""
    if world_size() == 1:
        return [obj]
    import torch.distributed as dist

    gathered = [None] * world_size() if rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def on_main(fn):
    """fn() on rank 0 and its result on every rank; its AesbenchError is raised on every rank, so
    none goes on without it."""
    if world_size() == 1:
        return fn()
    result = error = None
    if rank() == 0:
        try:
            result = fn()
        except AesbenchError as e:
            error = str(e)
    result, error = broadcast((result, error))
    if error is not None:
        raise AesbenchError(error)
    return result
