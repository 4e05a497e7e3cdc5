"""Readers for the datasets' own files. Each returns items plus the rows it could not use, with reasons.

A malformed row or a duplicate id never stops a read: it is recorded in `skipped` (id, reason) and
the results say so. Problems that make the whole dataset unusable (a missing label file, a wrong
header) raise AesbenchError with what was expected and where it was looked for.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .degradations import SUGGEST_KINDS, item_rng
from .errors import AesbenchError
from .task import Task


@dataclass
class Item:
    id: str
    image: Path
    label: dict  # family-specific: mos/distribution, references, degradation kind, a person's score


@dataclass
class Dataset:
    items: list[Item]
    label_files: list[Path]
    skipped: list[dict] = field(default_factory=list)
    groups: dict[str, list[Item]] = field(default_factory=dict)  # PIAA: person -> their rated items

    def by_id(self) -> dict[str, Item]:
        return {item.id: item for item in self.items}


def _dedupe(items: list[Item], skipped: list[dict], where: str) -> list[Item]:
    seen: set[str] = set()
    kept = []
    for item in items:
        if item.id in seen:
            skipped.append({"id": item.id, "reason": f"duplicate id in {where}; the first occurrence was kept"})
            continue
        seen.add(item.id)
        kept.append(item)
    return kept


def read_csv(task: Task) -> Dataset:
    """`image,score[,split]` with a header; the id is the image column's value."""
    path, images = task.file("path"), task.file("images")
    split = task.dataset.get("split")
    skipped, items = [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "image" not in columns or "score" not in columns:
            raise AesbenchError(f"{path}: header must have columns image,score[,split]; found {','.join(columns) or 'nothing'}")
        if split is not None and "split" not in columns:
            raise AesbenchError(f"{path}: task asks for split {split!r} but the CSV has no split column")
        for line, row in enumerate(reader, start=2):
            where = f"{path.name}:{line}"
            if None in row or None in row.values():  # more or fewer fields than the header
                skipped.append({"id": where, "reason": f"malformed row: {len(columns)} fields expected"})
                continue
            row = {k.strip(): v.strip() for k, v in row.items()}
            if split is not None and row.get("split") != str(split):
                continue
            if not row.get("image"):
                skipped.append({"id": where, "reason": "malformed row: empty image column"})
                continue
            try:
                score = float(row["score"])
            except (TypeError, ValueError):
                skipped.append({"id": row["image"], "reason": f"malformed row {where}: score {row.get('score')!r} is not a number"})
                continue
            if not math.isfinite(score):
                skipped.append({"id": row["image"], "reason": f"malformed row {where}: score is {score}"})
                continue
            items.append(Item(row["image"], images / row["image"], {"mos": score}))
    return Dataset(_dedupe(items, skipped, path.name), [path], skipped)


def read_ava(task: Task) -> Dataset:
    """AVA.txt (15 columns: index, id, ten vote counts, two tags, challenge) and a split list of ids.

    split `test` (default): the ids in the list. split `train`: every other id in AVA.txt, the
    field's convention (not generic_ls_train.jpgl, which lists only 20,000).
    """
    path, images = task.file("path"), task.file("images")
    split_list = task.file("split_list")
    split = task.dataset.get("split", "test")
    if split not in ("test", "train"):
        raise AesbenchError(f"task {task.name!r}: AVA split must be test or train, not {split!r}")
    skipped, votes = [], {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split()
        where = f"{path.name}:{line_no}"
        try:
            if len(cols) != 15:
                raise ValueError(f"{len(cols)} columns")
            image_id, counts = cols[1], np.array([int(c) for c in cols[2:12]], dtype=np.int64)
            if (counts < 0).any() or counts.sum() == 0:
                raise ValueError("vote counts must be non-negative with at least one vote")
        except ValueError as e:
            skipped.append({"id": where, "reason": f"malformed AVA row ({e}); expected 15 space-separated integers"})
            continue
        if image_id in votes:
            skipped.append({"id": image_id, "reason": f"duplicate id at {where}; the first occurrence was kept"})
            continue
        votes[image_id] = counts
    listed = _read_id_list(split_list)
    wanted = listed if split == "test" else sorted(set(votes) - set(listed))
    items = []
    for image_id in wanted:
        if image_id not in votes:
            skipped.append({"id": image_id, "reason": f"listed in {split_list.name} but has no valid row in {path.name}"})
            continue
        counts = votes[image_id]
        distribution = counts / counts.sum()
        mos = float(np.dot(np.arange(1, 11), counts) / counts.sum())  # MOS from the vote histogram
        items.append(Item(image_id, images / f"{image_id}.jpg", {"mos": mos, "distribution": distribution.tolist()}))
    return Dataset(_dedupe(items, skipped, split_list.name), [path, split_list], skipped)


def _read_id_list(path: Path) -> list[str]:
    return [line.strip().removesuffix(".jpg") for line in path.read_text().splitlines() if line.strip()]


def read_ava_captions(task: Task) -> Dataset:
    """Karpathy/COCO-style JSON: images[] with filename, split and sentences[].raw; the id is the AVA id."""
    path, images = task.file("path"), task.file("images")
    split = task.dataset.get("split", "test")
    field_name = task.dataset.get("reference_field", "raw")
    try:
        entries = json.loads(path.read_text())["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise AesbenchError(f"{path}: not an AVA-Captions JSON with an 'images' list ({type(e).__name__}: {e})") from None
    skipped, items = [], []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "filename" not in entry:
            skipped.append({"id": f"{path.name}:images[{n}]", "reason": "malformed entry: no filename"})
            continue
        if entry.get("split") != split:
            continue
        image_id = Path(entry["filename"]).stem
        refs = [s.get(field_name, "") for s in entry.get("sentences", []) if isinstance(s, dict)]
        refs = [r for r in refs if isinstance(r, str) and r.strip()]
        if not refs:
            skipped.append({"id": image_id, "reason": f"no reference sentences with a non-empty {field_name!r}"})
            continue
        items.append(Item(image_id, images / entry["filename"], {"references": refs}))
    return Dataset(_dedupe(items, skipped, path.name), [path], skipped)


def read_pccd(task: Task) -> Dataset:
    """PCCD critique records; the protocol picks the best-rated images and gives each one degradation.

    Selection: the `top` records by `overall` (ties by title). Kinds: a seeded shuffle of the
    selected images, then the six kinds in turn, so each kind gets a near-equal share.
    """
    path, images = task.file("path"), task.file("images")
    proto = task.protocol
    key, suffix = task.dataset.get("image_key", "title"), task.dataset.get("image_suffix", ".jpg")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AesbenchError(f"{path}: not valid JSON ({e})") from None
    if isinstance(records, dict):
        records = list(records.values())
    skipped, rated = [], []
    for n, rec in enumerate(records):
        try:
            rated.append((float(rec["overall"]), str(rec[key])))
        except (KeyError, TypeError, ValueError):
            skipped.append({"id": f"{path.name}[{n}]", "reason": f"malformed record: needs {key!r} and a numeric 'overall'"})
    rated.sort(key=lambda r: (-r[0], r[1]))
    chosen = sorted({title for _, title in rated[: int(proto.get("top", 100))]})
    kinds = list(proto.get("kinds", SUGGEST_KINDS))
    order = item_rng(int(proto.get("seed", 0)), "pccd-kinds").permutation(len(chosen))
    items = []
    for slot, idx in enumerate(order):
        title = chosen[idx]
        kind = kinds[slot % len(kinds)]
        name = title if Path(title).suffix else title + suffix
        items.append(Item(f"{title}/{kind}", images / name, {"kind": kind}))
    items.sort(key=lambda it: it.id)
    return Dataset(_dedupe(items, skipped, path.name), [path], skipped)


def read_flickr_aes(task: Task) -> Dataset:
    """FLICKR-AES per-worker ratings (header ` worker, imagePair, score`) and a list of test workers."""
    path, images = task.file("path"), task.file("images")
    workers_file = task.file("test_workers")
    wanted = [w.strip() for w in workers_file.read_text().splitlines() if w.strip()]
    skipped, groups = [], {w: [] for w in wanted}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        try:
            iw, ii, isc = header.index("worker"), header.index("imagePair"), header.index("score")
        except ValueError:
            raise AesbenchError(f"{path}: header must name worker, imagePair and score; found {header}") from None
        seen = set()
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                worker, image, score = row[iw].strip(), row[ii].strip(), float(row[isc])
                if not math.isfinite(score) or not image:
                    raise ValueError
            except (IndexError, ValueError):
                skipped.append({"id": f"{path.name}:{line}", "reason": "malformed row: needs worker, imagePair and a numeric score"})
                continue
            if worker not in groups:
                continue
            if (worker, image) in seen:
                skipped.append({"id": f"{worker}/{image}", "reason": f"duplicate rating at {path.name}:{line}; the first was kept"})
                continue
            seen.add((worker, image))
            groups[worker].append(Item(image, images / image, {"score": score, "worker": worker}))
    for worker in wanted:
        if not groups[worker]:
            skipped.append({"id": worker, "reason": f"test worker has no ratings in {path.name}"})
    groups = {w: items for w, items in groups.items() if items}
    items = [it for w in groups for it in groups[w]]
    return Dataset(items, [path, workers_file], skipped, groups)


READERS = {
    "csv": read_csv,
    "ava": read_ava,
    "ava-captions": read_ava_captions,
    "pccd": read_pccd,
    "flickr-aes": read_flickr_aes,
}


def read_dataset(task: Task) -> Dataset:
    fmt = task.dataset["format"]
    if fmt not in READERS:
        raise AesbenchError(f"task {task.name!r}: unknown dataset format {fmt!r}; known: {', '.join(READERS)}")
    return READERS[fmt](task)
