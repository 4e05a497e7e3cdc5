"""The leaderboard as one self-contained HTML page: CSS and JavaScript inline, nothing fetched.

The tables are those of leaderboard.rows (one per task identity). Measured rows sit in one table body, best
first by the task's first metric; the numbers papers report sit in a second body under their own
heading, never sorted among the measured rows. Clicking a column header sorts the measured rows,
best first in the metric's own direction (lower first for MSE and EMD); a second click reverses.
The sort is kept in the address (#sort=TABLE:COLUMN:best|worst), so a sorted view can be linked.
Each measured row links to the PNGs in its run's plots/ folder when that folder is at hand, by a
path relative to the page.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from .leaderboard import rows
from .metrics import ATTRIBUTE_METRICS, lower_is_better
from .plots import PLOTS

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 90em; padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin: 2em 0 .4em; }
p.lead { color: #555; max-width: 60em; }
table { border-collapse: collapse; margin: .3em 0 1em; }
th, td { padding: .3em .7em; border-bottom: 1px solid #e3e3e3; text-align: right; vertical-align: top; white-space: nowrap; }
th { background: #f5f5f7; cursor: pointer; user-select: none; }
th[aria-sort="descending"]::after, th[aria-sort="ascending"]::after { content: " \\25BC"; font-size: .7em; color: #06c; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
td.model, th.model, td.source, th.source { text-align: left; }
td.source { color: #777; font-size: .85em; white-space: normal; max-width: 22em; }
.ci { display: block; color: #888; font-size: .8em; }
tbody.reported td { background: #fbf7ee; color: #6b5b2e; }
tbody.reported tr.heading td { background: #f3ead3; font-weight: 600; text-align: left; }
td.plots a { margin-right: .5em; }
nav a { margin-right: 1em; }
"""

SCRIPT = """
(function () {
  function key(cell, kind) {
    if (kind === "text") return cell.textContent.trim().toLowerCase();
    var v = parseFloat(cell.getAttribute("data-value"));
    return isNaN(v) ? null : v;
  }
  function sortBy(th, order) {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var kind = th.getAttribute("data-kind"), lower = th.getAttribute("data-lower-better") === "1";
    var ascending = (kind === "text" || lower) === (order === "best");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col], kind), y = key(b.cells[col], kind);
      if (x === null || y === null) return (x === null) - (y === null);  /* missing values last */
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.removeAttribute("aria-sort"); c.removeAttribute("data-order"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    th.setAttribute("data-order", order);
    history.replaceState(null, "", "#sort=" + table.id + ":" + th.getAttribute("data-column") + ":" + order);
  }
  document.querySelectorAll("th[data-column]").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th, th.getAttribute("data-order") === "best" ? "worst" : "best"); });
  });
  var m = /^#sort=([^:]+):(.+):(best|worst)$/.exec(decodeURIComponent(location.hash));
  if (m) {
    var table = document.getElementById(m[1]);
    var th = table && Array.prototype.find.call(table.tHead.rows[0].cells, function (c) { return c.getAttribute("data-column") === m[2]; });
    if (th) { th.click(); if (m[3] === "worst") th.click(); }  /* as a reader's clicks would */
  }
})();
"""

INTRO = (
    "Measured rows: value and bootstrap CI (over items, over people for PIAA, at each task's level: 95% unless"
    " the task says otherwise); click a column to sort them, best first (lower is better for MSE and EMD), click"
    " again to reverse. Reported rows: numbers printed in papers, under their own protocols; not measured here,"
    " shown apart and never sorted among the measured rows."
)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _header(column: str, label: str, kind: str, lower: bool = False) -> str:
    hint = "text" if kind == "text" else ("lower is better" if lower else "higher is better")
    return (
        f'<th data-column="{_e(column)}" data-kind="{kind}" data-lower-better="{int(lower)}"'
        f' class="{"model" if column == "model" else ""}" title="{_e(hint)}">{_e(label)}</th>'
    )


def _metric_cell(row: dict, metric: str) -> str:
    value = row["metrics"].get(metric)
    if value is None:
        return "<td>–</td>"
    ci = row["ci95"].get(metric)
    band = f'<span class="ci">{ci[0]:.3f}–{ci[1]:.3f}</span>' if ci else ""
    return f'<td data-value="{value!r}">{value:.3f}{band}</td>'


def _plot_links(row: dict, base: Path) -> str:
    if not row.get("path"):
        return "–"
    pngs = sorted((Path(row["path"]).parent / PLOTS).glob("*.png"))
    links = [
        f'<a href="{_e(Path(os.path.relpath(p.resolve(), base.resolve())).as_posix())}">{_e(p.stem.replace("_", " "))}</a>'
        for p in pngs
    ]
    return " ".join(links) or "–"


def _table(table_id: str, columns: list[str], measured: list[dict], reported: list[dict], base: Path) -> list[str]:
    heads = [_header("model", "model", "text"), _header("n", "n", "number")]
    heads += [_header(m, f"{m} {'↓' if lower_is_better(m) else '↑'}", "number", lower_is_better(m)) for m in columns]
    out = [
        f'<table id="{_e(table_id)}">',
        "<thead><tr>" + "".join(heads) + '<th class="source">source</th><th>plots</th></tr></thead>',
        '<tbody class="measured">',
    ]
    for row in measured:
        n = "" if row["n"] is None else str(row["n"])
        out.append(
            f'<tr><td class="model">{_e(row["model"])}</td><td data-value="{n}">{n}</td>'
            + "".join(_metric_cell(row, m) for m in columns)
            + f'<td class="source">{_e(row["source"])}</td><td class="plots">{_plot_links(row, base)}</td></tr>'
        )
    out.append("</tbody>")
    if reported:
        out += [
            '<tbody class="reported">',
            f'<tr class="heading"><td colspan="{len(columns) + 4}">Reported in papers (their own protocols; not measured here)</td></tr>',
        ]
        for row in reported:
            out.append(
                f'<tr><td class="model">{_e(row["model"])}</td><td></td>'
                + "".join(_metric_cell(row, m) for m in columns)
                + f'<td class="source">{_e(row["source"])}</td><td></td></tr>'
            )
        out.append("</tbody>")
    out.append("</table>")
    return out


def render_html(records: list[dict], include_reported: bool = True, base: Path = Path(".")) -> str:
    """The page; plot links are relative to `base`, the folder the page is written to."""
    tables = rows(records, include_reported)
    body = ["<h1>aesbench leaderboard</h1>", f'<p class="lead">{_e(INTRO)}</p>', "<nav>"]
    body += [f'<a href="#task-{n}">{_e(title)}</a>' for n, title in enumerate(tables)]
    body.append("</nav>")
    for n, (title, table) in enumerate(tables.items()):
        measured = [r for r in table["rows"] if r["type"] == "measured"]
        reported = [r for r in table["rows"] if r["type"] == "reported"]
        body += [f'<section id="task-{n}" data-task="{_e(table["task"])}">', f"<h2>{_e(title)}</h2>"]
        body += _table(f"table-{n}", table["metrics"], measured, reported, base)
        if table["attributes"] and measured:
            body.append(f"<p>Per attribute ({_e(' / '.join(ATTRIBUTE_METRICS))}):</p>")
            columns = [f"{m}@{key}" for key in table["attributes"] for m in ATTRIBUTE_METRICS]
            body += _table(f"table-{n}-attributes", columns, measured, [], base)
        body.append("</section>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>aesbench leaderboard</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            *body,
            f"<script>{SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )
