import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def natural_image(seed: int = 0, size=(96, 64)) -> Image.Image:
    """A smooth gradient with some texture: enough structure for the handcrafted measures."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([0.5 + 0.4 * np.sin(3 * x + seed), 0.4 + 0.3 * y, 0.3 + 0.3 * np.cos(4 * y - seed)], axis=-1)
    base += 0.05 * rng.standard_normal((h, w, 1))
    return Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8), "RGB")


def write_csv_task(
    root: Path, scores: list, splits: list[str] | None = None, split: str | None = None, extra: str = ""
) -> Path:
    """A user's own csv score task in the minimal form, with real JPEG files img<i>.jpg; returns the YAML path."""
    (root / "images").mkdir(parents=True)
    rows = ["image,score" + (",split" if splits else "")]
    for i, score in enumerate(scores):
        natural_image(i).save(root / "images" / f"img{i}.jpg", quality=90)
        rows.append(f"img{i}.jpg,{score}" + (f",{splits[i]}" if splits else ""))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    path = root / "my.yaml"
    path.write_text(
        "name: my-score\nfamily: score\ndataset: {format: csv, path: labels.csv, images: images/"
        + (f", split: {split}" if split else "")
        + "}\n"
        + extra
    )
    return path


def prediction_records(path: Path) -> list[dict]:
    """A run's predictions.jsonl without its header line (store.py): one record per item."""
    from aesbench.store import HEADER_KEY

    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return records[1:] if records and HEADER_KEY in records[0] else records


requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="Java is needed by pycocoevalcap")


def run_cli(*args, env=None, check=False):
    """The installed `aesbench` command in a subprocess, as a user runs it."""
    exe = Path(sys.executable).parent / "aesbench"  # the command installed beside this interpreter
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "aesbench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=check, timeout=600)


def task_copy(folder: Path, name: str, resamples: int = 100, replace: dict | None = None) -> Path:
    """A built-in task saved under `folder` with fewer bootstrap resamples (and any text `replace`d),
    reading the built-in data, so tests that score it take seconds."""
    from aesbench.task import load_task

    source = load_task(name)
    root = source.dataset["root"]
    text = source.path.read_text().replace("resamples: 1000", f"resamples: {resamples}")
    text = text.replace(f"root: {root}", f"root: {source.path.parent / root}")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = folder / f"{name}-{len(list(folder.glob('*.yaml')))}.yaml"
    path.write_text(text)
    return path
