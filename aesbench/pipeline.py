"""Getting images to a model: batching, a decoding thread pool, and the prefetching loop that every
per-image family shares (the next batch decodes while the model works on this one)."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable

from .images import ImageError, cpu_cores, load_image

if TYPE_CHECKING:
    from .datasets import Dataset, Item
    from .task import Task

Track = Callable[[Iterable, int, str], Iterable]
MAX_DECODE_THREADS = 8  # decoding a batch gains little past this; more threads only hold more images


def identity_track(iterable, total, description):
    """A Track that shows nothing."""
    return iterable


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _decode_one(item: Item, task: Task, transform) -> tuple[Item, object, str | None]:
    """(item, image, None), or (item, None, reason) for an image that cannot be used."""
    try:
        img = load_image(item.image, task.preprocessing)
        return item, (transform(item, img) if transform else img), None
    except ImageError as e:
        return item, None, str(e)


@contextlib.contextmanager
def decoder(items: int):
    """Threads that decode images: Pillow releases the GIL while it decodes, converts and resizes."""
    pool = ThreadPoolExecutor(max(1, min(cpu_cores(), items, MAX_DECODE_THREADS)), thread_name_prefix="aesbench-decode")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # an interrupted run does not decode the rest of a batch


def _submit(pool: ThreadPoolExecutor, items: list[Item], task: Task, transform) -> list[Future]:
    return [pool.submit(_decode_one, item, task, transform) for item in items]


def _collect(futures: list[Future]) -> tuple[list[Item], list, list[tuple[Item, str]]]:
    ok, images, failed = [], [], []
    for future in futures:
        item, img, reason = future.result()
        if reason is None:
            ok.append(item)
            images.append(img)
        else:
            failed.append((item, reason))
    return ok, images, failed


def decode(items: list[Item], task: Task, transform=None) -> tuple[list[Item], list, list[tuple[Item, str]]]:
    """Decode a batch with the task's preprocessing, in parallel threads, in order; unreadable images
    come back as (item, reason). The pixels are those of load_image called one image at a time."""
    with decoder(len(items)) as pool:
        return _collect(_submit(pool, items, task, transform))


def skip_lines(failed: list[tuple[Item, str]]) -> list[dict]:
    return [{"id": item.id, "skipped": reason} for item, reason in failed]


def load(items: list[Item], task: Task, store, transform=None) -> tuple[list[Item], list]:
    """Decode a batch; an unreadable image becomes a skip line in `store` and never stops the run."""
    ok, images, failed = decode(items, task, transform)
    store.write(skip_lines(failed))
    return ok, images


def predict_items(
    task: Task, data: Dataset, store, batch_size: int, track: Track, verb: str, ask, transform=None
) -> None:
    """Pending items in batches, decoded, asked (ask(items, images) -> lines), appended to `store`.
    The next batch decodes on the threads while the model works on this one."""
    pending = [it for it in data.items if it.id not in store]
    batches = chunks(pending, batch_size)
    with decoder(batch_size) as pool:
        ahead = _submit(pool, batches[0], task, transform) if batches else []
        for n, _ in enumerate(track(batches, len(batches), f"{task.name}: {verb}")):
            items, images, failed = _collect(ahead)  # drops the previous batch: two batches in memory at most
            ahead = _submit(pool, batches[n + 1], task, transform) if n + 1 < len(batches) else []
            store.write(skip_lines(failed))
            if items:
                store.write(ask(items, images))
