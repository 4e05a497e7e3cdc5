"""Bad input never ends in a traceback: a clear one-line error, or a recorded skip that leaves the run going.

Everything here runs for real: images are written and decoded with Pillow, the CLI runs in a
subprocess as a user runs it, and the tiny built-in tasks supply the real dataset formats.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aesbench.adapter import Model, Request, load_model
from aesbench.datasets import read_dataset
from aesbench.errors import AesbenchError
from aesbench.images import ImageError, Preprocessing, load_image
from aesbench.runs import PREDICTIONS, evaluate
from aesbench.task import load_task

from conftest import REPO, natural_image, prediction_records, run_cli

TINY_AVA = REPO / "tasks" / "data" / "tiny-ava"
VENV_BIN = Path(sys.executable).parent
TINY_AVA_TEST_IDS = [
    l.strip() for l in (TINY_AVA / "aesthetics_image_lists" / "generic_test.jpgl").read_text().splitlines() if l.strip()
]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def venv_on_path(monkeypatch):
    """run_cli finds `aesbench` on PATH: make it this interpreter's, also when the venv is not activated."""
    if (VENV_BIN / "aesbench").is_file():
        monkeypatch.setenv("PATH", str(VENV_BIN) + os.pathsep + os.environ.get("PATH", ""))


def one_line_error(result) -> str:
    """The CLI's stderr must be exactly one (non-blank) line starting 'error:' and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), result.stderr
    return lines[0]


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def grey16(size=(40, 24), seed=7) -> Image.Image:
    """A textured 16-bit greyscale image (mode I;16 once written as PNG and read back)."""
    arr = np.asarray(natural_image(seed, size).convert("L")).astype(np.uint16) * 257
    return Image.fromarray(arr)


def palette_with_transparency(size=(40, 24)) -> Image.Image:
    """Palette image: index 0 red (opaque), index 1 blue (transparent), left half transparent."""
    img = Image.new("P", size, 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    img.paste(1, (0, 0, size[0] // 2, size[1]))
    return img


def rgba_half_transparent(size=(40, 24)) -> Image.Image:
    arr = np.asarray(natural_image(11, size).convert("RGBA")).copy()
    arr[:, : size[0] // 2, 3] = 0
    return Image.fromarray(arr, "RGBA")


# --------------------------------------------------------------------------- images, unit level


def test_corrupt_file_is_an_image_error(tmp_path):
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ImageError, match="corrupt") as e:
        load_image(path)
    assert "\n" not in str(e.value)


def test_empty_file_is_an_image_error(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError):
        load_image(path)


def test_truncated_jpeg_is_an_image_error(tmp_path):
    data = jpeg_bytes(natural_image(1, (256, 256)), quality=90)
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated") as e:
        load_image(path)
    assert "truncated.jpg" in str(e.value) and "\n" not in str(e.value)


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="missing"):
        load_image(tmp_path / "nope.jpg")


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    original = natural_image(2)
    original.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    img = load_image(tmp_path / "cmyk.jpg")
    assert img.mode == "RGB" and img.size == original.size
    expected = np.asarray(original.convert("CMYK").convert("RGB"), dtype=float)
    assert np.abs(np.asarray(img, dtype=float) - expected).mean() < 8  # JPEG loss only, no colour inversion


@pytest.mark.parametrize("value, expected", [(0, 0), (32768, 128), (65535, 255), (1000, 4)])
def test_16bit_greyscale_is_scaled_not_clipped(tmp_path, value, expected):
    Image.fromarray(np.full((12, 20), value, np.uint16)).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    arr = np.asarray(load_image(tmp_path / "g16.png"))
    assert arr.shape == (12, 20, 3)
    assert np.abs(arr.astype(int) - expected).max() <= 1


def test_16bit_greyscale_keeps_its_texture(tmp_path):
    img16 = grey16()
    img16.save(tmp_path / "g16.png")
    got = np.asarray(load_image(tmp_path / "g16.png"))[..., 0].astype(int)
    want = np.asarray(img16, dtype=np.float64) / 65535 * 255
    assert np.abs(got - want).max() <= 1
    assert got.std() > 5  # not clipped to a flat 255


def test_32bit_int_and_float_greyscale(tmp_path):
    Image.fromarray(np.full((8, 8), 32768, np.int32), "I").save(tmp_path / "i32.tif")
    assert Image.open(tmp_path / "i32.tif").mode == "I"
    assert abs(int(np.asarray(load_image(tmp_path / "i32.tif"))[0, 0, 0]) - 128) <= 1
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert abs(int(np.asarray(load_image(tmp_path / "f.tif"))[0, 0, 0]) - 128) <= 1


def test_palette_with_transparency_is_flattened_on_white(tmp_path):
    palette_with_transparency().save(tmp_path / "p.png", transparency=1)
    opened = Image.open(tmp_path / "p.png")
    assert opened.mode == "P" and "transparency" in opened.info
    arr = np.asarray(load_image(tmp_path / "p.png"))
    assert (arr[:, :20] == 255).all()  # the transparent index became white, not blue
    assert (arr[:, 20:] == [255, 0, 0]).all()


def test_rgba_alpha_is_composited_on_white(tmp_path):
    arr = np.zeros((10, 10, 4), np.uint8)
    arr[..., 0] = 255  # red everywhere
    arr[:, 5:, 3] = 255  # right half opaque
    arr[0, 0, 3] = 128  # one half-transparent pixel
    Image.fromarray(arr, "RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(load_image(tmp_path / "rgba.png")).astype(int)
    assert (out[1:, :5] == 255).all()  # fully transparent red -> white
    assert (out[:, 5:] == [255, 0, 0]).all()
    assert out[0, 0, 0] == 255 and abs(out[0, 0, 1] - 127) <= 1 and abs(out[0, 0, 2] - 127) <= 1


def test_alpha_background_is_a_protocol_choice(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)  # fully transparent
    Image.fromarray(arr, "RGBA").save(tmp_path / "clear.png")
    assert (np.asarray(load_image(tmp_path / "clear.png", Preprocessing(alpha="black"))) == 0).all()


def test_greyscale_l_and_la(tmp_path):
    grey = natural_image(3).convert("L")
    grey.save(tmp_path / "l.png")
    out = np.asarray(load_image(tmp_path / "l.png"))
    assert out.shape[-1] == 3 and (out == np.asarray(grey)[..., None]).all()

    la = np.stack([np.asarray(grey), np.full(grey.size[::-1], 255, np.uint8)], axis=-1)
    la[:, :10, 1] = 0
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    out = np.asarray(load_image(tmp_path / "la.png"))
    assert (out[:, :10] == 255).all()
    assert (out[:, 10:, 0] == np.asarray(grey)[:, 10:]).all()


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    natural_image(4, (40, 20)).save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)
    assert load_image(tmp_path / "rot.jpg", Preprocessing(exif_transpose=False)).size == (40, 20)


def test_decompression_bomb_limit(tmp_path):
    natural_image(5, (64, 64)).save(tmp_path / "big.jpg")
    with pytest.raises(ImageError, match="decompression-bomb") as e:
        load_image(tmp_path / "big.jpg", Preprocessing(max_pixels=1000))
    assert "4096" in str(e.value) and "max_pixels" in str(e.value)
    assert load_image(tmp_path / "big.jpg").size == (64, 64)  # the default limit lets it through
    assert load_image(tmp_path / "big.jpg", Preprocessing(max_pixels=4096)).size == (64, 64)


def test_raising_max_pixels_above_pillows_limit_lets_the_image_through(tmp_path, monkeypatch):
    # Pillow's own limit lowered so the case is cheap; in real use it is 89,478,485 pixels and a
    # 100-megapixel photograph is refused even with preprocessing.max_pixels raised to 200,000,000.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    natural_image(5, (64, 64)).save(tmp_path / "big.jpg")
    assert load_image(tmp_path / "big.jpg", Preprocessing(max_pixels=10_000)).size == (64, 64)


def test_unknown_preprocessing_option_is_refused():
    with pytest.raises(AesbenchError, match="max_pixel"):
        Preprocessing.from_dict({"max_pixel": 10})


# --------------------------------------------------------------------------- images and label rows, end to end


def build_messy_task(root: Path) -> dict:
    """A csv score task with readable images of every odd mode, unreadable images and malformed rows.

    Returns what the run must report: the readable ids, and for each skipped id a word its reason must hold.
    """
    images = root / "images"
    images.mkdir()
    rows, readable = ["image,score"], []
    size = (40, 24)  # 960 pixels, under the task's max_pixels of 1000

    def add(name, score):
        rows.append(f"{name},{score}")

    for i in range(4):
        natural_image(i, size).save(images / f"good{i}.jpg", quality=90)
        add(f"good{i}.jpg", 3 + i)
        readable.append(f"good{i}.jpg")
    natural_image(20, size).convert("CMYK").save(images / "cmyk.jpg", quality=90)
    grey16(size).save(images / "grey16.png")
    palette_with_transparency(size).save(images / "palette.png", transparency=1)
    rgba_half_transparent(size).save(images / "rgba.png")
    natural_image(21, size).convert("L").save(images / "grey.png")
    natural_image(22, size).convert("LA").save(images / "greyalpha.png")
    for n, name in enumerate(["cmyk.jpg", "grey16.png", "palette.png", "rgba.png", "grey.png", "greyalpha.png"]):
        add(name, 4 + n * 0.7)
        readable.append(name)

    (images / "corrupt.jpg").write_bytes(np.random.default_rng(1).bytes(3000))
    data = jpeg_bytes(natural_image(23, size), quality=95)
    (images / "truncated.jpg").write_bytes(data[: len(data) // 2])
    natural_image(24, (64, 64)).save(images / "bomb.jpg")  # 4096 pixels
    add("corrupt.jpg", 5)
    add("truncated.jpg", 6)
    add("bomb.jpg", 7)
    add("missing.jpg", 8)  # listed, not on disk
    add("abc.jpg", "abc")  # malformed score
    empty_line = len(rows) + 1
    add("", 5)  # empty image column
    add("good0.jpg", 9.5)  # duplicate id: the first occurrence wins
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "my.yaml").write_text(
        "name: my-messy\nfamily: score\n"
        "dataset: {format: csv, path: labels.csv, images: images/}\n"
        "preprocessing: {max_pixels: 1000}\n"
        "protocol: {bootstrap: {resamples: 50}}\n"
    )
    skipped = {
        "corrupt.jpg": ("corrupt", "not a readable image"),
        "truncated.jpg": ("truncated", "decode"),
        "bomb.jpg": ("decompression",),
        "missing.jpg": ("missing",),
        "abc.jpg": ("not a number", "malformed"),
        f"labels.csv:{empty_line}": ("empty image",),
        "good0.jpg": ("duplicate",),
    }
    return {"readable": readable, "skipped": skipped}


def test_unreadable_images_and_bad_rows_never_stop_a_run(tmp_path):
    expected = build_messy_task(tmp_path)
    out = tmp_path / "OUT"
    result = run_cli("eval", "--task", str(tmp_path / "my.yaml"), "--model", "handcrafted", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    results = json.loads((out / "results.json").read_text())
    assert results["n"] == len(expected["readable"]) == 10
    reasons = {}
    for skip in results["skipped"]:
        reasons.setdefault(skip["id"], []).append(skip["reason"])
    assert set(reasons) == set(expected["skipped"]), reasons
    for item_id, words in expected["skipped"].items():
        assert len(reasons[item_id]) == 1, reasons[item_id]
        assert any(w in reasons[item_id][0] for w in words), (item_id, reasons[item_id])
        assert "\n" not in reasons[item_id][0]
    assert results["protocol"]["preprocessing"]["max_pixels"] == 1000  # the choice is recorded

    lines = prediction_records(out / PREDICTIONS)
    by_id = {line["id"]: line for line in lines}
    assert len(by_id) == len(lines)  # each id once
    for name in expected["readable"]:
        assert "score" in by_id[name] and math.isfinite(by_id[name]["score"]), by_id.get(name)
    for name in ("corrupt.jpg", "truncated.jpg", "bomb.jpg", "missing.jpg"):
        assert "skipped" in by_id[name]
    # the duplicate row's score (9.5) was not the one used
    assert "abc.jpg" not in by_id


def test_malformed_csv_rows_are_skips_not_errors(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text(
        "\ufeff image , score \n"  # BOM and padded header names
        "a.jpg,5\n"
        "b.jpg,abc\n"
        "c.jpg,nan\n"
        "d.jpg,inf\n"
        ",4\n"
        "e.jpg,\n"
        "a.jpg,7\n"
        "f.jpg, 6.5 \n"
    )
    (tmp_path / "t.yaml").write_text(
        "name: t\nfamily: score\ndataset: {format: csv, path: labels.csv, images: images}\n"
    )
    data = read_dataset(load_task(str(tmp_path / "t.yaml")))
    assert [(it.id, it.label["mos"]) for it in data.items] == [("a.jpg", 5.0), ("f.jpg", 6.5)]
    reasons = {s["id"]: s["reason"] for s in data.skipped}
    assert "not a number" in reasons["b.jpg"] and "not a number" in reasons["e.jpg"]
    assert "nan" in reasons["c.jpg"] and "inf" in reasons["d.jpg"]
    assert "empty image" in reasons["labels.csv:6"]
    assert "duplicate" in reasons["a.jpg"]


def test_csv_row_with_extra_fields_is_a_skip(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("image,score\na.jpg,5,unexpected\nb.jpg,6\n")
    (tmp_path / "t.yaml").write_text(
        "name: t\nfamily: score\ndataset: {format: csv, path: labels.csv, images: images}\n"
    )
    data = read_dataset(load_task(str(tmp_path / "t.yaml")))
    assert [it.id for it in data.items] == ["b.jpg"]


def test_csv_with_a_wrong_header_is_one_clear_error(tmp_path):
    (tmp_path / "labels.csv").write_text("file,mos\na.jpg,5\n")
    (tmp_path / "t.yaml").write_text("name: t\nfamily: score\ndataset: {format: csv, path: labels.csv, images: .}\n")
    with pytest.raises(AesbenchError, match="image,score"):
        read_dataset(load_task(str(tmp_path / "t.yaml")))


def test_malformed_ava_rows(tmp_path):
    root = tmp_path / "ava"
    shutil.copytree(TINY_AVA, root)
    rows = (root / "AVA.txt").read_text().splitlines()
    line_of = {row.split()[1]: n for n, row in enumerate(rows)}
    bad_cols, bad_int, zero_votes, duplicated = TINY_AVA_TEST_IDS[:4]

    def edit(image_id, fn):
        cols = rows[line_of[image_id]].split()
        rows[line_of[image_id]] = " ".join(fn(cols))

    edit(bad_cols, lambda c: c[:14])  # a column lost
    edit(bad_int, lambda c: c[:5] + ["x"] + c[6:])  # a vote count that is not an integer
    edit(zero_votes, lambda c: c[:2] + ["0"] * 10 + c[12:])  # nobody voted
    rows.append(" ".join(["999", duplicated] + ["1"] * 10 + ["0", "0", "1"]))  # a second row for an id
    rows.insert(10, "")  # blank lines are ignored
    (root / "AVA.txt").write_text("\n".join(rows) + "\n")
    (tmp_path / "ava.yaml").write_text(
        "name: my-ava\nfamily: score\n"
        "dataset: {format: ava, root: ava, path: AVA.txt, split_list: aesthetics_image_lists/generic_test.jpgl, images: images}\n"
    )
    data = read_dataset(load_task(str(tmp_path / "ava.yaml")))
    assert len(data.items) == len(TINY_AVA_TEST_IDS) - 3
    ids = {it.id for it in data.items}
    assert duplicated in ids and not ids & {bad_cols, bad_int, zero_votes}
    original = [int(c) for c in (TINY_AVA / "AVA.txt").read_text().splitlines()[line_of[duplicated]].split()[2:12]]
    mos = sum(i * n for i, n in enumerate(original, start=1)) / sum(original)
    assert data.by_id()[duplicated].label["mos"] == pytest.approx(mos)  # the first row was kept

    reasons = [s["reason"] for s in data.skipped]
    row_skips = [s for s in data.skipped if s["id"].startswith("AVA.txt:")]
    assert len(row_skips) == 3 and all("malformed AVA row" in s["reason"] for s in row_skips)
    assert any("14 columns" in r for r in reasons)
    assert any("a vote count is not an integer" in r for r in reasons)  # the row's text is never echoed
    assert any("at least one vote" in r for r in reasons)
    assert any(s["id"] == duplicated and "duplicate" in s["reason"] for s in data.skipped)
    for image_id in (bad_cols, bad_int, zero_votes):
        assert any(s["id"] == image_id and "no valid row" in s["reason"] for s in data.skipped)

    out = tmp_path / "OUT"
    result = run_cli(
        "eval", "--task", str(tmp_path / "ava.yaml"), "--model", "constant", "--output", str(out), "--quiet"
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == len(TINY_AVA_TEST_IDS) - 3
    assert len(results["skipped"]) == len(data.skipped)


# --------------------------------------------------------------------------- predictions made elsewhere


def test_predictions_file_with_nan_infinity_bad_lines_duplicates_and_strangers(tmp_path):
    ids = TINY_AVA_TEST_IDS
    rng = np.random.default_rng(0)
    lines = [
        f'{{"id": "{ids[0]}", "score": NaN}}',
        f'{{"id": "{ids[1]}", "score": Infinity}}',
        f'{{"id": "{ids[2]}", "score": -Infinity}}',
        f'{{"id": "{ids[3]}", "score": "7.5"}}',
        f'{{"id": "{ids[4]}", "sco',  # torn JSON
    ]
    good = ids[5:]
    lines += [json.dumps({"id": i, "score": float(s)}) for i, s in zip(good, rng.uniform(2, 8, len(good)))]
    lines.insert(20, "")  # blank lines are fine
    lines.append(json.dumps({"id": good[0], "score": 1.0}))  # duplicate: the first is kept
    lines.append(json.dumps({"id": "not-an-ava-id", "score": 5.0}))
    lines.append('["a list"]')
    lines.append('{"score": 5}')  # no id
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(lines) + "\n")

    out = tmp_path / "OUT"
    result = run_cli("eval", "--task", "tiny-ava-score", "--predictions", str(preds), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == len(good)
    assert set(results["metrics"]) >= {"srcc", "plcc", "krcc", "mse"}
    assert all(math.isfinite(v) for v in results["metrics"].values())

    reasons = {}
    for skip in results["skipped"]:
        reasons.setdefault(skip["id"], []).append(skip["reason"])
    assert "non-finite" in reasons[ids[0]][0] and "nan" in reasons[ids[0]][0]
    assert "non-finite" in reasons[ids[1]][0] and "inf" in reasons[ids[1]][0]
    assert "non-finite" in reasons[ids[2]][0]
    assert "numeric" in reasons[ids[3]][0]
    assert reasons[ids[4]] == ["no prediction"]  # its line was torn
    assert any("duplicate" in r for r in reasons[good[0]])
    assert any("not in the task" in r for r in reasons["not-an-ava-id"])
    malformed = [i for i in reasons if i.startswith("preds.jsonl:")]
    assert len(malformed) == 3 and all("malformed line" in reasons[i][0] for i in malformed)

    # results.json is strict JSON (no NaN tokens) even though the input had them
    json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in results.json"))


def test_predictions_file_with_bytes_that_are_not_utf8(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_bytes(json.dumps({"id": TINY_AVA_TEST_IDS[0], "score": 5.0}).encode() + b"\n\xff\xfe garbage\n")
    results = evaluate(load_task("tiny-ava-score"), tmp_path / "OUT", predictions=preds)
    assert any("malformed" in s["reason"] for s in results["skipped"])


def test_missing_predictions_file(tmp_path):
    result = run_cli(
        "eval",
        "--task",
        "tiny-ava-score",
        "--predictions",
        str(tmp_path / "nope.jsonl"),
        "--output",
        str(tmp_path / "OUT"),
    )
    assert result.returncode == 2
    assert "nope.jsonl" in one_line_error(result)


# --------------------------------------------------------------------------- models that misbehave


class NanEveryThird(Model):
    """Scores from mean brightness; every third image it is asked about gets NaN."""

    name = "test-nan-every-third"
    capabilities = frozenset({"score"})

    def __init__(self):
        self.calls = 0

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        out = []
        for img in images:
            self.calls += 1
            value = 1 + 9 * float(np.asarray(img.convert("L"), dtype=np.float64).mean()) / 255
            out.append({"score": float("nan") if self.calls % 3 == 0 else value})
        return out


def test_model_returning_nan_gives_skip_lines_that_are_not_recomputed(tmp_path):
    out = tmp_path / "OUT"
    model = NanEveryThird()
    results = evaluate(load_task("tiny-ava-score"), out, model=model, batch_size=7)
    total = len(TINY_AVA_TEST_IDS)
    assert model.calls == total
    lines = prediction_records(out / PREDICTIONS)
    assert len(lines) == total
    skipped = [line for line in lines if "skipped" in line]
    assert len(skipped) == total // 3
    assert all("non-finite" in line["skipped"] and "score" not in line for line in skipped)
    assert "NaN" not in (out / PREDICTIONS).read_text()
    assert results["n"] == total - total // 3
    assert {s["id"] for s in results["skipped"]} == {line["id"] for line in skipped}
    assert all("unusable" in s["reason"] for s in results["skipped"])

    again = NanEveryThird()
    results2 = evaluate(load_task("tiny-ava-score"), out, model=again, batch_size=7)
    assert again.calls == 0  # finished ids, NaN skips included, are not asked again
    assert results2["resumed_from"] == total
    assert results2["metrics"] == results["metrics"]
    assert len(prediction_records(out / PREDICTIONS)) == total


class NoneScore(Model):
    name = "test-none-score"
    capabilities = frozenset({"score"})

    def score(self, images, request):
        return [{"score": None} for _ in images]


def test_model_returning_no_number_gives_skip_lines(tmp_path):
    results = evaluate(load_task("tiny-ava-score"), tmp_path / "OUT", model=NoneScore(), limit=5)
    assert results["n"] == 0 and len(results["skipped"]) == 5


def cheap_tiny_ava(root: Path) -> Path:
    """tiny-ava-score's data under a task with a short bootstrap, to keep model-level tests quick."""
    path = root / "cheap-tiny-ava.yaml"
    path.write_text(
        "name: cheap-tiny-ava\nfamily: score\n"
        f"dataset: {{format: ava, root: {REPO / 'tasks/data/tiny-ava'}, path: AVA.txt,"
        " split_list: aesthetics_image_lists/generic_test.jpgl, images: images}\n"
        "protocol: {bootstrap: {resamples: 20}}\n"
    )
    return path


class Float32Score(Model):
    """Returns numpy float32 scores, as models that end in `.numpy()` do."""

    name = "test-float32"
    capabilities = frozenset({"score"})

    def score(self, images, request):
        return [{"score": np.float32(np.asarray(img, dtype=np.float32).mean() / 25.5)} for img in images]


def test_model_returning_numpy_float32_is_scored(tmp_path):
    results = evaluate(load_task(str(cheap_tiny_ava(tmp_path))), tmp_path / "OUT", model=Float32Score(), limit=6)
    assert results["n"] == 6, results["skipped"]


class ScoreOnly(Model):
    name = "test-score-only"
    capabilities = frozenset({"score"})

    def score(self, images, request):
        return [{"score": 5.0} for _ in images]


def test_model_lacking_the_capability(tmp_path):
    out = tmp_path / "OUT"
    with pytest.raises(AesbenchError) as e:
        evaluate(load_task("tiny-ava-comment"), out, model=ScoreOnly())
    message = str(e.value)
    assert "test-score-only" in message and "comment" in message and "tiny-ava-comment" in message
    assert "\n" not in message
    assert not out.exists()  # refused before anything was written


# --------------------------------------------------------------------------- the CLI's one-line errors


@pytest.mark.parametrize(
    "args, wrong, right",
    [
        (["--task", "tiny-ava-scor", "--model", "handcrafted"], "tiny-ava-scor", "tiny-ava-score"),
        (["--task", "tiny-ava-score", "--model", "handcraft"], "handcraft", "handcrafted"),
    ],
)
def test_unknown_names_suggest_the_nearest(tmp_path, args, wrong, right):
    result = run_cli("eval", *args, "--output", str(tmp_path / "OUT"))
    assert result.returncode == 2
    line = one_line_error(result)
    assert f"'{wrong}'" in line and "did you mean" in line and f"'{right}'" in line
    assert not (tmp_path / "OUT").exists()


def test_java_missing_is_one_line(tmp_path):
    script = VENV_BIN / "aesbench"
    if not script.is_file():
        pytest.skip("needs the installed aesbench script beside this interpreter")
    # PATH holds only the aesbench script (its shebang names the venv's python by absolute path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aesbench").symlink_to(script)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(bin_dir)
    assert shutil.which("java", path=env["PATH"]) is None
    out = tmp_path / "OUT"
    result = subprocess.run(
        [
            str(bin_dir / "aesbench"),
            "eval",
            "--task",
            "tiny-ava-comment",
            "--model",
            "constant",
            "--output",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert "java" in line.lower() and "PATH" in line
    assert not (out / PREDICTIONS).exists()  # checked before the model runs, not after


def test_real_dataset_task_without_its_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AESBENCH_AVA_ROOT"}
    out = tmp_path / "OUT"
    result = run_cli("eval", "--task", "ava-score", "--model", "handcrafted", "--output", str(out), "--quiet", env=env)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "AESBENCH_AVA_ROOT" in line and "--data-root" in line
    assert not out.exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli(
        "eval",
        "--task",
        "ava-score",
        "--model",
        "handcrafted",
        "--output",
        str(out),
        "--data-root",
        str(empty),
        "--quiet",
        env=env,
    )
    assert result.returncode == 2
    line = one_line_error(result)
    assert "AVA.txt" in line and "not found" in line
    assert not out.exists()

    with pytest.raises(AesbenchError, match="not a folder"):
        load_task("ava-score").resolve_root(tmp_path / "nowhere")


def test_run_folder_holding_a_different_run(tmp_path):
    out = tmp_path / "OUT"
    first = run_cli(
        "eval", "--task", "tiny-ava-score", "--model", "constant", "--output", str(out), "--limit", "5", "--quiet"
    )
    assert first.returncode == 0, first.stderr
    before = (out / PREDICTIONS).read_text()
    second = run_cli(
        "eval", "--task", "tiny-ava-score", "--model", "handcrafted", "--output", str(out), "--limit", "5", "--quiet"
    )
    assert second.returncode == 2
    line = one_line_error(second)
    assert "different run" in line and "handcrafted" in line and "constant" in line
    assert (out / PREDICTIONS).read_text() == before  # nothing mixed in


def write_score_yaml(root: Path, extra: str) -> Path:
    (root / "images").mkdir(exist_ok=True)
    for i in range(3):
        natural_image(i).save(root / "images" / f"{i}.jpg")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(root / "images" / "clear.png")
    (root / "labels.csv").write_text("image,score\n0.jpg,4\n1.jpg,5\n2.jpg,6\nclear.png,3\n")
    path = root / "t.yaml"
    path.write_text("name: t\nfamily: score\ndataset: {format: csv, path: labels.csv, images: images}\n" + extra + "\n")
    return path


@pytest.mark.parametrize(
    "extra, words",
    [
        ("protocol: {acc_treshold: 5}", ["unknown protocol key", "acc_treshold", "acc_threshold"]),
        ("metrics: [srcc, plc]", ["'plc'", "not a score metric", "did you mean 'plcc'"]),
        (
            "protocol: {bootstrap: {logistic_start: warm}}",
            ["protocol.bootstrap: logistic_start must be resample or full_sample, not 'warm'"],
        ),
    ],
)
def test_task_yaml_typos_are_one_clear_error(tmp_path, extra, words):
    path = write_score_yaml(tmp_path, extra)
    result = run_cli("eval", "--task", str(path), "--model", "constant", "--output", str(tmp_path / "OUT"), "--quiet")
    assert result.returncode == 2
    line = one_line_error(result)
    for word in words:
        assert word in line, line
    assert not (tmp_path / "OUT").exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        ("metrics: [bleu1]", ["'bleu1'", "not a score metric"]),
        ("preprocessing: {max_pixel: 10}", ["max_pixel", "max_pixels"]),
        ("colour: red", ["unknown key", "colour"]),
        ("protocol: {shots: [10]}", ["unknown protocol key", "shots"]),  # a PIAA key in a score task
    ],
)
def test_more_task_yaml_typos(tmp_path, extra, words):
    path = write_score_yaml(tmp_path, extra)
    with pytest.raises(AesbenchError) as e:
        load_task(str(path))
    for word in words:
        assert word in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "extra, words",
    [
        ("family: scor", ["family 'scor'"]),
        ("dataset: {format: cvs, path: labels.csv, images: images}", ["unknown dataset format 'cvs'"]),
        ("foo: [", ["not valid YAML"]),
    ],
)
def test_task_yaml_structure_errors(tmp_path, extra, words):
    path = write_score_yaml(tmp_path, "")
    text = path.read_text()
    if extra.startswith("family:"):
        text = text.replace("family: score", extra)
    elif extra.startswith("dataset:"):
        text = "\n".join(extra if line.startswith("dataset:") else line for line in text.splitlines())
    else:
        text += extra + "\n"
    path.write_text(text)
    with pytest.raises(AesbenchError) as e:
        evaluate(load_task(str(path)), tmp_path / "OUT", model=ScoreOnly())
    for word in words:
        assert word in str(e.value)


@pytest.mark.parametrize(
    "extra",
    [
        "protocol: {score_range: 5}",
        "protocol: {score_range: [1]}",
        "protocol: {acc_threshold: high}",
        "protocol: {bootstrap: {resample: 10}}",  # typo inside bootstrap: silently ignored today
        "preprocessing: {max_pixels: abc}",
        "preprocessing: {alpha: notacolour}",
        "version: x",
    ],
)
def test_task_yaml_bad_values_are_aesbench_errors(tmp_path, extra):
    path = write_score_yaml(tmp_path, extra)
    with pytest.raises(AesbenchError):
        evaluate(load_task(str(path)), tmp_path / "OUT", model=ScoreOnly())


def test_metrics_given_as_a_string(tmp_path):
    path = write_score_yaml(tmp_path, "metrics: srcc")
    with pytest.raises(AesbenchError, match="srcc"):
        load_task(str(path))


def test_suggest_task_without_kinds_uses_the_six(tmp_path):
    """A minimal suggest YAML (no protocol.kinds, default metrics) evaluates all six kinds."""
    path = tmp_path / "mini-suggest.yaml"
    path.write_text(
        "name: mini-suggest\nfamily: suggest\n"
        f"dataset: {{format: pccd, root: {REPO / 'tasks/data/tiny-pccd'}, path: pccd.json, images: images, image_suffix: .jpg}}\n"
        "protocol: {top: 12, bootstrap: {resamples: 10}}\n"
    )
    results = evaluate(load_task(str(path)), tmp_path / "OUT", model=load_model("handcrafted"))
    assert results["n"] == 12 and "acc_avg" in results["metrics"]
    assert {v["kind"] for v in results["details"]["verdicts"].values()} == {
        "noise",
        "blur",
        "dark",
        "bright",
        "desaturated",
        "crop",
    }


def test_malformed_piaa_lines_are_skips(tmp_path):
    task = load_task("tiny-flickr-aes-piaa")
    run = evaluate(task, tmp_path / "run", model=load_model("random"), limit=2)
    lines = prediction_records(tmp_path / "run" / PREDICTIONS)
    broken = [dict(x, scores=["not", "a", "map"]) if x["id"].endswith("/k10/r0") else x for x in lines]
    preds = tmp_path / "broken.jsonl"
    preds.write_text("".join(json.dumps(x) + "\n" for x in broken))
    again = evaluate(task, tmp_path / "again", predictions=preds, limit=2)
    reasons = {s["id"]: s["reason"] for s in again["skipped"]}
    assert all("malformed" in reasons[x["id"]] for x in lines if x["id"].endswith("/k10/r0"))
    assert again["n"] == run["n"] == 2
