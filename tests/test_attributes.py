"""Per-attribute scoring: the task lists attributes, labels hold them, a model (or a predictions file)
may give {"attributes": {key: value}}, and results carry srcc@<key> / plcc@<key>. Attributes without a
prediction are undefined with the reason; items left out of an attribute are counted by reason.

Expected numbers are scipy's own functions on values recomputed here from the label file.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from aesbench.adapter import Model
from aesbench.datasets import APDD_ATTRIBUTES, attribute_key
from aesbench.errors import AesbenchError
from aesbench.leaderboard import render_csv, render_markdown
from aesbench.runs import PREDICTIONS, evaluate
from aesbench.task import load_task

from conftest import REPO, prediction_records, write_csv_task

TINY_ART = REPO / "tasks" / "data" / "tiny-art"


def quick_task():
    """tiny-art-score with a short bootstrap: the per-attribute CIs, not the point values, would take the time."""
    task = load_task("tiny-art-score")
    task.protocol.bootstrap = {**task.protocol.bootstrap, "resamples": 30}
    return task


def labels() -> dict[str, dict]:
    """filename -> {attribute key: value} for the rated attributes, and the total, straight from the CSV."""
    with open(TINY_ART / "APDDv2-tiny.csv", newline="") as f:
        return {
            r["filename"]: {
                "total": float(r["Total aesthetic score"]),
                **{attribute_key(c): float(r[c]) for c in APDD_ATTRIBUTES if r[c]},
            }
            for r in csv.DictReader(f)
        }


def test_attribute_metrics_from_a_predictions_file(tmp_path):
    truth = labels()
    with open(TINY_ART / "csvfiles" / "test.csv", newline="") as f:
        test_ids = [r["filename"] for r in csv.DictReader(f)]
    rng = np.random.default_rng(3)
    lines, used = [], {"theme_and_logic": [], "color": [], "creativity": []}
    for n, name in enumerate(test_ids):
        t = truth[name]
        attributes = {
            "theme_and_logic": t["theme_and_logic"] + rng.normal(0, 0.5),
            "color": "abc" if n == 0 else None if n == 1 else t["color"] + rng.normal(0, 0.5),
            "creativity": 5.0 + n % 3,
        }  # predicted for every image, labelled only for abstract ones
        lines.append({"id": name, "score": t["total"] + rng.normal(0, 5), "attributes": attributes})
        used["theme_and_logic"].append((attributes["theme_and_logic"], t["theme_and_logic"]))
        if n > 1:
            used["color"].append((attributes["color"], t["color"]))
        if "creativity" in t:
            used["creativity"].append((attributes["creativity"], t["creativity"]))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(line) + "\n" for line in lines))

    results = evaluate(quick_task(), tmp_path / "out", predictions=preds)
    for key, pairs in used.items():
        p, y = np.array(pairs).T
        assert results["metrics"][f"srcc@{key}"] == pytest.approx(stats.spearmanr(p, y)[0], abs=1e-12)
        assert results["metrics"][f"plcc@{key}"] == pytest.approx(stats.pearsonr(p, y)[0], abs=1e-12)
        assert results["details"]["attributes"][key]["n"] == len(pairs)
        low, high = results["ci95"][f"srcc@{key}"]
        assert low <= high
    figurative = sum("creativity" not in truth[name] for name in test_ids)
    assert figurative > 0
    assert results["details"]["attributes"]["creativity"]["left_out"] == {"no label for this attribute": figurative}
    assert results["details"]["attributes"]["color"]["left_out"] == {"predicted value is not a finite number": 2}
    assert results["undefined"]["srcc@mood"] == "the model gives no score for attribute 'mood'"
    assert "srcc@mood" not in results["metrics"] and results["details"]["attributes"]["mood"]["n"] == 0
    assert set(results["metrics"]) >= {"srcc", "plcc"} and results["n"] == 36

    table = render_markdown([results], include_reported=False).split("Per attribute (srcc / plcc):")
    assert len(table) == 2
    header, _, row = [line for line in table[1].splitlines() if line.startswith("|")]
    keys = [c.strip() for c in header.strip("|").split("|")][1:]
    assert keys == ["theme_and_logic", "creativity", "color"]  # the attributes some row has a number for, in task order
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "preds"
    assert (
        cells[1]
        == f"{results['metrics']['srcc@theme_and_logic']:.3f} / {results['metrics']['plcc@theme_and_logic']:.3f}"
    )
    csv_rows = list(csv.reader(render_csv([results], include_reported=False).splitlines()))
    assert ["srcc@color", repr(results["metrics"]["srcc@color"])] == [r for r in csv_rows if r[4] == "srcc@color"][0][
        4:6
    ]


class MeanPixel(Model):
    """Scores each requested attribute with the image's mean pixel value (a real, checkable measure);
    mood comes back NaN, and the requests are kept to check what the task asked for."""

    name = "mean-pixel"
    capabilities = frozenset({"score"})

    def __init__(self):
        self.requests = []

    def score(self, images, request):
        self.requests.append(request)
        outputs = []
        for img in images:
            value = np.float32(np.asarray(img, dtype=np.float64).mean())
            outputs.append(
                {"score": value, "attributes": {**{key: value for key in request.attributes}, "mood": np.nan}}
            )
        return outputs


def test_model_attribute_scores_are_stored_and_scored(tmp_path):
    model = MeanPixel()
    results = evaluate(quick_task(), tmp_path, model=model, batch_size=8)
    assert model.requests[0].attributes == tuple(load_task("tiny-art-score").protocol.attributes)
    lines = prediction_records(tmp_path / PREDICTIONS)
    assert all(line["attributes"]["mood"] is None and isinstance(line["attributes"]["color"], float) for line in lines)
    truth = labels()
    means = {
        line["id"]: np.asarray(Image.open(TINY_ART / "images" / line["id"]).convert("RGB"), dtype=np.float64).mean()
        for line in lines
    }
    for key in ("color", "light_and_shadow"):
        rated = [name for name in means if key in truth[name]]
        expected = stats.spearmanr([means[n] for n in rated], [truth[n][key] for n in rated])[0]
        assert results["metrics"][f"srcc@{key}"] == pytest.approx(expected, abs=1e-6)
    assert results["details"]["attributes"]["light_and_shadow"]["n"] < 36  # abstract works have no light label
    assert results["undefined"]["srcc@mood"] == "needs at least 2 items with a label and a prediction for 'mood', got 0"
    assert results["details"]["attributes"]["mood"]["left_out"] == {"predicted value is not a finite number": 36}


@pytest.mark.parametrize(
    "value, words",
    [
        ("color", "must be a list of distinct attribute keys"),
        ("[Color]", "must be a list of distinct attribute keys"),
        ("[color, color]", "must be a list of distinct attribute keys"),
    ],
)
def test_bad_attribute_lists_are_refused_in_one_line(tmp_path, value, words):
    path = write_csv_task(tmp_path, [3, 4], extra=f"protocol: {{attributes: {value}}}\n")
    with pytest.raises(AesbenchError, match=words) as caught:
        load_task(str(path))
    assert "\n" not in str(caught.value)


def test_an_empty_attribute_list_is_the_default(tmp_path):
    """`attributes: []` is what the resolved protocol records for a task without attributes (and what
    `aesbench tasks NAME` prints), so a printed template loads again."""
    path = write_csv_task(tmp_path, [3, 4], extra="protocol: {attributes: []}\n")
    assert load_task(str(path)).protocol.attributes in ([], ())


def test_attributes_a_dataset_does_not_label_are_undefined_not_dropped(tmp_path):
    path = write_csv_task(tmp_path, [3, 4, 6, 8], extra="protocol: {attributes: [color], bootstrap: {resamples: 10}}\n")
    results = evaluate(load_task(str(path)), tmp_path / "out", model=MeanPixel())
    assert (
        results["undefined"]["srcc@color"] == "needs at least 2 items with a label and a prediction for 'color', got 0"
    )
    assert results["details"]["attributes"]["color"]["left_out"] == {"no label for this attribute": 4}
