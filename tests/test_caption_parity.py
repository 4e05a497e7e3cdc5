"""Randomized parity with COCOEvalCap itself: caption sets built to break tokenization (emoticons, brackets,
quotes, unicode, digits, empty and one-word candidates, 1-6 references, the last caption of each tokenizer call
ending in an emoticon), scored by pycocoevalcap's own `COCOEvalCap.evaluate` and by CaptionScorer. All seven
metrics must be equal, corpus and per item, and the bootstrap's resamples must equal pycocoevalcap's scorers run
on the resampled items.

COCOEvalCap.evaluate runs as published (its PTBTokenizer calls, Bleu, Meteor, Rouge, Cider, in its order), with
two changes that do not touch the seven numbers: SPICE is left out (it needs Stanford models it downloads on
first use; nothing offline), and every evaluate() shares one real METEOR JVM instead of loading a new one (its
paraphrase table takes 8 s to load) — the JVM holds no state between EVAL lines.
"""

import numpy as np
import pytest
from conftest import requires_java
from pycocoevalcap import eval as coco_eval
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from aesbench.captions import CaptionScorer, ptb_tokenize_calls

pytestmark = requires_java

SEEDS = range(20)
EMOTICONS = [":)", ":(", ":-)", ";)", ":D", ":P", ":-(", ":/", "=)", ":')", "^_^", "<3", ":]", ":[", ":o)", "XD"]
WORDS = [
    "nice",
    "photo",
    "light",
    "Colour",
    "colors",
    "sharp",
    "BLURRY",
    "exposure",
    "don't",
    "it's",
    "can't",
    "f/2.8",
    "1/250s",
    "ISO-100",
    "5/10",
    "10",
    "3.5",
    "100%",
    "#1",
    "a",
    "the",
    "is",
    "too",
    "dark",
    "B&W",
    "e-mail",
    "U.S.",
    "etc.",
    "co-op",
    "cliché",
    "naïve",
    "façade",
    "Ünïcödé",
    "東京",
    "写真",
    "фото",
    "😀",
    "👍🏽",
    "—",
    "–",
    "…",
    "«bien»",
    "“quoted”",
    "‘single’",
    "½",
    "²",
    "ﬁne",
    "\u00a0",
    "O'Brien",
    "rock'n'roll",
    "$5",
    "@user",
]
WRAPS = [
    "({})",
    "[{}]",
    "{{{}}}",
    '"{}"',
    "'{}'",
    "``{}''",
    "<{}>",
    "{}!",
    "{}?",
    "{}...",
    "{},",
    "{};",
    "{}:",
    "-{}-",
    "--{}",
    "{}!!!",
    "*{}*",
    "{} ||| {}",
    "{}|||",
    "{}  {}",
    "{}.{}",
]


def _caption(rng: np.random.Generator) -> str:
    words = []
    for _ in range(int(rng.integers(1, 14))):
        word = WORDS[int(rng.integers(len(WORDS)))]
        if rng.random() < 0.25:
            word = WRAPS[int(rng.integers(len(WRAPS)))].format(word, word)
        if rng.random() < 0.12:
            word = EMOTICONS[int(rng.integers(len(EMOTICONS)))]
        words.append(word)
    text = " ".join(words)
    text = text.upper() if rng.random() < 0.1 else text.capitalize() if rng.random() < 0.5 else text
    if rng.random() < 0.3:
        text += " " + EMOTICONS[int(rng.integers(len(EMOTICONS)))]
    return text


def caption_set(seed: int) -> tuple[dict[str, list[str]], dict[str, str]]:
    """10-40 images with 1-6 references and one candidate each; the last reference of the last image and the
    last candidate end in an emoticon, so the last line of each of COCOEvalCap's two tokenizer calls does."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 41))
    refs, cands = {}, {}
    for i in range(n):
        key = f"img{seed}_{i}"
        refs[key] = [_caption(rng) for _ in range(int(rng.integers(1, 7)))]
        draw = rng.random()
        if draw < 0.08:
            cands[key] = ""
        elif draw < 0.18:
            cands[key] = WORDS[int(rng.integers(len(WORDS)))]
        elif draw < 0.26:
            cands[key] = refs[key][int(rng.integers(len(refs[key])))]  # an exact copy
        else:
            cands[key] = _caption(rng)
    last = list(refs)[-1]
    refs[last][-1] += " " + EMOTICONS[seed % len(EMOTICONS)]
    cands[last] += " " + EMOTICONS[(seed + 3) % len(EMOTICONS)]
    return refs, cands


class _Captions:
    """The part of pycocotools' COCO object that COCOEvalCap reads: image ids in the file's order, annotations per image."""

    def __init__(self, captions: dict[str, list[str]]):
        self.imgToAnns = {k: [{"image_id": k, "caption": c} for c in caps] for k, caps in captions.items()}

    def getImgIds(self):
        return list(self.imgToAnns)


class _NoSpice:
    def compute_score(self, gts, res):
        return 0.0, [0.0] * len(gts)

    def method(self):
        return "SPICE"


@pytest.fixture(scope="module")
def cocoevalcap(monkeypatch_module):
    """COCOEvalCap.evaluate as published, SPICE left out, one real METEOR JVM shared by every call; the tokens of
    its two PTBTokenizer calls are kept (the real tokenizer runs; its output is recorded on the way out)."""
    meteor = Meteor()
    monkeypatch_module.setattr(coco_eval, "Spice", _NoSpice)
    monkeypatch_module.setattr(coco_eval, "Meteor", lambda: meteor)
    calls = []

    class RecordingTokenizer(PTBTokenizer):
        def tokenize(self, captions_for_image):
            calls.append(super().tokenize(captions_for_image))
            return calls[-1]

    monkeypatch_module.setattr(coco_eval, "PTBTokenizer", RecordingTokenizer)

    def run(refs, cands):
        calls.clear()
        evaluator = coco_eval.COCOEvalCap(_Captions(refs), _Captions({k: [c] for k, c in cands.items()}))
        evaluator.evaluate()
        evaluator.tokens = tuple(calls)  # (gts, res) as its scorers saw them
        return evaluator

    yield run
    meteor.__del__()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def scorer():
    scorer = CaptionScorer(workers=1)
    yield scorer
    scorer.close()


NAMES = {
    "Bleu_1": "bleu1",
    "Bleu_2": "bleu2",
    "Bleu_3": "bleu3",
    "Bleu_4": "bleu4",
    "METEOR": "meteor",
    "ROUGE_L": "rouge_l",
    "CIDEr": "cider",
}


def test_the_emoticon_at_the_end_of_a_call_is_what_differs():
    """The premise: the same caption tokenizes differently as the last line of a call, so calls must not merge."""
    tokens = PTBTokenizer().tokenize({"a": [{"caption": "too dark :)"}], "b": [{"caption": "too dark :)"}]})
    assert tokens == {"a": ["too dark :-rrb-"], "b": ["too dark -rrb-"]}


@pytest.mark.parametrize("seed", SEEDS)
def test_seven_metrics_and_bootstrap_equal_cocoevalcap(seed, cocoevalcap, scorer):
    refs, cands = caption_set(seed)
    theirs = cocoevalcap(refs, cands)
    ours = scorer.score(refs, cands)
    assert scorer.tokenize(refs, cands) == theirs.tokens
    for their_name, name in NAMES.items():
        assert ours["metrics"][name] == float(theirs.eval[their_name]), (seed, name)
        expected = [float(theirs.imgToEval[k][their_name]) for k in refs]
        assert ours["per_item"][name] == expected, (seed, name)
    if seed < 6:
        check_bootstrap(seed, refs, theirs, ours, scorer)


def test_a_joint_tokenizer_call_would_differ(scorer):
    """The control: tokenizing references and candidates in one call (the old pipeline) gives other tokens on
    these sets (the last reference's emoticon is no longer at the end of its call), so the test above can fail."""
    for seed in SEEDS[:4]:
        refs, cands = caption_set(seed)
        joint = ptb_tokenize_calls(
            [{**{("r", k): v for k, v in refs.items()}, **{("c", k): [c] for k, c in cands.items()}}]
        )[0]
        gts, res = scorer.tokenize(refs, cands)
        last = list(refs)[-1]
        assert joint[("r", last)][-1] != gts[last][-1] and joint[("c", last)] == res[last], seed


def check_bootstrap(seed, refs, theirs, ours, scorer):
    """Each resample's BLEU is BleuScorer's on the resampled items, ROUGE-L and CIDEr-D the mean of
    COCOEvalCap's per-item scores over them (their definition, the document frequencies of the full set held
    fixed), METEOR the EVAL of the resampled items' SCORE statistics from pycocoevalcap's own tokens."""
    ids = list(refs)
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(4, len(ids)))
    samples = scorer.bootstrap_samples(ours, draws)
    gts, res = theirs.tokens
    meteor = coco_eval.Meteor()  # the shared real JVM
    for row, idx in enumerate(draws):
        bleu = BleuScorer(n=4)
        for i in idx:
            bleu += (res[ids[i]][0], gts[ids[i]])
        expected_bleu, _ = bleu.compute_score(option="closest", verbose=0)
        for k in range(4):
            assert samples[f"bleu{k + 1}"][row] == expected_bleu[k], (seed, row, k)
        for their_name, name in (("ROUGE_L", "rouge_l"), ("CIDEr", "cider")):
            per_item = np.array([theirs.imgToEval[ids[i]][their_name] for i in idx], dtype=np.float64)
            assert samples[name][row] == float(per_item.mean()), (seed, row, name)
        stats = [meteor._stat(res[ids[i]][0], gts[ids[i]]) for i in idx]  # its SCORE lines, then its EVAL line
        meteor.meteor_p.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        meteor.meteor_p.stdin.flush()
        for _ in idx:
            meteor.meteor_p.stdout.readline()
        assert samples["meteor"][row] == float(meteor.meteor_p.stdout.readline().strip()), (seed, row)
