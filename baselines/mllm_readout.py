"""Level readout for any local Hugging Face vision-language checkpoint (Q-Align's method and kin).

An MLLM scores an image not by writing a number but by how likely it finds each of a few answer
words right after a fixed answer prefix. One forward pass per batch:

    text   = the checkpoint's chat template with the image, the prompt and the answer prefix as the
             start of the assistant's reply (continue_final_message); without a chat template a
             plain layout (option `template`): mllm-readout LLaVA-1.5's "USER: <image>\\n{prompt} ASSISTANT:
             {answer_prefix}", qalign Q-Align scorer.py's "USER: {prompt}\\n<image>\\nASSISTANT: {answer_prefix}",
             artquant-readout ArtQuant iqa_eval.py's "USER: {prompt}\\n<image> ASSISTANT: {answer_prefix}"
    l_i    = logit of level word i's token at the last position (the next token)
    p      = softmax(l_1..l_n)                          softmax="levels" (Q-Align, ArtQuant, ArtiMuse)
           = softmax over the whole vocabulary, at the level words, NOT renormalised
                                                        softmax="vocab"
    E      = Σ p_i · w_i                                (w = level_weights)
    score  = lo + (E − min w) / (max w − min w) · (hi − lo)       onto request.score_range = (lo, hi)

"vocab" is not renormalised because renormalising the full softmax over a subset gives exactly the
"levels" softmax; unrenormalised, the probability left on other tokens counts as weight 0, which is
what readouts that take the full softmax do, and one reason published numbers disagree. With it a
score can fall below lo when min w > 0.

Token ids: `aesbench.models.readout.readout_plan` (BOS never taken, "▁good", "Ġgood" and "good"
conventions alike). When every level word is one distinct token there, the readout is the one above.
When a tokenizer writes a word as several tokens ("10" as "Ġ", "1", "0" in byte-level BPE), l_i is
replaced by the log-likelihood of the word's whole answer (summed token log-probs after the prefix;
scored with a closing "." when one word's tokens begin another's, and tokens all the words share
left out, as readout.py explains). Those words need one extra forward pass per image, one row per
word: the image's context repeated, each row continued by its word's tokens, right-padded.

Batches are padded on the LEFT with their attention mask, and the logits come from `generate` with
one new token, so each model's own generation path builds position ids from the mask; the score
is then the same at any batch size. Comments and suggestions are generated greedily from the
task's prompt.

Options (constructor keywords, or --model-arg key=value). The readout settings from prompt to resize
default to None, which takes the registered model's preset (mllm-readout's: Q-Align's words,
weights and prompt, no padding, no resize):
    path               checkpoint folder that AutoProcessor and AutoModelForImageTextToText load (required)
    prompt             the scoring question
    answer_prefix      the text the reply starts with ("" for none)
    level_words        answer words; level_weights: one number per word
    softmax            "levels" or "vocab" (above)
    pad_square         pad to square first, as expand2square: the fixed colour tuple(int(x*255) for x in
                       image_processor.image_mean), RGB (122, 116, 104) for CLIP's mean (qalign, artquant-readout)
    template           plain layout without a chat template: llava, qalign (scorer.py), qalign-iaa
                       (iaa_eval.py: "USER: <image>{prompt} ASSISTANT:"), artquant
    resize             then a plain square bicubic resize to this side (0: none)
    dtype              float32 (default), bfloat16 or float16: the model's weights and activations
    precision          float32 (default: softmax and expectation in float32, from the exact logits) or
                       original: the original code's dtype for the model and for the softmax and expectation
                       (qalign float16/float16 as scorer.py; artquant-readout float16 then float64 as
                       iqa_eval.py + eval.py; artimuse-readout bfloat16/bfloat16, so its scores come in
                       bfloat16 steps and tie as the original's do). Recorded in describe().
    device             cpu (default), cuda, cuda:1, ...
    trust_remote_code  run modelling code shipped in the folder (default False: refused in one line)
    online             allow the Hugging Face hub (default False: local_files_only)
    max_new_tokens     comment/suggest length (default 128); num_beams: 1 (greedy, default) or beam
                       search; never sampling, so text is reproducible

Only checkpoints in transformers' own image-text-to-text layout load: llava-hf conversions, Qwen2-VL,
InternVL "-hf" and the like. The original Q-Align (mPLUG-Owl2) and ArtiMuse (InternVLChatModel)
releases are custom-code models outside these Auto classes and do not load here as released.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from PIL import Image

from aesbench.adapter import Model, Request, register
from aesbench.errors import AesbenchError
from aesbench.options import parse_bool
from aesbench.models.readout import LEVEL_WORDS, readout_plan, word_probs
from aesbench.weights import local_only, optional_import, pad_to_square, require_files, weight_hashes

QALIGN_PROMPT = "How would you rate the aesthetics of this image?"
QALIGN_PREFIX = "The aesthetics of the image is"
# Text layouts for checkpoints without a chat template; the answer prefix follows after one space.
PLAIN_TEMPLATES = {
    "llava": "USER: {image}\n{prompt} ASSISTANT:",  # LLaVA-1.5's conversation
    "qalign": "USER: {prompt}\n{image}\nASSISTANT:",  # Q-Align q_align/evaluate/scorer.py
    "qalign-iaa": "USER: {image}{prompt} ASSISTANT:",  # Q-Align iaa_eval.py (conv mplug_owl2, TWO_NO_SYS)
    "artquant": "USER: {prompt}\n{image} ASSISTANT:",  # ArtQuant src/evaluate/iqa_eval.py (same conv)
}
PLAIN_TEMPLATE = PLAIN_TEMPLATES["llava"]
SOFTMAX_MODES = ("levels", "vocab")
DTYPES = ("float32", "bfloat16", "float16")
PRECISIONS = ("float32", "original")  # the readout's softmax and expectation: in float32, or as the original code
CHECKPOINT = "a Hugging Face vision-language checkpoint folder (config.json, *.safetensors or *.bin, tokenizer and processor files)"


def _size(value):
    """An image processor's size setting (a dict or transformers' SizeDict) as plain JSON, unset keys left out."""
    if value is None:
        return None
    items = value.items() if hasattr(value, "items") else vars(value).items()
    return {k: v for k, v in items if v is not None}


@register("mllm-readout")
class MllmReadout(Model):
    """Level-word score readout and generated text from any local Hugging Face VLM checkpoint folder."""

    capabilities = frozenset({"score", "comment", "suggest"})
    # Settings a subclass fixes differently; an option left as None takes the preset's value.
    preset = dict(
        prompt=QALIGN_PROMPT,
        answer_prefix=QALIGN_PREFIX,
        level_words=LEVEL_WORDS,
        level_weights=(1.0, 0.75, 0.5, 0.25, 0.0),
        softmax="levels",
        pad_square=False,
        resize=0,
        template="llava",
    )
    # precision=original: the model's dtype and the dtype of the softmax and expectation in the original code
    original: ClassVar[dict | None] = None

    def __init__(
        self,
        path: str,
        prompt: str | None = None,
        answer_prefix: str | None = None,
        level_words: list[str] | None = None,
        level_weights: list[float] | None = None,
        softmax: str | None = None,
        pad_square: bool | None = None,
        resize: int | None = None,
        template: str | None = None,
        dtype: str | None = None,
        precision: str = "float32",
        device: str = "cpu",
        trust_remote_code: bool = False,
        online: bool = False,
        max_new_tokens: int = 128,
        num_beams: int = 1,
    ):
        given = dict(
            prompt=prompt,
            answer_prefix=answer_prefix,
            level_words=level_words,
            level_weights=level_weights,
            softmax=softmax,
            pad_square=pad_square,
            resize=resize,
            template=template,
        )
        settings = {k: self.preset[k] if v is None else v for k, v in given.items()}
        if precision not in PRECISIONS:
            raise AesbenchError(
                f"model {self.name!r}: precision must be one of {', '.join(PRECISIONS)} (got {precision!r})"
            )
        if precision == "original":
            if self.original is None:
                raise AesbenchError(f"model {self.name!r} has no original code to take a precision from; use dtype=...")
            if dtype is not None and dtype != self.original["dtype"]:
                raise AesbenchError(
                    f"model {self.name!r}: precision=original runs {self.original['dtype']}, not dtype={dtype}"
                )
            dtype = self.original["dtype"]
        dtype = dtype or "float32"
        self._check_settings(settings, dtype)
        self.precision = precision
        self.readout_dtype = self.original["readout"] if precision == "original" else "float32"
        self.template = settings["template"]
        self.path = str(path)
        self.prompt, self.answer_prefix = str(settings["prompt"]), str(settings["answer_prefix"])
        self.level_words = [str(w) for w in settings["level_words"]]
        self.level_weights = [float(w) for w in settings["level_weights"]]
        self.softmax, self.resize = settings["softmax"], int(settings["resize"])
        self.pad_square = parse_bool(settings["pad_square"], "pad_square")
        self.dtype, self.device = dtype, device
        self.trust_remote_code = parse_bool(trust_remote_code, "trust_remote_code")
        self.online = parse_bool(online, "online")
        self.max_new_tokens, self.num_beams = int(max_new_tokens), int(num_beams)
        self._hashes = None
        self._load()
        self.score_text = self.render(self.prompt, self.answer_prefix)
        self.plan = readout_plan(self.processor.tokenizer, self.score_text, self.level_words)
        self.level_ids = self.plan.ids  # None when a word takes several tokens

    def _check_settings(self, settings: dict, dtype: str) -> None:
        words, weights = settings["level_words"], settings["level_weights"]
        if (
            not isinstance(words, (list, tuple))
            or not isinstance(weights, (list, tuple))
            or not all(isinstance(w, (int, float)) for w in weights)
        ):
            raise AesbenchError(
                f"model {self.name!r}: level_words and level_weights must be lists, e.g. level_words=[excellent,good,fair,poor,bad] level_weights=[1,0.75,0.5,0.25,0]"
            )
        if len(words) < 2 or len(words) != len(weights):
            raise AesbenchError(
                f"model {self.name!r}: level_words and level_weights must be two or more of each, one weight per word (got {len(words)} and {len(weights)})"
            )
        if max(weights) == min(weights):
            raise AesbenchError(
                f"model {self.name!r}: level_weights are all equal, so every image would get the same score"
            )
        if settings["softmax"] not in SOFTMAX_MODES:
            raise AesbenchError(
                f"model {self.name!r}: softmax must be one of {', '.join(SOFTMAX_MODES)} (got {settings['softmax']!r})"
            )
        if dtype not in DTYPES:
            raise AesbenchError(f"model {self.name!r}: dtype must be one of {', '.join(DTYPES)} (got {dtype!r})")
        if settings["template"] not in PLAIN_TEMPLATES:
            raise AesbenchError(
                f"model {self.name!r}: template must be one of {', '.join(PLAIN_TEMPLATES)} (got {settings['template']!r})"
            )
        if not isinstance(settings["resize"], int) or settings["resize"] < 0:
            raise AesbenchError(
                f"model {self.name!r}: resize must be a side in pixels, or 0 for none (got {settings['resize']!r})"
            )

    def _load(self) -> None:
        """Processor and model from the local folder; a failure is one line naming the folder."""
        torch = optional_import("torch", "vlm", self.name)
        transformers = optional_import("transformers", "vlm", self.name)
        folder = require_files(self.path, ["config.json"], self.name, CHECKPOINT)
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
            raise AesbenchError(
                f"model {self.name!r}: {folder} has no weight files (*.safetensors or *.bin); it should be {CHECKPOINT}"
            )
        try:
            config = json.loads((folder / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AesbenchError(f"model {self.name!r}: {folder / 'config.json'} is not valid JSON ({e})") from None
        known = transformers.models.auto.configuration_auto.CONFIG_MAPPING
        if "auto_map" in config and config.get("model_type") not in known and not self.trust_remote_code:
            raise AesbenchError(
                f"model {self.name!r}: {folder} ships its own modelling code (auto_map, model_type {config.get('model_type')!r} unknown to transformers {transformers.__version__}); pass trust_remote_code=true only if you trust that code"
            )
        self.torch, self.transformers = torch, transformers
        options = dict(local_files_only=local_only(self.online), trust_remote_code=self.trust_remote_code)
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(folder, **options)
            self.model = transformers.AutoModelForImageTextToText.from_pretrained(
                folder, dtype=getattr(torch, self.dtype), **options
            )
        except (OSError, ImportError, ValueError, KeyError, TypeError, RuntimeError) as e:
            reason = " ".join(str(e).split())[:300]
            raise AesbenchError(
                f"model {self.name!r}: transformers could not load {folder} as {CHECKPOINT} ({type(e).__name__}: {reason})"
            ) from None
        if not hasattr(self.processor, "tokenizer") or not hasattr(self.processor, "image_processor"):
            raise AesbenchError(
                f"model {self.name!r}: {folder} holds no image-and-text processor (AutoProcessor gave {type(self.processor).__name__})"
            )
        self.model.to(self.device).eval()
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # the next token of every row sits at the last position
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.chat = bool(getattr(self.processor, "chat_template", None))
        # expand2square's fill in the original code: tuple(int(x*255) for x in image_processor.image_mean)
        mean = getattr(self.processor.image_processor, "image_mean", None) or (0.0, 0.0, 0.0)
        self.pad_colour = tuple(int(x * 255) for x in mean)
        # Our own generation settings, not the checkpoint's generation_config (which may ask for sampling).
        self.generation = dict(
            do_sample=False,
            num_beams=self.num_beams,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.model.generation_config.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )

    def config(self) -> dict:
        return {
            "path": self.path,
            "prompt": self.prompt,
            "answer_prefix": self.answer_prefix,
            "level_words": self.level_words,
            "level_weights": self.level_weights,
            "softmax": self.softmax,
            "pad_square": self.pad_square,
            "resize": self.resize,
            "template": self.template,
            "dtype": self.dtype,
            "precision": self.precision,
            "readout_dtype": self.readout_dtype,
            "device": self.device,
            "trust_remote_code": self.trust_remote_code,
            "online": self.online,
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
        }

    def render(self, prompt: str, answer_prefix: str = "") -> str:
        """The model's input text for one image: chat template when the checkpoint has one, else plain."""
        if self.chat:
            user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
            if not answer_prefix:
                return self.processor.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
            reply = {"role": "assistant", "content": [{"type": "text", "text": answer_prefix}]}
            return self.processor.apply_chat_template([user, reply], continue_final_message=True, tokenize=False)
        text = PLAIN_TEMPLATES[self.template].format(
            image=getattr(self.processor, "image_token", "<image>"), prompt=prompt
        )
        return f"{text} {answer_prefix}" if answer_prefix else text

    def prepare(self, img: Image.Image) -> Image.Image:
        """Pad to square with the processor's mean colour (Q-Align's and ArtQuant's expand2square), then a plain
        square bicubic resize (ArtiMuse)."""
        img = img.convert("RGB")
        if self.pad_square:
            img = pad_to_square(img, self.pad_colour)
        if self.resize:
            img = img.resize((self.resize, self.resize), Image.BICUBIC)
        return img

    def generate(self, images: list[Image.Image], texts: list[str], **settings):
        """One left-padded batch through the model's `generate`; returns its output and the prompt length."""
        inputs = self.processor(
            images=[self.prepare(img) for img in images],
            text=texts,
            padding=True,
            return_tensors="pt",
            add_special_tokens=self._add_special_tokens(texts[0]),
        )
        inputs = inputs.to(self.device, dtype=self.model.dtype)
        with self.torch.inference_mode():
            config = self.transformers.GenerationConfig(**{**self.generation, **settings}, return_dict_in_generate=True)
            out = self.model.generate(**inputs, generation_config=config)
        return out, inputs["input_ids"].shape[1]

    def _add_special_tokens(self, text: str) -> bool:
        """The tokenizer adds BOS unless the template already wrote it (transformers' own rule)."""
        bos = self.processor.tokenizer.bos_token
        return not (bos and text.startswith(bos))

    def continuation_logits(self, images: list[Image.Image], suffixes: list[list[int]]):
        """Logits after the score text + each suffix, for readout.word_probs: [images, suffixes, 1 + width, vocab].

        No suffix to add: the next-token logits of one left-padded batch through `generate`. Else one
        image at a time, its context repeated once per suffix (identical rows: no left padding) and
        the suffixes appended right-padded, so every real token keeps its unpadded position."""
        torch = self.torch
        if suffixes == [[]]:
            out, _ = self.generate(
                images, [self.score_text] * len(images), max_new_tokens=1, num_beams=1, output_logits=True
            )
            return out.logits[0].float()  # raw logits of the token after the answer prefix (exact in float32)
        width, n = max(len(s) for s in suffixes), len(suffixes)
        tail = torch.full((n, width), self.processor.tokenizer.pad_token_id, dtype=torch.long)
        tail_mask = torch.zeros((n, width), dtype=torch.long)
        for i, s in enumerate(suffixes):
            tail[i, : len(s)], tail_mask[i, : len(s)] = torch.tensor(s, dtype=torch.long), 1
        rows = []
        for img in images:
            inputs = self.processor(
                images=[self.prepare(img)] * n,
                text=[self.score_text] * n,
                padding=True,
                return_tensors="pt",
                add_special_tokens=self._add_special_tokens(self.score_text),
            )
            inputs = inputs.to(self.device, dtype=self.model.dtype)
            ids = inputs["input_ids"]
            for key, value in list(inputs.items()):  # token-aligned extras (token_type_ids, ...) grow with zeros
                if key != "input_ids" and torch.is_tensor(value) and value.shape == ids.shape:
                    inputs[key] = torch.cat(
                        [value, tail_mask.to(value) if key == "attention_mask" else torch.zeros_like(tail).to(value)], 1
                    )
            inputs["input_ids"] = torch.cat([ids, tail.to(ids.device)], 1)
            with torch.inference_mode():
                logits = self.model(**inputs, logits_to_keep=1 + width).logits
            rows.append(logits.float())
        return torch.stack(rows)

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        dtype = getattr(self.torch, self.readout_dtype)
        probs = word_probs(
            self.plan,
            lambda suffixes: self.continuation_logits(images, suffixes),
            normalise=self.softmax == "levels",
            dtype=dtype,
        )
        weights = self.torch.tensor(self.level_weights, dtype=probs.dtype, device=probs.device)
        expectation = (probs @ weights).double()  # in readout_dtype, as the original when precision=original
        lo, hi = request.score_range
        w_lo, w_hi = min(self.level_weights), max(self.level_weights)
        scores = lo + (expectation - w_lo) / (w_hi - w_lo) * (hi - lo)
        return [{"score": float(s)} for s in scores]

    def _text(self, images: list[Image.Image], request: Request) -> list[str]:
        if not request.prompt:
            raise AesbenchError(f"model {self.name!r} writes text only when the task gives a prompt")
        out, length = self.generate(images, [self.render(request.prompt)] * len(images))
        texts = self.processor.tokenizer.batch_decode(out.sequences[:, length:], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def comment(self, images: list[Image.Image], request: Request) -> list[str]:
        return self._text(images, request)

    def suggest(self, images: list[Image.Image], request: Request) -> list[str]:
        return self._text(images, request)

    def describe(self) -> dict:
        if self._hashes is None:  # hashing a 7B checkpoint takes a while: once per model
            self._hashes = weight_hashes(self.path)
        image_processor = self.processor.image_processor
        tokenizer = self.processor.tokenizer
        return {
            "name": self.name,
            "config": self.config(),
            "checkpoint": str(Path(self.path).resolve()),
            "weights_sha256": self._hashes,
            "architecture": type(self.model).__name__,
            "processor": type(self.processor).__name__,
            "dtype": self.dtype,
            "device": self.device,
            "preprocessing": {
                "pad_square": f"expand2square, fill RGB {self.pad_colour} (the processor's image_mean)"
                if self.pad_square
                else False,
                "resize": f"{self.resize}x{self.resize} bicubic" if self.resize else False,
                "image_processor": type(image_processor).__name__,
                "size": _size(getattr(image_processor, "size", None)),
                "crop_size": _size(getattr(image_processor, "crop_size", None)),
            },
            "template": "chat template of the checkpoint"
            if self.chat
            else f"plain {self.template}: {PLAIN_TEMPLATES[self.template]} {{answer_prefix}}",
            "special_tokens_added": self._add_special_tokens(self.score_text),
            "score_text": self.score_text,
            "answer_prefix": self.answer_prefix,
            "level_words": self.level_words,
            "level_token_ids": self.level_ids,
            "level_tokens": (
                tokenizer.convert_ids_to_tokens(self.level_ids)
                if self.plan.single_token
                else [tokenizer.convert_ids_to_tokens(list(c)) for c in self.plan.continuations]
            ),
            "level_shared_tokens": tokenizer.convert_ids_to_tokens(list(self.plan.shared)),
            "level_readout": (
                "next-token logits of the level tokens"
                if self.plan.single_token
                else "summed log-probs of each word's tokens"
                + (f" with {self.plan.end!r} after each" if self.plan.end else "")
            ),
            "level_weights": self.level_weights,
            "softmax": f"{self.softmax} ({self.readout_dtype}, precision {self.precision})",
            "score_mapping": "lo + (sum p_i w_i - min w) / (max w - min w) * (hi - lo)",
            "padding_side": tokenizer.padding_side,
            "generation": {
                "do_sample": False,
                "num_beams": self.num_beams,
                "max_new_tokens": self.max_new_tokens,
                "prompt": "the task's prompt, through the same template",
            },
        }


@register("qalign")
class QAlign(MllmReadout):
    """Q-Align's aesthetics readout: excellent..bad after "The aesthetics of the image is", padded square."""

    preset = dict(MllmReadout.preset, pad_square=True, template="qalign")
    original: ClassVar[dict] = {
        "dtype": "float16",
        "readout": "float16",
    }  # scorer.py: .half() model, softmax @ half weights


@register("artquant-readout")
class ArtQuantReadout(MllmReadout):
    """ArtQuant's painting readout: level words weighted 10, 7.5, 5, 3.5, 1 (a 1..10 score)."""

    # The weights span 1..10, so on a 1..10 task the mapped score is ArtQuant's own; on another
    # range it is the same score moved linearly. Its code base (Q-Align's) pads images square.
    preset = dict(
        MllmReadout.preset,
        prompt="How would you rate the quality of this painting?",
        answer_prefix="The quality of the painting is",
        level_weights=(10.0, 7.5, 5.0, 3.5, 1.0),
        pad_square=True,
        template="artquant",
    )
    original: ClassVar[dict] = {
        "dtype": "float16",
        "readout": "float64",
    }  # iqa_eval.py: fp16 logits; eval.py: numpy softmax
