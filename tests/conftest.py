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


@pytest.fixture
def score_task(tmp_path):
    """A user's own csv score task in the minimal form, with real JPEG files."""
    images = tmp_path / "images"
    images.mkdir()
    rows = ["image,score"]
    for i in range(12):
        natural_image(i).save(images / f"img{i:02d}.jpg", quality=90)
        rows.append(f"img{i:02d}.jpg,{3 + (i * 7) % 5 + 0.5}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "my.yaml").write_text(
        "name: my-score\nfamily: score\ndataset: {format: csv, path: labels.csv, images: images/}\n"
    )
    return tmp_path / "my.yaml"


requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="Java is needed by pycocoevalcap")


def run_cli(*args, env=None, check=False):
    """The installed `aesbench` command in a subprocess, as a user runs it."""
    exe = Path(sys.executable).parent / "aesbench"  # the command installed beside this interpreter
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "aesbench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=check, timeout=600)
