"""Hierarchical aesthetic descriptions (ArtQuant's RAD style): per image a perception, a cognition and
an emotion level, plus the score and its answer sentence.

The file is JSON lines, UTF-8. The first line is a header, {"aesbench_descriptions": 1, ...}, holding
the provenance (source, levels, rounds, prompts, the generator's describe(), seed, score range). Then
one object per image:

    {"id": str, "perception": str, "cognition": str, "emotion": str,
     "score": number or null, "score_sentence": str or null, "trace": {...}}      (trace optional)

or {"id": str, "skipped": reason} for an image that could not be described. `score` is the label from
the task (null for a plain folder), `score_sentence` ArtQuant's answer sentence for it, and `trace`
per level the rounds as [{"draft", "critique"}, ...] (the level's text is the last refinement).
Reading a file made elsewhere never stops on a bad line: it becomes a recorded skip with its reason.

`describe` writes such a file from images with any local generator (a model with the `comment`
capability that writes from Request.prompt), level by level: a draft, then `rounds` times a critique
of the draft and a refinement from draft and critique; each level's prompt includes the levels
before it. Records are appended and fsync'ed one image at a time through runs.PredictionStore, so an
interrupted run (even kill -9) continues where it stopped and never redoes a finished image.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .adapter import Model, Request
from .datasets import Item, read_dataset
from .errors import AesbenchError
from .images import ImageError, Preprocessing, load_image
from .pipeline import identity_track
from .store import PredictionStore
from .task import load_task
from .values import finite_number

LEVELS = ("perception", "cognition", "emotion")
FORMAT_KEY, FORMAT_VERSION = "aesbench_descriptions", 1
RECORD_KEYS = frozenset({"id", *LEVELS, "score", "score_sentence", "trace"})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

PROMPTS = {
    "perception": (
        "Describe this artwork at the level of perception: its colours, light and shadow, composition, "
        "lines, brushwork or texture, and technical quality. Be concrete; do not interpret it yet."
    ),
    "cognition": (
        "Perception of this artwork: {perception}\nNow describe it at the level of cognition: its subject, "
        "style and technique, what the artist seems to intend, and how well the visible choices serve it."
    ),
    "emotion": (
        "Perception of this artwork: {perception}\nCognition: {cognition}\nNow describe it at the level of "
        "emotion: the mood it creates and the feelings it evokes in a viewer, and why."
    ),
    "critique": (
        "Here is a draft {level}-level description of this artwork:\n{draft}\nCheck it against the image. "
        "List briefly what is wrong, missing or vague."
    ),
    "refine": (
        "Draft {level}-level description of this artwork:\n{draft}\nCritique of the draft:\n{critique}\n"
        "Rewrite the description so that it answers every point of the critique. Answer with the description only."
    ),
}

# ArtQuant's answer sentence: the level word whose band holds the score on a 0–10 scale, with its
# preprocessing's band edges (bad <= 1 < poor <= 3.5 < fair <= 5 < good <= 7.5 < excellent).
SCORE_LEVELS = ((1.0, "bad"), (3.5, "poor"), (5.0, "fair"), (7.5, "good"), (math.inf, "excellent"))


def score_sentence(score: float, score_range: tuple[float, float]) -> str:
    """ "The quality of the painting is <level>.", the score first mapped linearly onto 0–10."""
    lo, hi = score_range
    on_ten = (score - lo) / (hi - lo) * 10.0
    return f"The quality of the painting is {next(word for edge, word in SCORE_LEVELS if on_ten <= edge)}."


def check_record(record) -> str | None:
    """Why a description line cannot be used, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    unknown = sorted(set(record) - RECORD_KEYS)
    if unknown:
        return f"unknown key {unknown[0]!r} (known: {', '.join(sorted(RECORD_KEYS))})"
    for level in LEVELS:
        if not isinstance(record.get(level), str) or not record[level].strip():
            return f"no {level} text"
    score = record.get("score")
    if score is not None and not finite_number(score):
        return f"score {score!r} is neither a finite number nor null"
    if record.get("score_sentence") is not None and not isinstance(record["score_sentence"], str):
        return "score_sentence is neither text nor null"
    if "trace" in record and not isinstance(record["trace"], dict):
        return "trace is not an object"
    return None


@dataclass
class Descriptions:
    header: dict
    records: dict[str, dict]
    skipped: list[dict] = field(default_factory=list)


def read_descriptions(path: str | Path) -> Descriptions:
    """A descriptions file, validated line by line: every unusable line is a skip with its reason.
    The header is optional for files made elsewhere; a header of another format version is an error."""
    path = Path(path)
    if not path.is_file():
        raise AesbenchError(f"descriptions file {path} not found")
    header, records, skipped = {}, {}, []
    for n, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path.name}:{n}"
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            skipped.append({"id": where, "reason": "malformed line: not UTF-8 JSON"})
            continue
        if isinstance(record, dict) and FORMAT_KEY in record:
            if n != 1 or record[FORMAT_KEY] != FORMAT_VERSION:
                raise AesbenchError(
                    f"{where}: a header of format version {FORMAT_VERSION} may only open the file, found {record[FORMAT_KEY]!r} here"
                )
            header = record
            continue
        item_id = record.get("id") if isinstance(record, dict) else None
        if not isinstance(item_id, str) or not item_id:
            skipped.append({"id": where, "reason": "malformed line: needs a non-empty text 'id'"})
        elif item_id in records:
            skipped.append({"id": item_id, "reason": f"duplicate id at line {n}; the first was kept"})
        elif "skipped" in record:
            skipped.append({"id": item_id, "reason": str(record["skipped"])})
        elif (reason := check_record(record)) is not None:
            skipped.append({"id": item_id, "reason": f"malformed line {n}: {reason}"})
        else:
            records[item_id] = record
    return Descriptions(header, records, skipped)


@dataclass
class Source:
    """Images to describe: a folder's files, or a score task's items with their scores."""

    name: str
    items: list[Item]
    preprocessing: Preprocessing
    score_range: tuple[float, float] | None
    reader_skips: int = 0


def open_source(images: str, data_root: Path | None = None) -> Source:
    path = Path(images)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise AesbenchError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return Source(str(path), [Item(p.relative_to(path).as_posix(), p, {}) for p in files], Preprocessing(), None)
    task = load_task(images)
    if task.family != "score":
        raise AesbenchError(f"--images takes a folder or a score task; {task.name!r} is a {task.family} task")
    task.resolve_root(data_root)
    data = read_dataset(task)
    lo, hi = task.protocol.score_range
    return Source(task.name, data.items, task.preprocessing, (float(lo), float(hi)), len(data.skipped))


def _ask(model: Model, image, prompt: str) -> str:
    texts = model.comment([image], Request(prompt=prompt))
    if len(texts) != 1 or not isinstance(texts[0], str):
        raise AesbenchError(f"model {model.name!r} returned {texts!r} for one image; describe needs one text")
    return texts[0].strip()


def describe_image(model: Model, item: Item, source: Source, rounds: int) -> dict:
    """One image's record (or skip line): each level drafted, then critiqued and refined `rounds` times."""
    try:
        image = load_image(item.image, source.preprocessing)
    except ImageError as e:
        return {"id": item.id, "skipped": str(e)}
    record, trace = {"id": item.id}, {}
    for level in LEVELS:
        draft = _ask(model, image, PROMPTS[level].format(**{k: record[k] for k in LEVELS if k in record}))
        steps = []
        for _ in range(rounds):
            critique = _ask(model, image, PROMPTS["critique"].format(level=level, draft=draft))
            refined = _ask(model, image, PROMPTS["refine"].format(level=level, draft=draft, critique=critique))
            steps.append({"draft": draft, "critique": critique})
            draft = refined
        if not draft:
            return {"id": item.id, "skipped": f"the model wrote an empty {level} description"}
        record[level], trace[level] = draft, steps
    score = item.label.get("mos")
    record["score"] = score
    record["score_sentence"] = None if score is None else score_sentence(score, source.score_range)
    record["trace"] = trace
    return record


def describe(
    images: str,
    model: Model,
    output: Path,
    rounds: int = 1,
    seed: int = 0,
    limit: int | None = None,
    data_root: Path | None = None,
    track=identity_track,
) -> dict:
    """Describe a folder's images, or a score task's, into `output`; resume what is there. Returns counts.
    `seed` is the one the model was made with, recorded in the header."""
    if "comment" not in model.capabilities:
        raise AesbenchError(f"model {model.name!r} cannot write text (capability comment), which describe needs")
    source = open_source(images, data_root)
    items = source.items[:limit]
    header = {
        FORMAT_KEY: FORMAT_VERSION,
        "source": source.name,
        "levels": list(LEVELS),
        "rounds": rounds,
        "prompts": PROMPTS,
        "model": model.describe(),
        "seed": seed,
        "score_range": list(source.score_range) if source.score_range else None,
    }
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way, a read-only parent
        raise AesbenchError(f"cannot create {output.parent}: {e.strerror or type(e).__name__}") from None
    store = PredictionStore(output, header)
    resumed = len(store.lines)
    pending = [item for item in items if item.id not in store]
    for item in track(pending, len(pending), f"describing ({rounds} refinement round{'s' * (rounds != 1)})"):
        store.write([describe_image(model, item, source, rounds)])
    wanted = [store.lines[item.id] for item in items]
    return {
        "output": str(output),
        "images": len(items),
        "described": sum("skipped" not in r for r in wanted),
        "skipped": sum("skipped" in r for r in wanted),
        "resumed_from": resumed,
        "reader_skips": source.reader_skips,
    }
