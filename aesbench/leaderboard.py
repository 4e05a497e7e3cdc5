"""Leaderboards: one table per task from results records, with bootstrap CIs; paper numbers appear as
separate rows marked `reported` with their source, never as measurements.

A table is one task identity: its name and the hash of its protocol as run (family, version,
dataset, preprocessing, prompt, protocol; not its description or notes). Records of one task name
run under different protocols (another task version, another threshold) get separate tables, each
headed with its protocol hash and what differs, never merged into one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from importlib import resources

import yaml

from .families import FAMILIES, get_family
from .images import Preprocessing
from .metrics import ATTRIBUTE_METRICS, lower_is_better
from .task import builtin_tasks, load_task


def reported_rows() -> list[dict]:
    return yaml.safe_load(resources.files("aesbench").joinpath("reported.yaml").read_text())


IDENTITY_KEYS = ("family", "version", "dataset", "preprocessing", "prompt", "protocol")


def _identity(protocol: dict | None) -> dict:
    """What decides a task's numbers (IDENTITY_KEYS of its definition as run), with the defaults
    filled in: a record written before preprocessing.draft_size existed, or before results recorded the
    family's protocol defaults, ran with those defaults, so it is the same protocol. A protocol key this
    version does not know is kept as recorded: it still tells two protocols apart."""
    core = {k: (protocol or {}).get(k) for k in IDENTITY_KEYS}
    if isinstance(core["preprocessing"], dict):
        core["preprocessing"] = {**Preprocessing().to_dict(), **core["preprocessing"]}
    if isinstance(core["protocol"], dict) and core["family"] in FAMILIES:
        given = core["protocol"]
        core["protocol"] = {**given, **get_family(core["family"]).Protocol.from_record(given).to_dict()}
    return core


def protocol_hash(protocol: dict | None) -> str:
    """The first 8 hex digits of the sha256 of a task's identity (_identity)."""
    return hashlib.sha256(json.dumps(_identity(protocol), sort_keys=True, default=str).encode()).hexdigest()[:8]


def differences(protocols: list[dict]) -> list[str]:
    """The keys (dotted, one level into dataset and protocol) whose values differ between the protocols."""
    keys = []
    cores = [_identity(p) for p in protocols]
    for top in IDENTITY_KEYS:
        values = [core[top] for core in cores]
        if all(v == values[0] for v in values):
            continue
        if all(isinstance(v, dict) for v in values):
            subs = sorted({k for v in values for k in v}, key=str)
            keys += [f"{top}.{k}" for k in subs if any(v.get(k) != values[0].get(k) for v in values)]
        else:
            keys.append(top)
    return keys


def rows(records: list[dict], include_reported: bool) -> dict[str, dict]:
    """table title -> {"task", "metrics": ordered names, "attributes": keys scored per attribute, "rows": [...]},
    measured rows first (best first); one table per task identity (name + protocol hash)."""
    variants: dict[str, dict[str, dict]] = {}  # task name -> protocol hash -> a protocol as run
    for rec in records:
        variants.setdefault(rec["task"], {}).setdefault(protocol_hash(rec.get("protocol")), rec.get("protocol") or {})
    titles = {}
    for task, by_hash in variants.items():
        differ = differences(list(by_hash.values())) if len(by_hash) > 1 else []
        for h, protocol in by_hash.items():
            version = protocol.get("version", "?")
            titles[task, h] = (
                task
                if len(by_hash) == 1
                else f"{task} · version {version}, protocol {h} (differs in {', '.join(differ) or 'nothing shown'})"
            )
    tables: dict[str, dict] = {}
    for rec in records:
        title = titles[rec["task"], protocol_hash(rec.get("protocol"))]
        table = tables.setdefault(title, {"task": rec["task"], "metrics": [], "attributes": [], "rows": []})
        for key in rec.get("protocol", {}).get("protocol", {}).get("attributes", []):
            if key not in table["attributes"] and any(f"{m}@{key}" in rec["metrics"] for m in ATTRIBUTE_METRICS):
                table["attributes"].append(key)
        for name in rec.get("protocol", {}).get("metrics", []):
            expanded = [m for m in rec["metrics"] if m == name or m.startswith(name + "_k")] or [name]
            table["metrics"] += [m for m in expanded if m not in table["metrics"]]
        prov = rec.get("provenance", {})
        commit = (prov.get("git") or {}).get("commit") or "no git"
        table["rows"].append(
            {
                "model": rec["model"],
                "type": "measured",
                "n": rec.get("n"),
                "metrics": rec["metrics"],
                "ci95": rec.get("ci95", {}),
                "source": f"aesbench {prov.get('aesbench', '?')} @ {commit[:7]}, {str(prov.get('end', ''))[:10]}",
                "path": rec.get("_path"),
            }
        )
    for table in tables.values():
        if table["metrics"]:
            table["rows"].sort(key=lambda r, key=table["metrics"][0]: best_first(r["metrics"].get(key), key))
    if include_reported:
        builtin = builtin_tasks()
        for row in reported_rows():
            title = row["task"]  # beside the measured rows, unless several protocols were measured: then apart
            if len(variants.get(row["task"], {})) > 1:
                title = f"{row['task']} · reported (the papers' own protocols)"
            table = tables.setdefault(title, {"task": row["task"], "metrics": [], "attributes": [], "rows": []})
            if not table["metrics"] and row["task"] in builtin:  # the task's own metric order
                table["metrics"] = list(load_task(row["task"]).metrics)
            table["metrics"] += [m for m in row["metrics"] if m not in table["metrics"]]
            table["rows"].append(
                {
                    "model": row["model"],
                    "type": "reported",
                    "n": None,
                    "metrics": row["metrics"],
                    "ci95": {},
                    "source": row["source"],
                }
            )
    return dict(sorted(tables.items()))


def best_first(value: float | None, metric: str) -> tuple:
    """Sort key: the best value of the metric first (lower first for MSE and EMD), a missing one last."""
    if value is None:
        return (1, 0.0)
    return (0, value if lower_is_better(metric) else -value)


def md(text) -> str:
    """Text for a markdown table cell or heading: no line breaks, no unescaped '|'."""
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|")


def _cell(row: dict, metric: str) -> str:
    value = row["metrics"].get(metric)
    if value is None:
        return "–"
    ci = row["ci95"].get(metric)
    return f"{value:.3f} ({ci[0]:.3f}–{ci[1]:.3f})" if ci else f"{value:.3f}"


def render_markdown(records: list[dict], include_reported: bool = True) -> str:
    out = [
        "# aesbench leaderboard",
        "",
        "Measured rows: value (bootstrap CI over items, over people for PIAA, at each task's level: 95% unless the task says otherwise). "
        "Reported rows: numbers printed in papers, under their own protocols; not measured here.",
        "",
    ]
    for title, table in rows(records, include_reported).items():
        metrics = table["metrics"]
        out += [
            f"## {md(title)}",
            "",
            "| model | type | n | " + " | ".join(map(md, metrics)) + " | source |",
            "|" + "---|" * (len(metrics) + 4),
        ]
        for row in table["rows"]:
            n = "" if row["n"] is None else str(row["n"])
            cells = " | ".join(_cell(row, m) for m in metrics)
            out.append(f"| {md(row['model'])} | {row['type']} | {n} | {cells} | {md(row['source'])} |")
        out.append("")
        if table["attributes"]:
            out += [
                f"Per attribute ({' / '.join(ATTRIBUTE_METRICS)}):",
                "",
                "| model | " + " | ".join(table["attributes"]) + " |",
                "|" + "---|" * (len(table["attributes"]) + 1),
            ]
            for row in table["rows"]:
                if row["type"] == "measured":
                    cells = [
                        " / ".join(
                            f"{row['metrics'][f'{m}@{key}']:.3f}" if f"{m}@{key}" in row["metrics"] else "–"
                            for m in ATTRIBUTE_METRICS
                        )
                        for key in table["attributes"]
                    ]
                    out.append(f"| {md(row['model'])} | " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


def render_csv(records: list[dict], include_reported: bool = True) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "model", "type", "n", "metric", "value", "ci_low", "ci_high", "source"])
    for title, table in rows(records, include_reported).items():
        task = title if title == table["task"] else title.split(" (differs")[0]  # name · version, protocol hash
        per_attribute = [f"{m}@{key}" for key in table["attributes"] for m in ATTRIBUTE_METRICS]
        for row in table["rows"]:
            for metric in table["metrics"] + per_attribute:
                if metric in row["metrics"]:
                    ci = row["ci95"].get(metric) or ["", ""]
                    writer.writerow(
                        [
                            task,
                            row["model"],
                            row["type"],
                            row["n"] if row["n"] is not None else "",
                            metric,
                            row["metrics"][metric],
                            ci[0],
                            ci[1],
                            row["source"],
                        ]
                    )
    return buf.getvalue()
