"""The four protocols. Each family has `predict` (ask the model, append lines to the store) and
`evaluate` (turn prediction lines into metrics, bootstrap CIs, per-sample details and skips).

`evaluate` never trusts its lines: they may come from a file made elsewhere, so every value is
checked again and an unusable line is a recorded skip.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import math
import numbers
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable

import numpy as np

from .adapter import Model, Request
from .captions import CaptionScorer
from .datasets import Dataset, Item
from .degradations import SUGGEST_KINDS, degrade, item_rng
from .errors import AesbenchError
from .images import ImageError, cpu_cores, load_image
from .judges import make_judge
from .metrics import ATTRIBUTE_METRICS, SCORE_FUNCTIONS, acc, bootstrap_ci, bootstrap_cis, emd, srcc
from .task import Task

Track = Callable[[Iterable, int, str], Iterable]
MAX_DECODE_THREADS = 8  # decoding a batch gains little past this; more threads only hold more images


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _request(task: Task) -> Request:
    lo, hi = task.protocol.get("score_range", (1.0, 10.0))
    return Request(prompt=task.prompt, score_range=(float(lo), float(hi)), attributes=tuple(task.protocol.get("attributes", ())))


def _decode_one(item: Item, task: Task, transform) -> tuple[Item, object, str | None]:
    """(item, image, None), or (item, None, reason) for an image that cannot be used."""
    try:
        img = load_image(item.image, task.preprocessing)
        return item, (transform(item, img) if transform else img), None
    except ImageError as e:
        return item, None, str(e)


@contextlib.contextmanager
def _decoder(items: int):
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
    with _decoder(len(items)) as pool:
        return _collect(_submit(pool, items, task, transform))


def _skip_lines(failed: list[tuple[Item, str]]) -> list[dict]:
    return [{"id": item.id, "skipped": reason} for item, reason in failed]


def _load(items: list[Item], task: Task, store, transform=None) -> tuple[list[Item], list]:
    """Decode a batch; an unreadable image becomes a skip line and never stops the run."""
    ok, images, failed = decode(items, task, transform)
    store.write(_skip_lines(failed))
    return ok, images


def _predict_items(task: Task, data: Dataset, store, batch_size: int, track: Track, verb: str, ask, transform=None) -> None:
    """The loop every per-image family shares: pending items in batches, decoded, asked, appended.
    The next batch decodes on the threads while the model works on this one."""
    pending = [it for it in data.items if it.id not in store]
    batches = chunks(pending, batch_size)
    with _decoder(batch_size) as pool:
        ahead = _submit(pool, batches[0], task, transform) if batches else []
        for n, _ in enumerate(track(batches, len(batches), f"{task.name}: {verb}")):
            items, images, failed = _collect(ahead)  # drops the previous batch: two batches in memory at most
            ahead = _submit(pool, batches[n + 1], task, transform) if n + 1 < len(batches) else []
            store.write(_skip_lines(failed))
            if items:
                store.write(ask(items, images))


def _check_count(model: Model, outputs: list, expected: int) -> None:
    if len(outputs) != expected:
        raise AesbenchError(f"model {model.name!r} returned {len(outputs)} outputs for {expected} images")


def check_score(line: dict) -> str | None:
    """Why a score line cannot be used, or None."""
    value = line.get("score")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"prediction has no numeric 'score' (got {value!r})"
    if not math.isfinite(value):
        return f"non-finite score {value}"
    dist = line.get("distribution")
    if dist is not None:
        try:
            arr = np.asarray(dist, dtype=float) if isinstance(dist, list) else None
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (10,) or not np.isfinite(arr).all() or (arr < 0).any() or abs(arr.sum() - 1) > 1e-3:
            return "distribution must be 10 finite non-negative probabilities summing to 1"
    return None


def _finite_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _attribute_values(values) -> dict:
    """A model's per-attribute scores as JSON numbers; a value that is no finite number is kept as null,
    so evaluate reports it rather than it vanishing."""
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) if _finite_number(v) else None for k, v in values.items()}


def check_text(line: dict, key: str) -> str | None:
    value = line.get(key)
    return None if isinstance(value, str) else f"prediction has no text {key!r} (got {type(value).__name__})"


def _usable(dataset: Dataset, lines: dict[str, dict], check) -> tuple[list[tuple[Item, dict]], list[dict]]:
    """Pair items with valid lines; everything else is a skip with its reason."""
    pairs, skipped = [], list(dataset.skipped)
    for item in dataset.items:
        line = lines.get(item.id)
        if line is None:
            skipped.append({"id": item.id, "reason": "no prediction"})
        elif "skipped" in line:
            skipped.append({"id": item.id, "reason": line["skipped"]})
        elif (reason := check(line)) is not None:
            skipped.append({"id": item.id, "reason": reason})
        else:
            pairs.append((item, line))
    known = {item.id for item in dataset.items}
    extra = sorted(set(lines) - known)
    if extra:
        skipped.append({"id": extra[0], "reason": f"{len(extra)} prediction id(s) not in the task, ignored (first: {extra[0]})"})
    return pairs, skipped


def _summary(metrics: dict, ci95: dict, undefined: dict, n: int, skipped: list, details: dict | None = None) -> dict:
    clean, why = {}, dict(undefined)
    for name, value in metrics.items():
        if value is None or not math.isfinite(value):
            why.setdefault(name, "undefined on these predictions (e.g. constant scores)")
        else:
            clean[name] = float(value)
    return {"n": n, "metrics": clean, "ci95": {k: v for k, v in ci95.items() if k in clean and v}, "undefined": why,
            "skipped": skipped, "details": details or {}}


class ScoreFamily:
    def predict(self, model: Model, task: Task, data: Dataset, store, batch_size: int, track: Track) -> None:
        request = _request(task)

        def ask(items, images):
            outputs = model.score(images, request)
            _check_count(model, outputs, len(items))
            lines = []
            for item, out in zip(items, outputs):
                line = {"id": item.id, "score": out.get("score")}
                if out.get("distribution") is not None:
                    line["distribution"] = list(out["distribution"])
                reason = check_score(line)
                if reason:
                    line = {"id": item.id, "skipped": f"model output unusable: {reason}"}
                else:  # numpy scalars become JSON numbers
                    line["score"] = float(line["score"])
                    if "distribution" in line:
                        line["distribution"] = [float(p) for p in line["distribution"]]
                    if out.get("attributes") is not None:
                        line["attributes"] = _attribute_values(out["attributes"])
                lines.append(line)
            return lines

        _predict_items(task, data, store, batch_size, track, "scoring", ask)

    SCALE_METRICS = ("acc", "mse")  # meaningful only when scores are on the task's scale

    def evaluate(self, task: Task, data: Dataset, lines: dict[str, dict], boot: dict, on_task_scale: bool = True) -> dict:
        pairs, skipped = _usable(data, lines, check_score)
        pred = np.array([line["score"] for _, line in pairs], dtype=np.float64)
        mos = np.array([item.label["mos"] for item, _ in pairs], dtype=np.float64)
        metrics, ci95, undefined = {}, {}, {}
        threshold = float(task.protocol.get("acc_threshold", 5.0))
        functions = dict(SCORE_FUNCTIONS, acc=functools.partial(acc, threshold=threshold))
        on_pairs, on_arrays = {}, {}  # every CI over the same resamples at once (metrics.bootstrap_cis)
        for name in task.metrics:
            if len(pairs) < 2:
                undefined[name] = f"needs at least 2 scored items, got {len(pairs)}"
            elif name in self.SCALE_METRICS and not on_task_scale:
                undefined[name] = "the model's scores are not on the task's scale"
            elif name == "emd":
                if not all("distribution" in line for _, line in pairs):
                    undefined[name] = "the model gives no 10-bin distribution"
                elif not all("distribution" in item.label for item, _ in pairs):
                    undefined[name] = "the dataset has no vote distributions"
                else:
                    p = np.array([line["distribution"] for _, line in pairs], dtype=np.float64)
                    t = np.array([item.label["distribution"] for item, _ in pairs], dtype=np.float64)
                    metrics[name], on_arrays[name] = emd(p, t), (emd, [p, t])
            else:
                fn = functions[name]
                metrics[name], on_pairs[name] = fn(pred, mos), fn
        if on_pairs or on_arrays:
            ci95.update(bootstrap_cis(on_pairs, pred, mos, boot["resamples"], boot["seed"], boot["level"], extra=on_arrays))
        details = {}
        if task.protocol.get("attributes"):
            details["attributes"] = self._attributes(task, pairs, (boot["resamples"], boot["seed"], boot["level"]), metrics, ci95, undefined)
        return _summary(metrics, ci95, undefined, len(pairs), skipped, details)

    def _attributes(self, task: Task, pairs: list, boot: tuple, metrics: dict, ci95: dict, undefined: dict) -> dict:
        """SRCC and PLCC per attribute over the items with both a label and a predicted value for it;
        every item left out is counted under its reason, and an attribute the model never scores is undefined."""
        details = {}
        for key in task.protocol["attributes"]:
            labels, preds, left_out = [], [], collections.Counter()
            for item, line in pairs:
                label = item.label.get("attributes", {}).get(key)
                given = line.get("attributes") if isinstance(line.get("attributes"), dict) else {}
                if label is None:
                    left_out["no label for this attribute"] += 1
                elif key not in given:
                    left_out["no prediction for this attribute"] += 1
                elif not _finite_number(given[key]):
                    left_out["predicted value is not a finite number"] += 1
                else:
                    labels.append(label)
                    preds.append(given[key])
            names = [f"{m}@{key}" for m in ATTRIBUTE_METRICS]
            if not any(isinstance(line.get("attributes"), dict) and key in line["attributes"] for _, line in pairs):
                undefined.update({name: f"the model gives no score for attribute {key!r}" for name in names})
            elif len(labels) < 2:
                undefined.update({name: f"needs at least 2 items with a label and a prediction for {key!r}, got {len(labels)}" for name in names})
            else:
                y, p = np.array(labels, dtype=np.float64), np.array(preds, dtype=np.float64)
                fns = {name: SCORE_FUNCTIONS[metric] for metric, name in zip(ATTRIBUTE_METRICS, names)}
                metrics.update({name: fn(p, y) for name, fn in fns.items()})
                ci95.update(bootstrap_cis(fns, p, y, *boot))
            details[key] = {"n": len(labels), "left_out": dict(left_out)}
        return details


class TextFamily:
    """Families whose model output is one text per image: `comment`, `suggest`."""

    method = key = verb = ""

    def transform(self, task: Task):
        return None

    def predict(self, model: Model, task: Task, data: Dataset, store, batch_size: int, track: Track) -> None:
        request = _request(task)

        def ask(items, images):
            outputs = getattr(model, self.method)(images, request)
            _check_count(model, outputs, len(items))
            return [{"id": it.id, self.key: str(text)} for it, text in zip(items, outputs)]

        _predict_items(task, data, store, batch_size, track, self.verb, ask, self.transform(task))


class CommentFamily(TextFamily):
    method, key, verb = "comment", "comment", "commenting"

    def evaluate(self, task: Task, data: Dataset, lines: dict[str, dict], boot: dict) -> dict:
        pairs, skipped = _usable(data, lines, lambda line: check_text(line, "comment"))
        if not pairs:
            return _summary({}, {}, {m: "no usable comments" for m in task.metrics}, 0, skipped)
        references = {item.id: item.label["references"] for item, _ in pairs}
        candidates = {item.id: line["comment"] for item, line in pairs}
        scorer = CaptionScorer()
        try:
            scored = scorer.score(references, candidates)
            ci95 = scorer.bootstrap(scored, boot["resamples"], boot["seed"], boot["level"])
        finally:
            scorer.close()
        per_item = {name: dict(zip(references, values)) for name, values in scored["per_item"].items()}
        metrics = {m: scored["metrics"][m] for m in task.metrics}
        details = {"per_item": per_item, "normalised": scored["normalised"]}
        return _summary(metrics, ci95, {}, len(pairs), skipped, details)


class SuggestFamily(TextFamily):
    method, key, verb = "suggest", "suggestion", "suggesting"

    def transform(self, task: Task):
        """Each image gets its item's degradation, seeded by (task seed, item id)."""
        severity, seed = float(task.protocol.get("severity", 1.0)), int(task.protocol.get("seed", 0))
        return lambda item, img: degrade(img, item.label["kind"], severity, item_rng(seed, item.id))

    def evaluate(self, task: Task, data: Dataset, lines: dict[str, dict], boot: dict) -> dict:
        pairs, skipped = _usable(data, lines, lambda line: check_text(line, "suggestion"))
        judge = make_judge(task.protocol.get("judge", "keyword"))
        kinds = list(task.protocol.get("kinds", SUGGEST_KINDS))  # the reader's default too
        verdicts = {}
        for item, line in pairs:
            verdicts[item.id] = {"kind": item.label["kind"], **judge.judge(line["suggestion"], item.label["kind"])}
        code = np.array([kinds.index(v["kind"]) for v in verdicts.values()], dtype=np.int64)
        correct = np.array([v["correct"] for v in verdicts.values()], dtype=np.float64)

        def per_kind(c, k):
            return [float(k[c == i].mean()) if (c == i).any() else float("nan") for i in range(len(kinds))]

        def average(c, k):
            return float(np.nanmean(per_kind(c, k))) if len(c) else float("nan")

        metrics, ci95 = {}, {}
        accs = per_kind(code, correct) if len(pairs) else [float("nan")] * len(kinds)
        for i, kind in enumerate(kinds):
            name = f"acc_{kind}"
            if name in task.metrics:
                metrics[name] = accs[i]
                ci95[name] = bootstrap_ci(lambda c, k, i=i: per_kind(c, k)[i], [code, correct], boot["resamples"], boot["seed"], boot["level"])
        if "acc_avg" in task.metrics:
            metrics["acc_avg"] = average(code, correct)
            ci95["acc_avg"] = bootstrap_ci(average, [code, correct], boot["resamples"], boot["seed"], boot["level"])
        return _summary(metrics, ci95, {}, len(pairs), skipped, {"judge": judge.describe(), "verdicts": verdicts})


def _person_score(out) -> float:
    """A PIAA score as a float; an unusable one is NaN, which evaluate reports as a skipped repeat."""
    return float(out["score"]) if isinstance(out, dict) and check_score(out) is None else float("nan")


PIAA_COLUMNS = ("piaa_srcc", "piaa_srcc_generic", "piaa_delta_srcc")  # per person, averaged over repeats


def _mean_defined(values: np.ndarray) -> float:
    """Mean over the people for whom the value is defined (NaN when nobody's is)."""
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def _scores_map(scores) -> bool:
    return isinstance(scores, dict) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in scores.values())


def draw_support(seed: int, unit: str, n: int, k: int) -> list[int]:
    """Positions of the k support images among a person's n readable images, fixed by (seed, unit)."""
    return sorted(item_rng(seed, unit).choice(n, size=k, replace=False).tolist())


class PiaaFamily:
    """Per person: k-shot support drawn with a seeded rng, adapt, score the rest; repeat; average
    SRCC over repeats, then over people. ΔSRCC compares with the same model unpersonalized on the
    same query images."""

    def _protocol(self, task: Task) -> tuple[list[int], int, int]:
        p = task.protocol
        return [int(k) for k in p.get("shots", [10, 100])], int(p.get("repeats", 10)), int(p.get("seed", 0))

    def units(self, task: Task, worker: str) -> list[str]:
        """The ids of a person's lines: the generic scores, then one per (k, repeat)."""
        shots, repeats, _ = self._protocol(task)
        return [f"{worker}/generic"] + [f"{worker}/k{k}/r{r}" for k in shots for r in range(repeats)]

    def predict(self, model: Model, task: Task, data: Dataset, store, batch_size: int, track: Track) -> None:
        request = _request(task)
        shots, repeats, seed = self._protocol(task)
        min_query = int(task.protocol.get("min_query", 10))
        for worker in track(list(data.groups), len(data.groups), f"{task.name}: personalizing"):
            if all(u in store for u in self.units(task, worker)):
                continue
            items, images = [], []
            for batch in chunks(data.groups[worker], batch_size):
                ok, imgs = _load([Item(f"{worker}/{it.id}", it.image, it.label) for it in batch], task, store)
                items += ok
                images += imgs
            ids = [it.id.split("/", 1)[1] for it in items]
            scores = [it.label["score"] for it in items]
            if f"{worker}/generic" not in store:
                generic = []
                for batch in chunks(images, batch_size):
                    outputs = model.score(batch, request)
                    _check_count(model, outputs, len(batch))
                    generic += [_person_score(out) for out in outputs]
                store.write([{"id": f"{worker}/generic", "worker": worker, "scores": dict(zip(ids, generic))}])
            for k in shots:
                for r in range(repeats):
                    unit = f"{worker}/k{k}/r{r}"
                    if unit in store:
                        continue
                    if len(ids) < k + min_query:
                        store.write([{"id": unit, "skipped": f"{len(ids)} readable images, need {k} support + {min_query} query"}])
                        continue
                    support = draw_support(seed, unit, len(ids), k)
                    chosen = set(support)
                    query = [i for i in range(len(ids)) if i not in chosen]
                    adapted = model.personalize([images[i] for i in support], [scores[i] for i in support], request)
                    predicted = []
                    for batch in chunks(query, batch_size):
                        outputs = adapted.score([images[i] for i in batch], request)
                        _check_count(model, outputs, len(batch))
                        predicted += [_person_score(out) for out in outputs]
                    store.write([{"id": unit, "worker": worker, "k": k, "repeat": r, "support": [ids[i] for i in support],
                                  "scores": {ids[i]: s for i, s in zip(query, predicted)}}])

    def evaluate(self, task: Task, data: Dataset, lines: dict[str, dict], boot: dict) -> dict:
        shots, repeats, seed = self._protocol(task)
        skipped = list(data.skipped) + [{"id": i, "reason": line["skipped"]} for i, line in lines.items() if "skipped" in line]
        per_worker = {k: {} for k in shots}  # k -> worker -> PIAA_COLUMNS values
        for worker, items in data.groups.items():
            truth = {it.id: it.label["score"] for it in items}
            readable = [it.id for it in items if f"{worker}/{it.id}" not in lines]  # unreadable images have skip lines
            generic = lines.get(f"{worker}/generic", {}).get("scores")
            if not _scores_map(generic):
                generic = None
            for k in shots:
                pairs = []
                for r in range(repeats):
                    line = lines.get(f"{worker}/k{k}/r{r}")
                    if line is None or "skipped" in line or generic is None:
                        if line is None or generic is None:
                            skipped.append({"id": f"{worker}/k{k}/r{r}", "reason": "no prediction"})
                        continue
                    if not _scores_map(line.get("scores")) or not isinstance(line.get("support"), list) \
                            or not all(isinstance(i, str) for i in line["support"]):
                        skipped.append({"id": f"{worker}/k{k}/r{r}", "reason": "malformed line: needs support (ids) and scores {id: number}"})
                        continue
                    expected = {readable[i] for i in draw_support(seed, f"{worker}/k{k}/r{r}", len(readable), k)} if len(readable) >= k else None
                    if set(line.get("support", [])) != expected:
                        skipped.append({"id": f"{worker}/k{k}/r{r}", "reason": "support set differs from the protocol's seeded draw"})
                        continue
                    query = [i for i in line["scores"] if i in truth and i in generic and i not in expected]
                    if len(query) < 3:
                        skipped.append({"id": f"{worker}/k{k}/r{r}", "reason": "fewer than 3 query images with predictions"})
                        continue
                    y = np.array([truth[i] for i in query])
                    p = np.array([line["scores"][i] for i in query], dtype=np.float64)
                    g = np.array([generic[i] for i in query], dtype=np.float64)
                    if not (np.isfinite(p).all() and np.isfinite(g).all()):
                        skipped.append({"id": f"{worker}/k{k}/r{r}", "reason": "non-finite scores"})
                        continue
                    pairs.append((srcc(p, y), srcc(g, y)))
                arr = np.array(pairs, dtype=np.float64).reshape(-1, 2)
                # A repeat with constant predictions has no SRCC: each column averages its defined repeats,
                # and the gain only counts repeats where both are defined.
                both = np.isfinite(arr).all(axis=1)
                if np.isfinite(arr[:, 0]).any():
                    per_worker[k][worker] = (float(np.nanmean(arr[:, 0])),
                                             float(np.nanmean(arr[:, 1])) if np.isfinite(arr[:, 1]).any() else float("nan"),
                                             float(np.mean(arr[both, 0] - arr[both, 1])) if both.any() else float("nan"))
        metrics, ci95, details = {}, {}, {}
        for n, k in enumerate(shots):
            suffix = "" if n == 0 else f"_k{k}"  # the first listed k is the headline number
            table = per_worker[k]
            columns = np.array(list(table.values()), dtype=np.float64).reshape(-1, 3)
            for name in task.metrics:
                column = columns[:, PIAA_COLUMNS.index(name)]
                metrics[name + suffix] = _mean_defined(column)
                ci95[name + suffix] = bootstrap_ci(_mean_defined, [column], boot["resamples"], boot["seed"], boot["level"])
            details[f"k{k}"] = {w: dict(zip(PIAA_COLUMNS, v)) for w, v in table.items()}
        n_workers = len(per_worker[shots[0]]) if shots else 0
        return _summary(metrics, ci95, {}, n_workers, skipped, {"per_worker": details, "shots": shots, "repeats": repeats})


FAMILIES = {"score": ScoreFamily(), "comment": CommentFamily(), "suggest": SuggestFamily(), "piaa": PiaaFamily()}
