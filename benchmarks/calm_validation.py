"""CALM on validation images only: the numbers its recipe's defaults are chosen on.

    python benchmarks/calm_validation.py CKPT [CKPT ...]

On tiny-ava-comment's 15 validation images (never trained on, never a test image): the greedy comment
to tiny-ava-comment's prompt (how many distinct; per edit kind, how often it is named on the images
that carry it against the others, with comment_grounding.py's words), and the suggestion to
tiny-pccd-suggest's prompt for each image degraded by each of the six suggest kinds (severity 1, seeded),
judged by the keyword judge (accuracy per kind and on average).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from aesbench.degradations import SUGGEST_KINDS, degrade, item_rng
from aesbench.images import load_image
from aesbench.judges import KeywordJudge
from aesbench.models.vlm import load_network, text_sample
from aesbench.task import load_task

sys.path.insert(0, str(Path(__file__).parent))
from comment_grounding import naming, read_edits  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tasks/data/tiny-ava"


def validate(checkpoint: str) -> dict:
    network = load_network(checkpoint, "calm").eval()
    edits = read_edits()
    entries = [e for e in json.loads((DATA / "ava_captions.json").read_text())["images"] if e["split"] == "val"]
    images = [load_image(DATA / "images" / e["filename"]) for e in entries]
    kinds = [edits[e["filename"].removesuffix(".jpg")] for e in entries]
    comments = network.generate([text_sample([img], load_task("tiny-ava-comment").prompt) for img in images])
    named = {kind: f"{a}/{b} vs {c}/{d}" for kind, (a, b, c, d) in naming(comments, kinds).items()}
    prompt, judge = load_task("tiny-pccd-suggest").prompt, KeywordJudge()
    asked = [(i, kind) for i in range(len(images)) for kind in SUGGEST_KINDS]
    samples = [
        text_sample([degrade(images[i], kind, 1.0, item_rng(0, f"val/{i}/{kind}"))], prompt) for i, kind in asked
    ]
    correct = [judge.judge(s, kind)["correct"] for s, (_, kind) in zip(network.generate(samples), asked)]
    accuracy = {k: sum(c for c, (_, kind) in zip(correct, asked) if kind == k) / len(images) for k in SUGGEST_KINDS}
    return {
        "checkpoint": checkpoint,
        "comments_distinct": f"{len(set(comments))}/{len(comments)}",
        "named_on_own_vs_others": named,
        "suggest_accuracy": {k: round(v, 3) for k, v in accuracy.items()},
        "suggest_acc_avg": round(sum(accuracy.values()) / len(accuracy), 3),
        "comments": comments,
    }


if __name__ == "__main__":
    torch.manual_seed(0)
    for path in sys.argv[1:]:
        print(json.dumps(validate(path), indent=1))
