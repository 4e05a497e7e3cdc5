"""Do a run's comments depend on the image? Reads a tiny-ava-comment run's predictions.jsonl.

    python benchmarks/comment_grounding.py runs/calm-comment/predictions.jsonl

Prints how many comments are distinct, and for each edit kind of the tiny split (from
tasks/data/tiny-ava/edits.csv) how often a comment mentions it on the images that carry that edit
against the images that do not. A comment mentions a kind when it holds one of the kind's own words:
the words of the split builder's "the photo is ___" phrases for that kind (tools/build_tiny_splits.py,
EDIT_PHRASES[kind]["states"]) that no other kind's phrases use, so the words are the references'
vocabulary, not chosen here.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
from build_tiny_splits import EDIT_PHRASES  # noqa: E402

WORD = re.compile(r"[a-z']+")
STOP = {
    "a",
    "the",
    "and",
    "by",
    "in",
    "of",
    "at",
    "all",
    "too",
    "very",
    "not",
    "missing",
    "ruined",
    "spoiled",
    "lost",
    "quality",
}


def kind_words() -> dict[str, set[str]]:
    words = {
        kind: {w for text in bank["states"] for w in WORD.findall(text.lower())} - STOP
        for kind, bank in EDIT_PHRASES.items()
    }
    return {kind: own - set().union(*(w for k, w in words.items() if k != kind)) for kind, own in words.items()}


def read_edits() -> dict[str, set[str]]:
    """Image id (file name without .jpg) -> the edit kinds the tiny split made to it."""
    with open(REPO / "tasks/data/tiny-ava/edits.csv") as f:
        return {row["id"]: {e.split(":")[0] for e in row["edits"].split(";") if e} for row in csv.DictReader(f)}


def naming(comments: list[str], edits: list[set[str]]) -> dict[str, tuple[int, int, int, int]]:
    """Per edit kind carried by some image: (named on its images, its images, named on the others, the others)."""
    counts = {}
    for kind, words in sorted(kind_words().items()):
        mentions = [bool(set(WORD.findall(c.lower())) & words) for c in comments]
        on = [m for m, e in zip(mentions, edits) if kind in e]
        off = [m for m, e in zip(mentions, edits) if kind not in e]
        if on:
            counts[kind] = (sum(on), len(on), sum(off), len(off))
    return counts


def main(path: str) -> None:
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    comments = {str(line["id"]).removesuffix(".jpg"): line["comment"] for line in lines if "comment" in line}
    edits = read_edits()
    print(f"{len(comments)} comments, {len(set(comments.values()))} distinct; most common:")
    for text, n in Counter(comments.values()).most_common(3):
        print(f"  {n:3d}  {text[:100]!r}")
    print(f"\n{'edit':16s} {'with edit':>16s} {'without':>16s}")
    named = naming(list(comments.values()), [edits.get(k, set()) for k in comments])
    for kind, (on, n_on, off, n_off) in named.items():
        print(f"{kind:16s} {on:3d}/{n_on:3d} = {on / n_on:.2f}   {off:3d}/{n_off:3d} = {off / n_off:.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
