"""Does a score model see degradations it was not trained on? Real photos, damaged with Pillow's own
filters (not aesbench/degradations.py, which makes the tiny splits and CALM's training edits).

    python benchmarks/outside_degradations.py --model handcrafted --model ckpt/calm [--photos DIR]

For every photo (kind "photo" in the corpus's SOURCES.csv, or every JPEG in --photos): the clean
image and five kinds of damage at two strengths (Gaussian blur, brightness down and up, colour
down, JPEG quality, box-filter down-and-up sampling). Prints, per model, the SRCC between its
scores and the damage level (0 clean, 1 mild, 2 strong; negated, so higher is better) over all
images, and the share of (clean, damaged) pairs of the same photo in which the clean one scores higher.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy.stats import spearmanr

from aesbench.adapter import Request, load_model

CORPUS = Path("/work/shared/corpus")


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def resample(img: Image.Image, factor: int) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, w // factor), max(1, h // factor)), Image.BOX).resize((w, h), Image.NEAREST)


DAMAGE = {  # kind: (mild, strong)
    "gaussian_blur": (
        lambda im: im.filter(ImageFilter.GaussianBlur(2)),
        lambda im: im.filter(ImageFilter.GaussianBlur(5)),
    ),
    "darker": (
        lambda im: ImageEnhance.Brightness(im).enhance(0.6),
        lambda im: ImageEnhance.Brightness(im).enhance(0.3),
    ),
    "brighter": (
        lambda im: ImageEnhance.Brightness(im).enhance(1.5),
        lambda im: ImageEnhance.Brightness(im).enhance(2.2),
    ),
    "colour_down": (lambda im: ImageEnhance.Color(im).enhance(0.4), lambda im: ImageEnhance.Color(im).enhance(0.0)),
    "jpeg": (lambda im: jpeg(im, 15), lambda im: jpeg(im, 4)),
    "resample": (lambda im: resample(im, 4), lambda im: resample(im, 10)),
}


def photos(folder: Path | None) -> list[Path]:
    if folder is not None:
        return sorted(folder.glob("*.jpg"))
    with open(CORPUS / "SOURCES.csv") as f:
        return sorted(CORPUS / row["file"] for row in csv.DictReader(f) if row["kind"] == "photo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", required=True, help="a registered model or a checkpoint folder (repeatable)"
    )
    parser.add_argument("--photos", type=Path, default=None)
    args = parser.parse_args()
    images, levels, groups = [], [], []
    for n, path in enumerate(photos(args.photos)):
        clean = Image.open(path).convert("RGB")
        images.append(clean), levels.append(0), groups.append((n, "clean"))
        for kind, (mild, strong) in DAMAGE.items():
            for level, damage in ((1, mild), (2, strong)):
                images.append(damage(clean)), levels.append(level), groups.append((n, kind))
    levels = np.asarray(levels)
    print(f"{len(set(g[0] for g in groups))} photos, {len(images)} images ({len(DAMAGE)} kinds x 2 strengths + clean)")
    for name in args.model:
        model = load_model(name)
        scores = np.concatenate(
            [
                [s["score"] for s in model.score(images[i : i + 16], Request(score_range=(1.0, 10.0)))]
                for i in range(0, len(images), 16)
            ]
        )
        clean = {g[0]: s for g, s, lv in zip(groups, scores, levels) if lv == 0}
        pairs = [s < clean[g[0]] for g, s, lv in zip(groups, scores, levels) if lv > 0]
        per_kind = {
            kind: np.mean([s < clean[g[0]] for g, s, lv in zip(groups, scores, levels) if lv > 0 and g[1] == kind])
            for kind in DAMAGE
        }
        print(
            f"{name}: SRCC(score, -damage) {spearmanr(scores, -levels)[0]:.3f}; clean above damaged in {np.mean(pairs):.3f} of pairs"
            f" ({', '.join(f'{k} {v:.2f}' for k, v in per_kind.items())})"
        )


if __name__ == "__main__":
    main()
