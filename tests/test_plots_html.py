"""Plots drawn from run folders, the HTML leaderboard (and in headless Chromium when it is installed),
and the small CLI things a new user hit: task templates, markup in output, --name, capability first."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from PIL import Image

from aesbench import evaluate
from aesbench.datasets import read_dataset
from aesbench.leaderboard_html import render_html
from aesbench.runs import load_results
from aesbench.task import load_task
from conftest import REPO, run_cli, task_copy

RESULTS = REPO / "results"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _copy(run: str, tmp_path: Path) -> Path:
    """A committed run copied out, so plotting never writes into the repository."""
    target = tmp_path / run.replace("/", "-")
    shutil.copytree(RESULTS / run, target, ignore=shutil.ignore_patterns("plots"))
    return target


@pytest.mark.parametrize(
    "run, expected",
    [
        ("tiny-art-score/handcrafted", {"scatter"}),  # it scores no attributes
        ("tiny-pccd-suggest/handcrafted", {"accuracy_per_kind"}),
        ("tiny-flickr-aes-piaa/handcrafted", {"per_person_srcc"}),
        ("tiny-ava-comment/handcrafted", {"cider_per_item"}),
        ("tiny-flickr-aes-piaa/constant", set()),  # no person has a defined SRCC: nothing to draw
    ],
)
def test_plot_redraws_any_run_from_its_folder(run, expected, tmp_path):
    folder = _copy(run, tmp_path)
    proc = run_cli("plot", str(folder))
    assert proc.returncode == 0, proc.stderr
    pngs = sorted((folder / "plots").glob("*.png")) if expected else []
    assert {p.stem for p in pngs} == expected
    for png in pngs:
        with Image.open(png) as img:
            assert img.format == "PNG" and max(img.size) <= 800
        assert png.stat().st_size < 120_000
    assert ("none for" in proc.stderr) == (not expected)


def test_eval_writes_plots_unless_told_not_to(tmp_path):
    """A run that scores attributes gets the per-attribute bars too."""
    preds = tmp_path / "preds.jsonl"
    items = read_dataset(load_task("tiny-art-score")).items
    preds.write_text(
        "".join(
            json.dumps(
                {
                    "id": it.id,
                    "score": it.label["mos"] + n % 3,
                    "attributes": {k: v + n % 2 for k, v in it.label["attributes"].items() if v is not None},
                }
            )
            + "\n"
            for n, it in enumerate(items)
        )
    )
    task = str(task_copy(tmp_path, "tiny-art-score", resamples=20))  # plcc_logistic refits per resample
    on = run_cli("eval", "--task", task, "--predictions", str(preds), "--output", str(tmp_path / "on"))
    off = run_cli(
        "eval", "--task", task, "--predictions", str(preds), "--output", str(tmp_path / "off"), "--quiet", "--no-plots"
    )
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert sorted(p.name for p in (tmp_path / "on" / "plots").iterdir()) == ["attributes.png", "scatter.png"]
    assert "plots: " in on.stderr
    assert not (tmp_path / "off" / "plots").exists()
    assert json.loads((tmp_path / "on" / "results.json").read_text())["model"] == "preds"  # the file's stem by default


def test_api_evaluate_draws_plots_into_its_output_unless_told_not_to(tmp_path):
    task = str(task_copy(tmp_path, "tiny-ava-score", resamples=20))
    preds = tmp_path / "preds.jsonl"
    items = read_dataset(load_task(task)).items
    preds.write_text(
        "".join(json.dumps({"id": it.id, "score": it.label["mos"] + n % 3}) + "\n" for n, it in enumerate(items))
    )
    evaluate(task, predictions=preds, output=tmp_path / "on")
    evaluate(task, predictions=preds, output=tmp_path / "off", plots=False)
    assert [p.name for p in (tmp_path / "on" / "plots").iterdir()] == ["scatter.png"]
    assert not (tmp_path / "off" / "plots").exists() and (tmp_path / "off" / "results.json").is_file()


def test_plot_refuses_other_labels_in_one_line(tmp_path):
    folder = _copy("tiny-ava-score/handcrafted", tmp_path)
    record = json.loads((folder / "results.json").read_text())
    record["provenance"]["label_files"] = {"AVA.txt": "0" * 64}
    (folder / "results.json").write_text(json.dumps(record))
    proc = run_cli("plot", str(folder))
    assert proc.returncode == 2 and "not those" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


class _Cells(HTMLParser):
    """The page's tables: table id -> [(tbody class or None for the header, [cell texts])], and each
    row's data-value attributes in `values` (same layout)."""

    def __init__(self):
        super().__init__()
        self.tables, self.values, self.table, self.body, self.row, self.cell = {}, {}, None, None, None, None
        self.external = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if re.match(r"(https?:)?//", attrs.get(key) or ""):
                self.external.append(attrs[key])
        if tag == "link":
            self.external.append(attrs.get("href"))
        if tag == "table":
            self.table, self.body = attrs["id"], None
            self.tables[self.table], self.values[self.table] = [], []
        elif tag == "tbody":
            self.body = attrs.get("class")
        elif tag == "tr" and self.table:
            self.row, self.row_values = [], []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""
            self.row_values.append(attrs.get("data-value"))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[self.table].append((self.body, self.row))
            self.values[self.table].append((self.body, self.row_values))
            self.row = None
        elif tag == "thead":
            self.body = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _parse(page: str) -> _Cells:
    parser = _Cells()
    parser.feed(page)
    return parser


def test_committed_html_leaderboard_is_rendered_from_committed_results():
    page = render_html(load_results([RESULTS]), base=RESULTS)
    assert page == (RESULTS / "LEADERBOARD.html").read_text(encoding="utf-8")


def test_html_page_is_self_contained_with_reported_rows_apart(tmp_path):
    page = render_html(load_results([RESULTS]), base=RESULTS)
    cells = _parse(page)
    assert cells.external == []
    models = {r["model"] for r in load_results([RESULTS])}
    shown = {row[0] for rows in cells.tables.values() for body, row in rows if body == "measured"}
    assert models <= shown
    art = cells.tables[
        next(t for t, rows in cells.tables.items() if any("Reported in papers" in r[0] for _, r in rows))
    ]
    bodies = [body for body, _ in art if body]
    assert bodies == sorted(bodies, key=lambda b: b == "reported")  # measured first, then the reported ones
    assert 'href="tiny-ava-score/handcrafted/plots/scatter.png"' in page


def test_html_escapes_user_text(tmp_path):
    folder = _copy("tiny-ava-score/constant", tmp_path)
    record = json.loads((folder / "results.json").read_text())
    record["model"] = "<script>alert(1)</script>[train]"
    (folder / "results.json").write_text(json.dumps(record))
    out = tmp_path / "page.html"
    proc = run_cli("leaderboard", str(folder), "--format", "html", "--no-reported", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;[train]" in page


def _chromium(url: str, *args) -> str:
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium); "
    "the HTML page's structure is still tested without it",
)
def test_html_leaderboard_in_headless_chromium(tmp_path):
    out = tmp_path / "page.html"
    proc = run_cli(
        "leaderboard",
        str(RESULTS / "tiny-ava-score"),
        str(RESULTS / "tiny-art-score"),
        "--format",
        "html",
        "--output",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    table = next(t for t, rows in _parse(page).tables.items() if rows and "mse" in " ".join(rows[0][1]))
    header = next(row for body, row in _parse(page).tables[table] if body is None)
    column = next(i for i, c in enumerate(header) if c.startswith("mse"))

    loaded = _chromium(out.as_uri(), "--dump-dom")
    for task in ("tiny-ava-score", "tiny-art-score"):
        assert f'data-task="{task}"' in loaded
    records = load_results([RESULTS / "tiny-ava-score", RESULTS / "tiny-art-score"])
    assert {r["model"] for r in records} <= {row[0] for t in _parse(loaded).tables.values() for _, row in t}

    for order, expect in (("best", sorted), ("worst", lambda v: sorted(v, reverse=True))):
        dom = _chromium(out.as_uri() + f"#sort={table}:mse:{order}", "--dump-dom")
        values = [
            None if row[column] is None else float(row[column])
            for body, row in _parse(dom).values[table]
            if body == "measured"
        ]
        given = [v for v in values if v is not None]
        assert given == expect(given) and values[len(given) :] == [None] * (len(values) - len(given)), (order, values)
        assert f'aria-sort="{"ascending" if order == "best" else "descending"}"' in dom
    shot = tmp_path / "shot.png"
    _chromium(out.as_uri(), f"--screenshot={shot}", "--window-size=1000,700", "--hide-scrollbars")
    with Image.open(shot) as img:
        low, high = img.convert("L").getextrema()
        assert img.size == (1000, 700) and high - low > 100  # something was drawn


def test_task_template_is_plain_yaml_that_loads_and_runs(tmp_path):
    proc = run_cli("tasks", "tiny-ava-score")
    assert proc.returncode == 0, proc.stderr
    template = tmp_path / "my.yaml"
    template.write_text(proc.stdout)
    assert max(map(len, proc.stdout.splitlines())) > 80  # not wrapped at 80 columns
    assert yaml.safe_load(proc.stdout)["name"] == "tiny-ava-score"
    task = load_task(str(template))
    assert task.metrics == load_task("tiny-ava-score").metrics
    run = run_cli(
        "eval",
        "--task",
        str(template),
        "--model",
        "constant",
        "--output",
        str(tmp_path / "run"),
        "--quiet",
        "--no-plots",
    )
    assert run.returncode == 0, run.stderr


def test_rich_output_keeps_brackets_and_name_sets_the_model(tmp_path):
    proc = run_cli("eval", "--task", "[train]", "--model", "constant", "--output", str(tmp_path / "x"))
    assert proc.returncode == 2 and "'[train]'" in proc.stderr
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "1", "score": 5}\n')
    named = run_cli(
        "eval",
        "--task",
        "tiny-ava-score",
        "--predictions",
        str(preds),
        "--name",
        "my-model",
        "--output",
        str(tmp_path / "n"),
        "--no-plots",
    )
    assert named.returncode == 0, named.stderr
    assert json.loads((tmp_path / "n" / "results.json").read_text())["model"] == "my-model"
    assert "my-model" in named.stdout
    refused = run_cli(
        "eval", "--task", "tiny-ava-score", "--model", "constant", "--name", "x", "--output", str(tmp_path / "m")
    )
    assert refused.returncode == 2 and "--name applies to --predictions" in refused.stderr


def test_capability_is_checked_before_the_models_extra(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from aesbench import cli
    from aesbench.adapter import model_class
    from aesbench.errors import AesbenchError

    def needs_extra(self):
        raise AesbenchError("model 'brisque' needs the 'iqa' extra")

    monkeypatch.setattr(model_class("brisque"), "__init__", needs_extra)
    result = CliRunner().invoke(
        cli.cli, ["eval", "--task", "tiny-ava-comment", "--model", "brisque", "--output", str(tmp_path / "b")]
    )
    assert result.exit_code == 2 and "cannot comment" in result.output and "extra" not in result.output


def test_models_table_keeps_install_hints_in_brackets(monkeypatch):
    from click.testing import CliRunner

    from aesbench import cli
    from aesbench.adapter import model_class

    monkeypatch.setattr(model_class("constant"), "__doc__", "(not installed: pip install 'aesbench[train]')")
    result = CliRunner().invoke(cli.cli, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "'aesbench[train]'" in result.output  # (a narrow table may wrap at the space)
