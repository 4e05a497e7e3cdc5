"""Judges for the suggest protocol: does a suggestion address the attribute that was degraded?

CALM judged with GPT-3.5; offline we need a judge that runs locally and can be read. The keyword
judge is a fixed list of patterns per degradation kind: a suggestion is correct when it matches a
pattern of the degraded kind (more may be said). Every verdict records the judge and the matched
words, so a reader can audit it. Known limits: no negation handling ("the noise is fine" counts),
and words such as "exposure" count for both the dark and the bright kinds.
"""
from __future__ import annotations

import re

from .adapter import nearest
from .errors import AesbenchError

KEYWORD_PATTERNS = {
    "noise": r"nois\w*|grain\w*|speckl\w*|denois\w*|\biso\b|salt.and.pepper",
    "blur": r"blur\w*|sharp\w*|focus\w*|shak\w*|tripod|shutter speed|\bsoft\w*|motion",
    "dark": r"dark\w*|underexpos\w*|bright\w*|lighten\w*|exposure|\bdim\b|shadows?\b|more light",
    "bright": r"overexpos\w*|bright\w*|blown|highlights?\b|exposure|darken\w*|washed.out|less light",
    "desaturated": r"saturat\w*|colou?r\w*|vivid\w*|vibran\w*|\bdull\b|washed.out|grey|gray|monochrom\w*",
    "crop": r"crop\w*|fram\w*|composi\w*|cut.off|\bcut\b|zoom out|wider|more room|include the",
}


class KeywordJudge:
    name = "keyword-v1"

    def __init__(self, patterns: dict[str, str] | None = None):
        self.patterns = {k: re.compile(p, re.IGNORECASE) for k, p in (patterns or KEYWORD_PATTERNS).items()}

    def describe(self) -> dict:
        return {"name": self.name, "patterns": {k: p.pattern for k, p in self.patterns.items()}}

    def judge(self, suggestion: str, kind: str) -> dict:
        matched = sorted({m.group(0).lower() for m in self.patterns[kind].finditer(suggestion or "")})
        return {"correct": bool(matched), "matched": matched, "judge": self.name}


JUDGES = {"keyword": KeywordJudge}


def judge_spec(spec) -> tuple[str, dict]:
    """A task's `judge`: a name, or a mapping {name: ..., option: value, ...}."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "name" in spec:
        options = dict(spec)
        return options.pop("name"), options
    raise AesbenchError(f"judge must be a name or a mapping with a name, not {spec!r}")


def check_judge(spec) -> tuple[str, dict]:
    """The judge's name and options, or one line naming the nearest known judge."""
    name, options = judge_spec(spec)
    if name not in JUDGES:
        raise AesbenchError(f"unknown judge {name!r}{nearest(str(name), JUDGES)} (known: {', '.join(JUDGES)})")
    return name, options


def make_judge(spec):
    name, options = check_judge(spec)
    try:
        return JUDGES[name](**options)
    except TypeError as e:
        raise AesbenchError(f"judge {name!r}: {e}") from None
