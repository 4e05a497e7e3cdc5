"""Hostile inputs, class 5a: line and control characters inside captions never shift other captions.

pycocoevalcap's PTB tokenizer runs one caption a line and breaks lines at \\r, \\x0b, \\x0c, U+0085,
U+2028 and U+2029 too, while pycocoevalcap replaces only \\n: one such character moves every later
caption onto the wrong image. Shown here on pycocoevalcap's own tokenizer, then fixed: the metrics
(corpus and per item) equal those of the same text with spaces. Real Java, real METEOR.
"""

from __future__ import annotations

import json
import os

from pycocoevalcap.tokenizer import ptbtokenizer
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from aesbench.captions import CaptionScorer, normalise_caption, ptb_tokenize

from conftest import REPO, requires_java
from hostile_util import cli

pytestmark = requires_java

BREAKS = ["\r", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\r\n", "\t", "\x00", "\x1c"]


def tiny_corpus():
    data = json.loads((REPO / "tasks/data/tiny-ava/ava_captions.json").read_text())
    refs = {e["filename"][:-4]: [s["raw"] for s in e["sentences"]] for e in data["images"] if e["split"] == "test"}
    ids = sorted(refs)
    cands = {k: refs[ids[(i + 1) % len(ids)]][i % 5] for i, k in enumerate(ids)}
    return refs, cands, ids


def test_pycocoevalcaps_own_tokenizer_shifts_captions():
    """The bug being fixed: with a U+2028 in the first caption, pycocoevalcap gives the second key the first's tail."""
    tokens = PTBTokenizer().tokenize(
        {"a": [{"caption": "nice light\u2028great colours"}], "b": [{"caption": "too dark"}]}
    )
    assert tokens["b"] == ["great colours"]  # not "too dark": every later caption moved up one line


def test_metrics_equal_the_same_text_with_spaces():
    refs, cands, ids = tiny_corpus()
    hostile_refs = {k: list(v) for k, v in refs.items()}
    hostile_cands = dict(cands)
    for n, brk in enumerate(BREAKS):  # a break inside a candidate and inside a reference of other images
        hostile_cands[ids[n]] = cands[ids[n]].replace(" ", brk, 2)
        hostile_refs[ids[-1 - n]][n % 5] = refs[ids[-1 - n]][n % 5].replace(" ", brk, 1)
    hostile_cands[ids[20]] = cands[ids[20]] + " \ud800 done"  # a lone surrogate: not UTF-8 encodable
    spaced_cands = {k: v.replace("\ud800", "\ufffd") for k, v in hostile_cands.items()}
    for brk in sorted(BREAKS, key=len, reverse=True):
        spaced_cands = {k: v.replace(brk, " " * len(brk)) for k, v in spaced_cands.items()}
    spaced_refs = {k: [r for r in v] for k, v in hostile_refs.items()}
    for brk in sorted(BREAKS, key=len, reverse=True):
        spaced_refs = {k: [r.replace(brk, " " * len(brk)) for r in v] for k, v in spaced_refs.items()}
    assert spaced_cands != hostile_cands and spaced_refs != hostile_refs
    scorer = CaptionScorer(workers=1)
    try:
        hostile = scorer.score(hostile_refs, hostile_cands)
        spaced = scorer.score(spaced_refs, spaced_cands)
    finally:
        scorer.close()
    assert hostile["metrics"] == spaced["metrics"]
    assert hostile["per_item"] == spaced["per_item"]
    assert hostile["normalised"]["candidates"] == len(BREAKS) + 1 and hostile["normalised"]["references"] == len(BREAKS)
    assert spaced["normalised"]["candidates"] == 0 and spaced["normalised"]["references"] == 0
    assert 0 < hostile["metrics"]["cider"]


def test_normalise_caption():
    assert normalise_caption("a\u2028b\rc\x0bd\x0ce\x85f\tg") == "a b c d e f g"
    assert normalise_caption("x\ud800y") == "x\ufffdy"
    assert normalise_caption("plain, café — ok") == "plain, café — ok"


def test_tokenizer_writes_nothing_into_pycocoevalcaps_folder():
    """Our temporary file lives in the system's temporary folder: the package folder (which may be read-only) is
    not written, so its modification time stays; pycocoevalcap's own call changes it (the control)."""
    folder = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
    captions = {"a": ["A nice photo, with good light."], "b": ["too dark!"]}
    before = os.stat(folder).st_mtime_ns
    ours = ptb_tokenize(captions)
    assert os.stat(folder).st_mtime_ns == before
    theirs = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    assert ours == theirs == {"a": ["a nice photo with good light"], "b": ["too dark"]}
    assert os.stat(folder).st_mtime_ns != before


def test_cli_records_normalised_comments(tmp_path):
    refs, cands, ids = tiny_corpus()
    preds = tmp_path / "preds.jsonl"
    lines = [{"id": k, "comment": v} for k, v in cands.items()]
    lines[0]["comment"] = "good\u2028light"
    lines[1]["comment"] = "odd \ud800 text"
    preds.write_text("".join(json.dumps(line) + "\n" for line in lines))
    r = cli(
        "eval", "--task", "tiny-ava-comment", "--predictions", str(preds), "--output", str(tmp_path / "run"), "--quiet"
    )
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["details"]["normalised"]["candidates"] == 2
    assert results["details"]["normalised"]["rule"].startswith("control and line-separator characters")
