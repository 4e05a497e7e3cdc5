"""Leaderboards: one table per task from results records, with bootstrap CIs; paper numbers appear as
separate rows marked `reported` with their source, never as measurements."""
from __future__ import annotations

import csv
import io
from importlib import resources

import yaml

from .metrics import ATTRIBUTE_METRICS
from .task import builtin_tasks, load_task


def reported_rows() -> list[dict]:
    return yaml.safe_load(resources.files("aesbench").joinpath("reported.yaml").read_text())


def _rows(records: list[dict], include_reported: bool) -> dict[str, dict]:
    """task -> {"metrics": ordered names, "attributes": keys scored per attribute, "rows": [...]},
    measured rows first (best first)."""
    tables: dict[str, dict] = {}
    for rec in records:
        table = tables.setdefault(rec["task"], {"metrics": [], "attributes": [], "rows": []})
        for key in rec.get("protocol", {}).get("protocol", {}).get("attributes", []):
            if key not in table["attributes"] and any(f"{m}@{key}" in rec["metrics"] for m in ATTRIBUTE_METRICS):
                table["attributes"].append(key)
        for name in rec.get("protocol", {}).get("metrics", []):
            expanded = [m for m in rec["metrics"] if m == name or m.startswith(name + "_k")] or [name]
            table["metrics"] += [m for m in expanded if m not in table["metrics"]]
        prov = rec.get("provenance", {})
        commit = (prov.get("git") or {}).get("commit") or "no git"
        table["rows"].append({
            "model": rec["model"], "type": "measured", "n": rec.get("n"), "metrics": rec["metrics"],
            "ci95": rec.get("ci95", {}), "source": f"aesbench {prov.get('aesbench', '?')} @ {commit[:7]}, {str(prov.get('end', ''))[:10]}",
        })
    for table in tables.values():
        key = table["metrics"][0] if table["metrics"] else None
        table["rows"].sort(key=lambda r: -(r["metrics"].get(key, float("-inf"))) if key else 0)
    if include_reported:
        builtin = builtin_tasks()
        for row in reported_rows():
            table = tables.setdefault(row["task"], {"metrics": [], "attributes": [], "rows": []})
            if not table["metrics"] and row["task"] in builtin:  # the task's own metric order
                table["metrics"] = list(load_task(row["task"]).metrics)
            table["metrics"] += [m for m in row["metrics"] if m not in table["metrics"]]
            table["rows"].append({"model": row["model"], "type": "reported", "n": None, "metrics": row["metrics"],
                                  "ci95": {}, "source": row["source"]})
    return dict(sorted(tables.items()))


def _cell(row: dict, metric: str) -> str:
    value = row["metrics"].get(metric)
    if value is None:
        return "–"
    ci = row["ci95"].get(metric)
    return f"{value:.3f} ({ci[0]:.3f}–{ci[1]:.3f})" if ci else f"{value:.3f}"


def render_markdown(records: list[dict], include_reported: bool = True) -> str:
    out = ["# aesbench leaderboard", "",
           "Measured rows: value (bootstrap CI over items, over people for PIAA, at each task's level: 95% unless the task says otherwise). "
           "Reported rows: numbers printed in papers, under their own protocols; not measured here.", ""]
    for task, table in _rows(records, include_reported).items():
        metrics = table["metrics"]
        out += [f"## {task}", "", "| model | type | n | " + " | ".join(metrics) + " | source |",
                "|" + "---|" * (len(metrics) + 4)]
        for row in table["rows"]:
            n = "" if row["n"] is None else str(row["n"])
            out.append(f"| {row['model']} | {row['type']} | {n} | " + " | ".join(_cell(row, m) for m in metrics) + f" | {row['source']} |")
        out.append("")
        if table["attributes"]:
            out += [f"Per attribute ({' / '.join(ATTRIBUTE_METRICS)}):", "",
                    "| model | " + " | ".join(table["attributes"]) + " |", "|" + "---|" * (len(table["attributes"]) + 1)]
            for row in table["rows"]:
                if row["type"] == "measured":
                    cells = [" / ".join(f"{row['metrics'][f'{m}@{key}']:.3f}" if f"{m}@{key}" in row["metrics"] else "–"
                                        for m in ATTRIBUTE_METRICS) for key in table["attributes"]]
                    out.append(f"| {row['model']} | " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


def render_csv(records: list[dict], include_reported: bool = True) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "model", "type", "n", "metric", "value", "ci_low", "ci_high", "source"])
    for task, table in _rows(records, include_reported).items():
        per_attribute = [f"{m}@{key}" for key in table["attributes"] for m in ATTRIBUTE_METRICS]
        for row in table["rows"]:
            for metric in table["metrics"] + per_attribute:
                if metric in row["metrics"]:
                    ci = row["ci95"].get(metric) or ["", ""]
                    writer.writerow([task, row["model"], row["type"], row["n"] if row["n"] is not None else "",
                                     metric, row["metrics"][metric], ci[0], ci[1], row["source"]])
    return buf.getvalue()
