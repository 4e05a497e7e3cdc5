"""The image pipeline: threaded, prefetching decoding gives the pixels of load_image called one image
at a time, byte for byte, and the same skips; JPEG draft decoding is an explicit, recorded choice that
never goes below its size. Real JPEG and PNG files, decoded by Pillow."""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from aesbench.adapter import Model
from aesbench.datasets import Item
from aesbench.errors import AesbenchError
from aesbench.families.suggest import SuggestFamily, SuggestProtocol
from aesbench.pipeline import decode
from aesbench.images import ImageError, Preprocessing, load_image
from aesbench.runs import PREDICTIONS, evaluate
from aesbench.task import Task, load_task
from conftest import REPO, prediction_records

PHOTOS = sorted((REPO / "tasks/data/tiny-ava/images").glob("*.jpg"))


def photo(n: int, size: tuple[int, int]) -> Image.Image:
    """A real photograph of the tiny split, bicubic-resized to `size`."""
    with Image.open(PHOTOS[n]) as img:
        return img.convert("RGB").resize(size, Image.BICUBIC)


def with_orientation(img: Image.Image, orientation: int, path, **kw) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes(), **kw)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """JPEGs of several sizes, modes, subsamplings and EXIF orientations, a camera's MPO, a PNG with alpha,
    and bad files."""
    root = tmp_path_factory.mktemp("images")
    photo(0, (1600, 900)).save(root / "large.jpg", quality=90)
    photo(1, (1200, 1600)).save(root / "portrait444.jpg", quality=95, subsampling=0)
    photo(2, (1000, 750)).save(root / "progressive.jpg", quality=85, progressive=True)
    photo(3, (900, 600)).convert("L").save(root / "grey.jpg", quality=90)
    photo(4, (800, 600)).convert("CMYK").save(root / "cmyk.jpg", quality=90)
    with_orientation(photo(5, (1200, 800)), 6, root / "rotated6.jpg", quality=90)
    with_orientation(photo(6, (1000, 700)), 3, root / "rotated3.jpg", quality=90)
    with_orientation(photo(7, (640, 480)), 8, root / "rotated8.jpg", quality=90)
    photo(8, (200, 120)).save(root / "small.jpg", quality=90)  # smaller than any draft size used here
    photo(11, (1280, 960)).save(root / "camera.mpo", "MPO", save_all=True, append_images=[photo(12, (1280, 960))])
    rgba = np.asarray(photo(9, (700, 500)).convert("RGBA")).copy()
    rgba[:, :350, 3] = 60
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    buf = io.BytesIO()
    photo(10, (1200, 900)).save(buf, "JPEG", quality=90)
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(4000))
    names = [
        "large.jpg",
        "truncated.jpg",
        "portrait444.jpg",
        "progressive.jpg",
        "grey.jpg",
        "cmyk.jpg",
        "corrupt.jpg",
        "rotated6.jpg",
        "rotated3.jpg",
        "missing.jpg",
        "rotated8.jpg",
        "small.jpg",
        "alpha.png",
        "camera.mpo",
    ]
    return root, [root / name for name in names]


def score_task(prep: Preprocessing) -> Task:
    return Task(
        name="t",
        family="score",
        dataset={"format": "csv"},
        path=REPO / "tasks" / "tiny-ava-score.yaml",
        preprocessing=prep,
    )


def serial(paths, prep, transform=None, items=None):
    """load_image one image at a time, as the harness did before it decoded in threads."""
    ok, failed = [], []
    for path, item in zip(paths, items or [None] * len(paths)):
        try:
            img = load_image(path, prep)
            ok.append((path.name, transform(item, img) if transform else img))
        except ImageError as e:
            failed.append((path.name, str(e)))
    return ok, failed


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and np.asarray(a).tobytes() == np.asarray(b).tobytes()


PREPS = [
    Preprocessing(),
    Preprocessing(draft_size=224),
    Preprocessing(draft_size=300, exif_transpose=False, alpha="black"),
]


@pytest.mark.parametrize("prep", PREPS, ids=["full", "draft224", "draft300-no-exif"])
def test_threaded_decode_gives_the_serial_pixels_and_skips(images, prep):
    _, paths = images
    items = [Item(p.name, p, {"mos": 5.0}) for p in paths]
    ok, imgs, failed = decode(items, score_task(prep))
    expected_ok, expected_failed = serial(paths, prep)
    assert [it.id for it in ok] == [name for name, _ in expected_ok]
    assert all(same_pixels(a, b) for a, (_, b) in zip(imgs, expected_ok))
    assert [(it.id, reason) for it, reason in failed] == expected_failed
    assert {name for name, _ in expected_failed} == {"truncated.jpg", "corrupt.jpg", "missing.jpg"}


def test_a_transform_runs_on_the_threads_with_the_serial_result(images):
    """The suggest family's seeded degradations, applied on the decoding threads."""
    _, paths = images
    kinds = ["noise", "blur", "dark", "bright", "desaturated", "crop"]
    items = [Item(p.name, p, {"kind": kinds[i % len(kinds)]}) for i, p in enumerate(paths)]
    task = score_task(Preprocessing(draft_size=224))
    task.protocol = SuggestProtocol(seed=3, severity=0.8)
    transform = SuggestFamily().transform(task)
    ok, imgs, _ = decode(items, task, transform)
    expected_ok, _ = serial(paths, task.preprocessing, transform, items)
    assert [it.id for it in ok] == [name for name, _ in expected_ok]
    assert all(same_pixels(a, b) for a, (_, b) in zip(imgs, expected_ok))


def test_draft_decodes_jpegs_smaller_but_never_below_the_size(images):
    _, paths = images
    readable = [p for p in paths if p.name not in ("truncated.jpg", "corrupt.jpg", "missing.jpg")]
    for path in readable:
        full = load_image(path)
        for side in (224, 300, 500):
            drafted = load_image(path, Preprocessing(draft_size=side))
            if path.suffix == ".png" or min(full.size) < 2 * side:  # nothing to gain: the very same pixels
                assert same_pixels(drafted, full), (path.name, side)
                continue
            assert min(drafted.size) >= side and max(drafted.size) < max(full.size), (path.name, side, drafted.size)
            assert abs(drafted.width / drafted.height - full.width / full.height) < 0.01  # EXIF rotation applied too
            shrunk = np.asarray(full.resize(drafted.size, Image.BOX), dtype=float)
            assert np.abs(np.asarray(drafted, dtype=float) - shrunk).mean() < 4, path.name  # the same picture
    assert load_image(paths[0], Preprocessing(draft_size=224)).size == (
        400,
        225,
    )  # 1600x900 at 1/4: 1/8 would be 200 px
    assert load_image(paths[7], Preprocessing(draft_size=224)).size == (400, 600)  # 1200x800 at 1/2, then rotated


def test_full_decode_is_plain_pillow(images):
    """Without draft_size, a JPEG's pixels are Pillow's full decode, EXIF-rotated, untouched."""
    _, paths = images
    for name in ("large.jpg", "portrait444.jpg", "progressive.jpg", "rotated6.jpg", "rotated3.jpg"):
        path = next(p for p in paths if p.name == name)
        with Image.open(path) as img:
            expected = ImageOps.exif_transpose(img).convert("RGB")
        assert same_pixels(load_image(path), expected), name


class Recorder(Model):
    """Scores every image with a hash of its pixels, so the run's lines show exactly what it was given."""

    capabilities = frozenset({"score"})

    def __init__(self):
        self.calls = []

    def score(self, images, request):
        self.calls.append(len(images))
        return [{"score": int(hashlib.sha256(np.asarray(img).tobytes()).hexdigest()[:12], 16) / 1e10} for img in images]


def test_a_run_with_prefetching_sees_the_serial_pixels_in_order(images, tmp_path):
    root, paths = images
    rows = ["image,score"] + [f"{p.name},{5 + i % 3}" for i, p in enumerate(paths)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    yaml_path = root / "decode.yaml"
    yaml_path.write_text(
        "name: decode\nfamily: score\ndataset: {format: csv, path: labels.csv, images: .}\n"
        "preprocessing: {draft_size: 224}\nprotocol: {bootstrap: {resamples: 10}}\n"
    )
    task = load_task(str(yaml_path))
    model = Recorder()
    results = evaluate(task, tmp_path / "run", model=model, batch_size=3)
    lines = prediction_records(tmp_path / "run" / PREDICTIONS)
    lines = [line for line in lines if "id" in line and line["id"] in {p.name for p in paths}]

    expected, order = {}, []
    for start in range(0, len(paths), 3):  # per batch: its skip lines, then its predictions
        ok, failed = serial(paths[start : start + 3], task.preprocessing)
        order += [name for name, _ in failed] + [name for name, _ in ok]
        expected.update({name: {"skipped": reason} for name, reason in failed})
        expected.update({name: {"score": Recorder().score([img], None)[0]["score"]} for name, img in ok})
    assert [line["id"] for line in lines] == order
    assert {line["id"]: {k: v for k, v in line.items() if k != "id"} for line in lines} == expected
    assert sum(model.calls) == 11 and max(model.calls) <= 3
    assert results["protocol"]["preprocessing"]["draft_size"] == 224  # the choice is recorded with the results
    assert results["n"] == 11 and {s["id"] for s in results["skipped"]} == {
        "truncated.jpg",
        "corrupt.jpg",
        "missing.jpg",
    }


def test_parallel_decoding_leaves_pillows_own_limit_alone(tmp_path, monkeypatch):
    """Images over Pillow's global limit but within max_pixels decode on every thread, and the global
    limit is what it was afterwards (it is switched off only while images decode)."""
    items = []
    for i in range(24):
        photo(i, (64, 64)).save(tmp_path / f"{i}.jpg")  # 4096 pixels: Pillow alone would refuse them
        items.append(Item(str(i), tmp_path / f"{i}.jpg", {}))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    ok, imgs, failed = decode(items, score_task(Preprocessing(max_pixels=10_000)))
    assert len(ok) == 24 and not failed and all(img.size == (64, 64) for img in imgs)
    assert Image.MAX_IMAGE_PIXELS == 1000
    ok, _, failed = decode(items[:4], score_task(Preprocessing(max_pixels=4000)))
    assert not ok and all("decompression-bomb" in reason for _, reason in failed)
    assert Image.MAX_IMAGE_PIXELS == 1000


@pytest.mark.parametrize("value", [-1, 1.5, True, "224px"])
def test_a_bad_draft_size_is_one_clear_error(value):
    with pytest.raises(AesbenchError, match="draft_size") as e:
        Preprocessing.from_dict({"draft_size": value})
    assert "\n" not in str(e.value)
