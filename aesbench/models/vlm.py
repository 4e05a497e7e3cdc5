"""A vision-language network built from parts: a frozen vision encoder tapped at chosen layers, an
aligner that turns those layers into tokens, and a causal LM; shared by CALM and ArtQuant.

    image ──encoder (frozen)──┬─ layer L_thematic ── FC ─────────── thematic tokens
                              ├─ layer l_1 ── Q-Former (n queries) ─ tokens
                              └─ ...        ── Q-Former ──────────── tokens
    chat: system, user: [image tokens] {prompt}, assistant: {answer} ── LLM (SmolLM2-135M-Instruct by default)

The aligner is CALM's Multi-scale Feature Alignment Module (an FC on the last layer, one Q-Former
per tapped level); with a single Q-Former on the last layer and no FC it is a visual abstractor of
the mPLUG-Owl2 kind that ArtQuant uses. Its tokens start at the scale of the LLM's word embeddings.
Reads top to bottom: the config, the Q-Former, the aligner, the samples and their chat format, the
network (how images and text become one sequence of embeddings, the losses, the readout and
generation), building/saving/loading, and the adapter `aesbench eval` talks to.

Every sample is a conversation rendered with the LLM tokenizer's own chat template (the plain
"USER: ... ASSISTANT:" form for a tokenizer without one, as the from-scratch `llm: small` has).
Scoring is the field's readout (aesbench/models/readout.py): after a fixed answer prefix the logits
of the level words are softmaxed over those words and weighted. The 10-bin distribution, when asked
for, is the same readout over ten bin words after its own prompt. Sequences are right-padded and
the readout is taken at each sequence's last real token (or a marked position), so a score does not
depend on the batch it was computed in. Text is generated greedily. Learned text carries a loss
group ("lm", or e.g. ArtQuant's "score_lm"); the network returns the mean token loss per group and
the readout KL, and each recipe weights them.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..adapter import Model, Request
from ..errors import AesbenchError, first_line
from ..options import parse_bool
from ..features import FeatureCache, image_key, module_cache
from ..weights import local_only, optional_import, require_files, weight_hashes
from .packaged_llm import PACKAGED, SMOLLM2, packaged_llm_folder, packaged_source
from .readout import LEVEL_WORDS, QALIGN_WEIGHTS, LevelReadout, first_token_ids, full_vocab_kl
from .text import small_decoder
from .vision import EFFICIENTNET, make_encoder

torch = optional_import("torch", "train", "aesbench.models")
nn = torch.nn

SCORE_PROMPT = "How would you rate the aesthetics of this image?"
SCORE_PREFIX = "The aesthetics of the image is"
BINS_PROMPT = "Rate the aesthetics of this image from 1 to 10."
BINS_PREFIX = "The rating is"
BIN_WORDS = (
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)  # one token each in common vocabularies
COMMENT_PROMPT = "Write a short critique of this photograph's aesthetics."
SUGGEST_PROMPT = "How could this photograph be improved?"
SYSTEM_PROMPT = "You are an expert in image aesthetics."  # short: SmolLM2's default costs 20 tokens a sequence
ALIGNER_FILE, CONFIG_FILE, LLM_DIR, VISION_DIR = "aligner.safetensors", "config.json", "llm", "vision"
PERSONALIZE_MODES = ("finetune", "in_context")
LLM_TUNING = ("lora", "full", "frozen")
PERSONALIZE_BATCH = 16
TAPS_CACHE_SIZE = 1024  # images whose encoder output is kept in memory (about 0.5 MB each in the small config)


@dataclass
class VLMConfig:
    """Everything that defines a network; saved as the checkpoint's config.json. The defaults are CALM's small config."""

    model_type: str = "calm"  # the adapter that loads the checkpoint

    # vision encoder: "efficientnet-lite0", a local Hugging Face vision folder, or vision_config (random weights)
    vision: str = EFFICIENTNET
    vision_config: dict | None = None
    qformer_layers: list[int] = field(default_factory=lambda: [5, 11, 17])  # one Q-Former per tapped layer
    thematic_layer: int | None = 17  # the FC's layer; None: no thematic tokens
    thematic_grid: int | None = 3  # pool a convolutional map to grid x grid tokens; None keeps every token
    queries: int = 8
    qformer_depth: int = 2
    qformer_dim: int = 128
    qformer_heads: int = 4
    # LLM: a packaged pretrained LLM (packaged_llm.py: "smollm2-135m-instruct"), a local Hugging Face
    # causal LM folder, "small" (a decoder from scratch built from the fields below with a word-level
    # tokenizer trained on the texts), or llm_config (random weights)
    llm: str = SMOLLM2
    llm_config: dict | None = None
    llm_tokenizer: str | None = None  # a local tokenizer folder for llm_config; else one is trained on the texts
    llm_hidden: int = 192
    llm_layers: int = 4
    llm_heads: int = 4
    max_positions: int = 1024
    # what instruct tuning trains in the LLM: "lora" (adapters of rank lora_rank on lora_targets, merged
    # when saved), "full" (every weight) or "frozen" (the aligner alone carries the image)
    llm_tuning: str = "lora"
    lora_rank: int = 8
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    system_prompt: str | None = SYSTEM_PROMPT  # the chat's system message; None: the chat template's own default
    # readout and prompts
    score_prompt: str = SCORE_PROMPT
    answer_prefix: str = SCORE_PREFIX
    level_words: list[str] = field(default_factory=lambda: list(LEVEL_WORDS))
    level_weights: list[float] = field(default_factory=lambda: list(QALIGN_WEIGHTS))
    label_sigma: float = 0.1  # soft level labels' width, fraction of the weights' span
    # the readout's training KL: against the softmax over the readout's words ("words") or over the
    # whole vocabulary with zero target elsewhere ("vocab", ArtQuant's softkl_loss)
    readout_kl: str = "words"
    bins_prompt: str = BINS_PROMPT
    bins_prefix: str = BINS_PREFIX
    bin_words: list[str] = field(default_factory=lambda: list(BIN_WORDS))
    comment_prompt: str = COMMENT_PROMPT
    suggest_prompt: str = SUGGEST_PROMPT
    max_new_tokens: int = 48
    # personalization: "finetune" (CALM: the aligner tuned on the support set) or "in_context" (CALM-In)
    personalize: str = "finetune"
    personalize_steps: int = 15
    personalize_lr: float = 1e-3
    in_context_examples: int = 5
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, data: dict) -> "VLMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AesbenchError(f"model config: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        config = cls(**data)
        config.check()
        return config

    def check(self) -> None:
        layers = list(self.qformer_layers) + ([self.thematic_layer] if self.thematic_layer is not None else [])
        if not layers:
            raise AesbenchError("model config: give at least one of qformer_layers and thematic_layer")
        if self.llm_tuning not in LLM_TUNING:
            raise AesbenchError(
                f"model config: llm_tuning must be one of {', '.join(LLM_TUNING)}, not {self.llm_tuning!r}"
            )
        if self.llm_tuning == "lora" and self.lora_rank < 1:
            raise AesbenchError("model config: llm_tuning lora needs lora_rank >= 1")
        if self.readout_kl not in ("words", "vocab"):
            raise AesbenchError(f"model config: readout_kl must be words or vocab, not {self.readout_kl!r}")
        if len(self.bin_words) != 10:
            raise AesbenchError("model config: bin_words must be ten words (the 10-bin distribution)")
        if self.personalize not in PERSONALIZE_MODES:
            raise AesbenchError(
                f"model config: personalize must be one of {', '.join(PERSONALIZE_MODES)}, not {self.personalize!r}"
            )
        if self.queries < 1 or self.qformer_depth < 1 or self.qformer_dim % self.qformer_heads:
            raise AesbenchError(
                "model config: queries and qformer_depth must be >= 1 and qformer_dim divisible by qformer_heads"
            )

    @property
    def levels(self) -> LevelReadout:
        return LevelReadout(
            self.score_prompt, self.answer_prefix, tuple(self.level_words), tuple(self.level_weights), self.label_sigma
        )

    @property
    def bins(self) -> LevelReadout:
        return LevelReadout(
            self.bins_prompt,
            self.bins_prefix,
            tuple(self.bin_words),
            tuple(float(w) for w in range(1, 11)),
            self.label_sigma,
        )


# ---------------------------------------------------------------------------------------------
# The Multi-scale Feature Alignment Module


class QFormerLayer(nn.Module):
    """Queries attend to each other, then to the image tokens, then an MLP (pre-norm, residual)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, q, image):
        h = self.norm1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        q = q + self.cross_attn(self.norm2(q), image, image, need_weights=False)[0]
        return q + self.mlp(self.norm3(q))


class QFormer(nn.Module):
    """Learnable queries that read one layer of the encoder and come out in the LLM's width."""

    def __init__(self, in_dim: int, dim: int, out_dim: int, queries: int, depth: int, heads: int, out_std: float):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.image_proj = nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim))
        self.layers = nn.ModuleList(QFormerLayer(dim, heads) for _ in range(depth))
        self.out_proj = nn.Sequential(nn.LayerNorm(dim), token_projection(dim, out_dim, out_std))

    def forward(self, image_tokens):
        image = self.image_proj(image_tokens)
        q = self.queries.unsqueeze(0).expand(image.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, image)
        return self.out_proj(q)


def token_projection(in_dim: int, out_dim: int, out_std: float):
    """The last layer into the LLM's width, initialised so that tokens start at the scale of the LLM's
    own word embeddings (per-dimension std `out_std`) for unit-variance input: a default-initialised
    Linear writes tokens about four times larger than SmolLM2's embeddings, which the LLM then reads as
    noise it has never seen."""
    linear = nn.Linear(in_dim, out_dim)
    nn.init.normal_(linear.weight, std=out_std / in_dim**0.5)
    nn.init.zeros_(linear.bias)
    return linear


class Aligner(nn.Module):
    """The FC projection of the thematic layer (its input layer-normalised) and one Q-Former per tapped
    layer; tokens concatenated, at the scale of the LLM's word embeddings when they start."""

    def __init__(self, config: VLMConfig, layer_dims: list[int], llm_dim: int, embed_std: float):
        super().__init__()
        self.config = config
        if config.thematic_layer is not None:
            in_dim = layer_dims[config.thematic_layer]
            self.fc = nn.Sequential(nn.LayerNorm(in_dim), token_projection(in_dim, llm_dim, embed_std))
        self.qformers = nn.ModuleList(
            QFormer(
                layer_dims[layer],
                config.qformer_dim,
                llm_dim,
                config.queries,
                config.qformer_depth,
                config.qformer_heads,
                embed_std,
            )
            for layer in config.qformer_layers
        )

    def tokens_per_image(self, encoder, taps: list[int]) -> int:
        """How many tokens one image becomes (from a blank image, once)."""
        if not hasattr(self, "_tokens_per_image"):
            device = next(self.parameters()).device
            with torch.no_grad():
                features = encoder.tapped(encoder.prepare([Image.new("RGB", (32, 32))]).to(device), taps)
                self._tokens_per_image = int(self({layer: t.float() for layer, t in zip(taps, features)}).shape[1])
        return self._tokens_per_image

    def parts(self, taps: dict) -> list:
        """Each part's tokens (batch, tokens, llm width): the FC's, then each Q-Former's."""
        c, tokens = self.config, []
        if c.thematic_layer is not None:
            x = taps[c.thematic_layer]
            if c.thematic_grid and x.shape[1] > c.thematic_grid**2:  # a square convolutional map
                side = int(round(x.shape[1] ** 0.5))
                grid = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)
                x = nn.functional.adaptive_avg_pool2d(grid, c.thematic_grid).flatten(2).transpose(1, 2)
            tokens.append(self.fc(x))
        return tokens + [qf(taps[layer]) for qf, layer in zip(self.qformers, c.qformer_layers)]

    def forward(self, taps: dict):
        return torch.cat(self.parts(taps), dim=1)


# ---------------------------------------------------------------------------------------------
# The network: sequences of image and text parts


READOUT = "<readout>"  # a reply segment marking where a readout is taken: the position after the text before it
ALIGN = "align"  # a sample target naming the words its image's tokens are aligned to


@dataclass
class Sample:
    """One training or inference sequence: a conversation, rendered in the LLM's own chat format.

    turns: [(content, prompt, reply)]: content is a list of image indices (into `images`) and
    strings, shown before the prompt in the user's message; reply is the assistant's answer (context)
    or None for the last turn, which the network answers. reply: the last turn's answer as (text,
    group) segments: group None is context, a loss name such as "lm" is learned (the end-of-turn
    token is learned after a final learned segment), and (READOUT, None) marks the readout position.
    target: (readout name, level probabilities) trained with KL at the readout position (the end of
    the sequence unless marked), or (ALIGN, words) for the alignment objective (VLMNetwork.align_loss).
    """

    images: list
    turns: list
    reply: list = field(default_factory=list)
    target: tuple[str, np.ndarray] | None = None


class ChatFormat:
    """How a conversation becomes text for one tokenizer: its chat template when it has one (the
    format an instruction-tuned LLM knows), else the plain "USER: ... ASSISTANT:" form of the small
    config. The template is rendered once with placeholder messages and cut at them, so any chat
    template works; images sit in the user's message before the prompt."""

    def __init__(self, tokenizer, system_prompt: str | None = None):
        self.tokenizer, self.system_prompt = tokenizer, system_prompt
        self.chat = bool(getattr(tokenizer, "chat_template", None))

    def _render(self, n_turns: int) -> list[str]:
        messages = [] if self.system_prompt is None else [{"role": "system", "content": self.system_prompt}]
        for i in range(n_turns):
            messages.append({"role": "user", "content": f"\x01U{i}\x01"})
            if i < n_turns - 1:
                messages.append({"role": "assistant", "content": f"\x01A{i}\x01"})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        pieces = text.split("\x01")
        return pieces  # text, U0, text, A0, text, U1, ..., text (the assistant opener at the end)

    def parts(self, turns: list) -> list:
        """Context parts (ints: images, strings: text) up to where the last turn's reply starts."""
        out = []
        if self.chat:
            pieces = self._render(len(turns))
            for i, (content, prompt, reply) in enumerate(turns):
                out += [pieces[4 * i], *content, prompt]
                if i < len(turns) - 1:
                    out += [pieces[4 * i + 2], reply]
            out.append(pieces[-1])
        else:
            for i, (content, prompt, reply) in enumerate(turns):
                out += [*content, f"USER: {prompt} ASSISTANT:" + (f" {reply}\n" if i < len(turns) - 1 else "")]
        merged = []  # adjacent strings as one piece, so text is tokenized as the template writes it
        for part in out:
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] += part
            elif not (isinstance(part, str) and not part):
                merged.append(part)
        return merged

    @property
    def reply_sep(self) -> str:
        """Between the assistant opener and a reply: the chat template ends its opener with a newline."""
        return "" if self.chat else " "


def score_sample(readout: LevelReadout, image_index: int = 0) -> list:
    """The turns of a readout: the image and the readout's prompt (the reply is its answer prefix)."""
    return [([image_index], readout.prompt, None)]


def in_context_sample(readout: LevelReadout, support_words: list[str]) -> list:
    """CALM-In: each support image with its level word as an earlier turn of the chat, then the query (the last image)."""
    turns = [([i], readout.prompt, f"{readout.answer_prefix} {word}.") for i, word in enumerate(support_words)]
    return turns + score_sample(readout, len(support_words))


def readout_sample(images: list, readout: LevelReadout, turns: list | None = None, target=None) -> Sample:
    """A sample whose reply is the readout's answer prefix: the readout is the next token (default turns: one image)."""
    return Sample(images, turns or score_sample(readout), [(readout.answer_prefix, None)], target)


def text_sample(images: list, prompt: str, answer: str | None = None, group: str = "lm") -> Sample:
    """The images and a prompt in one user turn; the answer, if given, learned under `group`."""
    return Sample(images, [(list(range(len(images))), prompt, None)], [(answer, group)] if answer is not None else [])


class VLMNetwork(nn.Module):
    def __init__(self, config: VLMConfig, encoder, llm, tokenizer):
        super().__init__()
        self.config, self.encoder, self.tokenizer = config, encoder, tokenizer
        self.llm = llm
        embedding = llm.get_input_embeddings()
        weight = embedding.weight.detach()
        embed_std = float(weight.float().std()) if weight.device.type != "meta" else 0.02  # meta: sizes only
        self.aligner = Aligner(config, encoder.layer_dims, embedding.embedding_dim, embed_std)
        self.encoder_module = encoder.module  # registered so .to(device) moves it; frozen
        self.encoder_module.requires_grad_(False)
        self.taps = sorted(set(config.qformer_layers) | ({config.thematic_layer} - {None}))
        self.format = ChatFormat(tokenizer, config.system_prompt)
        self.readouts = {"levels": config.levels, "bins": config.bins}
        self.readout_ids = {
            name: first_token_ids(tokenizer, self.readout_text(r), r.words) for name, r in self.readouts.items()
        }
        self._taps_cache: dict[str, list] = {}
        self.feature_cache: FeatureCache | None = None  # on disk, under the memory cache: set by use_feature_cache
        self._tap_shapes: list[tuple] = []
        self.llm_source: dict | None = None  # a packaged LLM's source.json (its GGUF's sha256), for provenance

    def readout_text(self, readout: LevelReadout) -> str:
        """The text just before a readout's word: the end of the rendered prompt and the answer prefix."""
        last = self.format.parts(score_sample(readout))[-1]
        return last + self.format.reply_sep + readout.answer_prefix

    @property
    def device(self):
        return next(self.aligner.parameters()).device

    def use_feature_cache(self, root) -> FeatureCache:
        """Keep the tapped layers on disk too: every checkpoint on the same frozen encoder and taps
        (CALM's ablation variants, say) and every later run reads them instead of encoding again."""
        self._tap_shapes = [tuple(t.shape[1:]) for t in self._encode([Image.new("RGB", (32, 32))])]
        self.feature_cache = module_cache(
            root,
            self.encoder_module,
            {
                "backbone": self.encoder.name,
                "preprocessing": self.encoder.describe(),
                "layers": self.taps,
                "shapes": self._tap_shapes,
                "output": "each tapped layer's tokens, flattened and concatenated, float32",
            },
        )
        return self.feature_cache

    def _encode(self, images: list[Image.Image]) -> list:
        self.encoder_module.eval()
        with torch.no_grad():
            return self.encoder.tapped(self.encoder.prepare(images).to(self.device), self.taps)

    def _cached_encode(self, images: list[Image.Image]) -> list:
        """_encode through the disk cache: one flat float32 row per image, split back into the taps."""
        flat = self.feature_cache.get(
            images, lambda batch: torch.cat([t.float().flatten(1) for t in self._encode(batch)], 1).cpu().numpy()
        )
        flat = torch.from_numpy(flat).to(self.device)
        sizes = [int(np.prod(shape)) for shape in self._tap_shapes]
        return [part.view(len(images), *shape) for part, shape in zip(flat.split(sizes, dim=1), self._tap_shapes)]

    def encode(self, images: list[Image.Image], cache: bool = True) -> dict:
        """The frozen encoder's tapped layers for a batch of images, without gradients.

        The encoder never changes inside one network, so its output is cached in memory by image
        content (the PIAA protocol scores the same images for every support draw, and instruct
        tuning sees the same images every epoch), and on disk with use_feature_cache; augmented
        training images pass cache=False.
        """
        keys = [image_key(img) for img in images] if cache else [None] * len(images)
        todo = [i for i, k in enumerate(keys) if k is None or k not in self._taps_cache]
        fresh = {}
        if todo:
            todo_images = [images[i] for i in todo]
            taps = self._cached_encode(todo_images) if cache and self.feature_cache else self._encode(todo_images)
            for j, i in enumerate(todo):
                fresh[i] = [t[j].float() for t in taps]
                if keys[i] is not None:
                    self._taps_cache[keys[i]] = fresh[i]
            while len(self._taps_cache) > TAPS_CACHE_SIZE:
                self._taps_cache.pop(next(iter(self._taps_cache)))
        rows = [fresh[i] if i in fresh else self._taps_cache[k] for i, k in enumerate(keys)]
        return {layer: torch.stack([row[n] for row in rows]) for n, layer in enumerate(self.taps)}

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _pieces(self, sample: Sample) -> list:
        """The sample as (kind, value, group) pieces: ("text", ids, group), ("image", index, None), ("readout", None, None)."""
        pieces = []
        bos = self.tokenizer.bos_token_id
        if bos is not None and not self.format.chat:  # a chat template writes its own begin tokens
            pieces.append(("text", [bos], None))
        for part in self.format.parts(sample.turns):
            pieces.append(("image", part, None) if isinstance(part, int) else ("text", self._tokens(part), None))
        for n, (text, group) in enumerate(sample.reply):
            if text == READOUT:
                pieces.append(("readout", None, None))
                continue
            ids = self._tokens((self.format.reply_sep if n == 0 else "") + text)
            if group is not None and n == len(sample.reply) - 1:
                ids = ids + [self.tokenizer.eos_token_id]  # a learned reply ends with the end-of-turn token
            pieces.append(("text", ids, group))
        return pieces

    def embed(
        self, samples: list[Sample], aligner=None, cache: bool = True, left_pad: bool = False, after_images: int = 0
    ):
        """Embeddings, attention mask, LM labels (-100 where not learned), each label's loss group
        (an index into the returned names) and each row's readout position (its last token unless marked).
        after_images = n: each row starts at the sample's image number n (what follows a shared prefix)."""
        embedding = self.llm.get_input_embeddings()
        images = [img for s in samples for img in s.images[after_images:]]
        visual = (aligner or self.aligner)(self.encode(images, cache)) if images else None
        rows, labels, groups, names, readout_at, offset = [], [], [], [], [], -after_images
        for s in samples:
            row, row_labels, row_groups, at = [], [], [], None
            pieces = self._pieces(s)
            if after_images:
                pieces = pieces[_image_piece(pieces, after_images) :]
            for kind, value, group in pieces:
                if kind == "readout":
                    at = len(row_labels) - 1
                    continue
                if kind == "image":
                    tokens = visual[offset + value]
                    row.append(tokens)
                    row_labels += [-100] * tokens.shape[0]
                    row_groups += [-1] * tokens.shape[0]
                    continue
                row.append(embedding(torch.tensor(value, dtype=torch.long, device=self.device)))
                if group is not None and group not in names:
                    names.append(group)
                row_labels += value if group is not None else [-100] * len(value)
                row_groups += [names.index(group) if group is not None else -1] * len(value)
            offset += len(s.images) - after_images
            dtype = embedding.weight.dtype
            rows.append(torch.cat([r.to(dtype) for r in row]))
            labels.append(row_labels)
            groups.append(row_groups)
            readout_at.append(len(row_labels) - 1 if at is None else at)
        length = max(r.shape[0] for r in rows)
        x = rows[0].new_zeros(len(rows), length, rows[0].shape[1])
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        y = torch.full((len(rows), length), -100, dtype=torch.long, device=self.device)
        g = torch.full((len(rows), length), -1, dtype=torch.long, device=self.device)
        last = []
        for i, (r, lab, grp) in enumerate(zip(rows, labels, groups)):
            n = r.shape[0]
            where = slice(length - n, length) if left_pad else slice(0, n)
            x[i, where], mask[i, where] = r, 1
            y[i, where] = torch.tensor(lab, device=self.device)
            g[i, where] = torch.tensor(grp, device=self.device)
            last.append(readout_at[i] + (length - n if left_pad else 0))
        return x, mask, (y, g, names), torch.tensor(last, device=self.device)

    def _logits(self, x, positions, past=None):
        """Logits of right-padded rows at the given positions only (the same for every row), and a
        position -> column map: with a 49k vocabulary the LM head over every position costs a fifth of
        a small LLM's forward. No attention mask is passed: under causal attention a real token never
        sees the padding after it, and positions count from 0 either way, so every real position's
        output is the masked one's (tested: scores do not depend on the batch), and attention keeps its
        plain causal path."""
        keep = torch.tensor(sorted(set(positions)), dtype=torch.long, device=self.device)
        logits = self.llm(
            inputs_embeds=x, logits_to_keep=keep, **(self._cache_argument(past) if past is not None else {})
        ).logits.float()
        column = torch.full((x.shape[1],), -1, dtype=torch.long, device=self.device)
        column[keep] = torch.arange(len(keep), device=self.device)
        return logits, column

    def forward(self, samples: list[Sample], aligner=None, cache: bool = True, contrast: float = 0.0):
        """Training losses: the mean token loss of each text group, the mean KL of the readout targets
        ("kl"), the alignment loss of the samples whose target is ALIGN (align_loss: these take no
        LLM pass) and, with contrast > 0, the image-contrast loss ("contrast").

        The image contrast asks each one-image answer to be likelier with its own image than with
        another image of the batch (the next of its distinct one-image images, answers' and readouts'
        alike: batches of 4 seldom hold two answers to pair, but nearly always two images): contrast
        times the mean over those answers of softplus(own - other), their mean token losses. It is the
        grounding check's gap (diagnostics.grounding) made an objective: the LM loss alone is met as
        well by answering from the prompt's text prior, which a small LLM tuned on a few hundred
        captions falls back to.

        Samples run in chunks of similar length (a batch mixing one-image sequences with six-image
        PIAA episodes would otherwise pad most rows to five times their length); the means are
        combined over the chunks by their counts, so they are the whole batch's."""
        aligned = [s for s in samples if s.target is not None and s.target[0] == ALIGN]
        samples = [s for s in samples if s.target is None or s.target[0] != ALIGN]
        losses = {ALIGN: self.align_loss(aligned, aligner)} if aligned else {}
        sums: dict[str, object] = {}
        counts: dict[str, int] = {}
        images = [img for s in samples for img in s.images]
        if (
            cache and images
        ):  # encode the batch's images together, as one call would (float32 features depend on their batch)
            self.encode(images)
        answers = [i for i, s in enumerate(samples) if len(s.images) == 1 and s.target is None and s.reply]
        own = {}
        for chunk in self._length_chunks(samples):
            chunk_sums, per_sample = self._loss_sums(chunk, aligner, cache)
            own.update(per_sample)
            for name, (total, n) in chunk_sums.items():
                sums[name] = sums[name] + total if name in sums else total
                counts[name] = counts.get(name, 0) + n
        losses.update({name: sums[name] / counts[name] for name in sums})
        others = self._other_images(samples, answers) if contrast > 0 and answers else None
        if others:
            swapped = [Sample(o, samples[i].turns, samples[i].reply) for o, i in zip(others, answers)]
            other = {}
            for chunk in self._length_chunks(swapped):
                other.update(self._loss_sums(chunk, aligner, cache)[1])
            gaps = torch.stack([other[id(s)] - own[id(samples[i])] for s, i in zip(swapped, answers)])
            losses["contrast"] = contrast * nn.functional.softplus(-gaps).mean()
        return losses

    @staticmethod
    def _other_images(samples: list[Sample], answers: list[int]) -> list | None:
        """The image contrast's other image for each answer: the next of the batch's distinct one-image
        images (by content, in batch order, wrapping round); None where the batch has only one."""
        keys = {id(s): image_key(s.images[0]) for s in samples if len(s.images) == 1}
        pool = {}  # content key -> images, first occurrence in batch order
        for s in samples:
            if id(s) in keys:
                pool.setdefault(keys[id(s)], s.images)
        if len(pool) < 2:
            return None
        distinct = list(pool.values())
        position = {key: n for n, key in enumerate(pool)}
        return [distinct[(position[keys[id(samples[i])]] + 1) % len(distinct)] for i in answers]

    def align_loss(self, samples: list[Sample], aligner=None):
        """The alignment stage's objective, which needs no LLM pass: each aligner part's mean token over an
        image is pulled to the mean of the LLM's input embeddings of the words that describe the image
        (its target, e.g. "blurred and noisy"): 1 - cosine plus the mean squared error, averaged over
        the parts. So every part, the Q-Formers included, carries what was done to the image, in the
        embedding space (and at the scale) of the words the LLM already reads. Its images are augmented
        afresh, so they are never cached."""
        embedding = self.llm.get_input_embeddings()
        targets = []
        for s in samples:
            ids = torch.tensor(self._tokens(" " + s.target[1]), dtype=torch.long, device=self.device)
            targets.append(embedding(ids).detach().float().mean(0))
        target = torch.stack(targets)
        losses = []
        for part in (aligner or self.aligner).parts(self.encode([s.images[0] for s in samples], cache=False)):
            pooled = part.float().mean(1)
            losses.append(
                (1 - nn.functional.cosine_similarity(pooled, target, dim=-1)).mean() + (pooled - target).pow(2).mean()
            )
        return torch.stack(losses).mean()

    def _length_chunks(self, samples: list[Sample], slack: float = 1.25) -> list[list[Sample]]:
        """Samples sorted by length, cut where a sample is more than `slack` times the chunk's shortest."""
        per_image = self.aligner.tokens_per_image(self.encoder, self.taps)
        lengths = [
            sum(len(v) if kind == "text" else per_image for kind, v, _ in self._pieces(s) if kind != "readout")
            for s in samples
        ]
        chunks, start = [], None
        for i in sorted(range(len(samples)), key=lambda i: lengths[i]):
            if start is None or lengths[i] > slack * start:
                chunks.append([])
                start = lengths[i]
            chunks[-1].append(samples[i])
        return chunks

    def _loss_sums(self, samples: list[Sample], aligner, cache: bool) -> tuple[dict, dict]:
        """{name: (sum, count)}: token losses per group, and the readout KL per targeted sample; and
        {id(sample): its mean token loss} for the samples with learned tokens."""
        x, _, (labels, groups, names), last = self.embed(samples, aligner, cache)
        rows, cols = torch.nonzero(labels[:, 1:] != -100, as_tuple=True)  # position t predicts label t + 1
        targeted = [i for i, s in enumerate(samples) if s.target is not None and s.target[0] in self.readouts]
        logits, column = self._logits(x, cols.tolist() + [int(last[i]) for i in targeted])
        sums, per_sample = {}, {}
        if len(rows):
            token_loss = nn.functional.cross_entropy(
                logits[rows, column[cols]], labels[rows, cols + 1], reduction="none"
            )
            token_groups = groups[rows, cols + 1]
            for index, name in enumerate(names):
                chosen = token_loss[token_groups == index]
                sums[name] = (chosen.sum(), len(chosen))
            row_sums = token_loss.new_zeros(len(samples)).index_add(0, rows, token_loss)
            row_counts = torch.bincount(rows, minlength=len(samples)).tolist()  # one device read, not one per row
            per_sample = {id(s): row_sums[i] / row_counts[i] for i, s in enumerate(samples) if row_counts[i]}
        if targeted:
            kl = []
            for i in targeted:
                name, probs = samples[i].target
                row = logits[i, column[last[i]]]
                if self.config.readout_kl == "vocab":  # ArtQuant: against the full-vocabulary softmax
                    kl.append(full_vocab_kl(row[None], self.readout_ids[name], np.asarray(probs)[None]))
                    continue
                log_q = row[self.readout_ids[name]].log_softmax(-1)
                p = torch.tensor(probs, dtype=torch.float32, device=logits.device)
                kl.append((p * (p.clamp_min(1e-12).log() - log_q)).sum())
            sums["kl"] = (torch.stack(kl).sum(), len(kl))
        return sums, per_sample

    def level_probs(
        self, samples: list[Sample], readout: str, aligner=None, shared_images: int = 0, prefix: dict | None = None
    ) -> np.ndarray:
        """The readout's softmax for each sample. With shared_images = n, every sample starts with the same
        n images and the same text around them (CALM-In's support turns): that prefix runs through the
        LLM once (once per `prefix` dict, where the caller keeps it across batches), and its keys and
        values serve every sample, which then costs what a one-image readout costs (equal to the full
        pass up to float rounding, tested)."""
        with torch.no_grad():
            past = None
            if shared_images:
                x, _, _, last = self.embed(samples, aligner, after_images=shared_images)
                if len(set(last.tolist())) == 1:  # no padding: the rows differ only in their last image
                    prefix = {} if prefix is None else prefix
                    if "cache" not in prefix:
                        prefix["cache"] = self._shared_prefix(samples[0], shared_images, aligner)
                    past = copy.deepcopy(prefix["cache"])
                    past.batch_repeat_interleave(len(samples))
            if past is None:
                x, _, _, last = self.embed(samples, aligner)
            logits, column = self._logits(x, last.tolist(), past)
        rows = logits[torch.arange(len(samples)), column[last]][:, self.readout_ids[readout]]
        return rows.double().softmax(-1).cpu().numpy()  # in float64, so each row sums to 1

    def _shared_prefix(self, sample: Sample, n_images: int, aligner=None):
        """The LLM's keys and values for the sample up to its image number n_images."""
        pieces = self._pieces(sample)
        pieces = pieces[: _image_piece(pieces, n_images)]
        x, _, _, _ = self.embed([sample], aligner)
        return _cache_of(self.llm(inputs_embeds=x[:, : self._prefix_length(pieces)], use_cache=True, logits_to_keep=1))

    def _prefix_length(self, pieces: list) -> int:
        """How many input positions the pieces take."""
        per_image = self.aligner.tokens_per_image(self.encoder, self.taps)
        return sum(per_image if kind == "image" else len(value) for kind, value, _ in pieces if kind != "readout")

    def generate(self, samples: list[Sample], aligner=None) -> list[str]:
        with torch.no_grad():
            x, mask, _, _ = self.embed(samples, aligner, left_pad=True)
            out = self.llm.generate(
                inputs_embeds=x,
                attention_mask=mask,
                do_sample=False,
                num_beams=1,
                max_new_tokens=self.config.max_new_tokens,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def _cache_argument(self, past) -> dict:
        """The LLM's keyword for a cache of earlier keys and values: `cache` in transformers 5, `past_key_values` in 4.x."""
        base = (
            self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
        )  # under LoRA: the wrapped model
        return {"cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values": past}


def _image_piece(pieces: list, n: int) -> int:
    """The index of the first piece showing image number n or a later one: where a prefix of n images ends."""
    return next(i for i, (kind, value, _) in enumerate(pieces) if kind == "image" and value >= n)


def _cache_of(out):
    """The cache a forward pass returned (`cache` in transformers 5, `past_key_values` in 4.x)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


def nearest_word(readout: LevelReadout, value: float, score_range) -> str:
    """The level word whose weight is nearest a score (for support examples in the prompt)."""
    w = np.asarray(readout.weights)
    return readout.words[int(np.argmin(np.abs(w - readout.to_weights(value, score_range))))]


# ---------------------------------------------------------------------------------------------
# Building, saving and loading


def build_network(config: VLMConfig, tokenizer=None, folder: Path | None = None, pretrained: bool = True) -> VLMNetwork:
    """A network from a config: the encoder and LLM from their sources, or from a checkpoint folder."""
    owner = config.model_type
    transformers = optional_import("transformers", "train", owner)
    config.check()
    if folder is not None and (folder / VISION_DIR).is_dir():
        encoder = make_encoder(folder / VISION_DIR, pretrained=True, owner=owner)
    else:
        encoder = make_encoder(config.vision, pretrained=pretrained, owner=owner, config=config.vision_config)
    needed = max(config.qformer_layers + ([config.thematic_layer] if config.thematic_layer is not None else []))
    if needed >= len(encoder.layer_dims):
        raise AesbenchError(
            f"model config: layer {needed} asked for, but the encoder has layers 0..{len(encoder.layer_dims) - 1}"
        )
    dtype = getattr(torch, config.dtype)
    source = folder / LLM_DIR if folder is not None else None
    llm_folder = None
    try:
        if source is not None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=True)
            llm = transformers.AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=dtype)
        elif config.llm_config is not None or config.llm == "small":
            if config.llm_tokenizer:
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    config.llm_tokenizer, local_files_only=local_only()
                )
            if tokenizer is None:
                raise AesbenchError(
                    f"{owner}: a new LLM needs a tokenizer: llm_tokenizer (a local folder) or one trained on the training texts"
                )
            if config.llm_config is not None:  # random weights at any size (the paper-size check)
                llm = transformers.AutoModelForCausalLM.from_config(
                    transformers.AutoConfig.for_model(**config.llm_config), dtype=dtype
                )
            else:
                llm = small_decoder(
                    len(tokenizer),
                    config.llm_hidden,
                    config.llm_layers,
                    config.llm_heads,
                    config.max_positions,
                    tokenizer,
                )
        else:
            llm_folder = (
                packaged_llm_folder(config.llm)
                if config.llm in PACKAGED
                else require_files(
                    config.llm,
                    ["config.json"],
                    owner,
                    f"a Hugging Face causal LM folder (config.json, weights, tokenizer) or one of: {', '.join(PACKAGED)}",
                )
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(llm_folder, local_files_only=local_only())
            llm = transformers.AutoModelForCausalLM.from_pretrained(
                llm_folder, local_files_only=local_only(), dtype=dtype
            )
    except (OSError, ValueError, KeyError) as e:
        raise AesbenchError(f"{owner}: cannot build the LLM ({first_line(e)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    network = VLMNetwork(config, encoder, llm, tokenizer)
    if llm_folder is not None and config.llm in PACKAGED:
        network.llm_source = packaged_source(llm_folder)
    if network.device.type != "meta":  # meta: the architecture only, for checking sizes
        network.to("cuda" if torch.cuda.is_available() else "cpu")
    return network


def save_network(network: VLMNetwork, path: Path) -> None:
    """config.json, aligner.safetensors, llm/ (and tokenizer) in Hugging Face layout, vision/ for an HF encoder."""
    safetensors = optional_import("safetensors.torch", "train", network.config.model_type)
    path.mkdir(parents=True, exist_ok=True)
    llm = network.llm
    if hasattr(llm, "merge_and_unload"):  # LoRA: the saved LLM is the merged one, loadable without peft
        llm = copy.deepcopy(llm).merge_and_unload()
    llm.save_pretrained(path / LLM_DIR)
    network.tokenizer.save_pretrained(path / LLM_DIR)
    if network.config.vision != EFFICIENTNET or network.config.vision_config is not None:
        network.encoder.module.save_pretrained(path / VISION_DIR)
        network.encoder.processor.save_pretrained(path / VISION_DIR)
    safetensors.save_model(network.aligner, str(path / ALIGNER_FILE))
    config = {**asdict(network.config), "encoder_source": network.encoder.source, "llm_source": network.llm_source}
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def load_network(path: str | Path, owner: str) -> VLMNetwork:
    safetensors = optional_import("safetensors.torch", "train", owner)
    path = require_files(
        path,
        [CONFIG_FILE, ALIGNER_FILE, f"{LLM_DIR}/config.json"],
        owner,
        f"a checkpoint folder written by `aesbench train {owner}`",
    )
    data = json.loads((path / CONFIG_FILE).read_text())
    extra = {k: data.pop(k) for k in ("encoder_source", "llm_source") if k in data}
    config = VLMConfig.from_dict(data)
    network = build_network(config, folder=path, pretrained=True)
    network.llm_source = extra.get("llm_source")
    try:
        safetensors.load_model(network.aligner, str(path / ALIGNER_FILE), device=str(network.device))
    except (OSError, RuntimeError) as e:
        raise AesbenchError(f"{owner}: cannot load {path / ALIGNER_FILE}: {first_line(e)}") from None
    saved, now = extra.get("encoder_source", {}).get("weights"), network.encoder.source.get("weights")
    if saved and now and saved != now:
        raise AesbenchError(
            f"{owner}: the encoder weights installed here differ from those {path} was trained with"
            f" ({', '.join(now)}); install the package version it names in config.json"
        )
    network.eval()
    return network


# ---------------------------------------------------------------------------------------------
# The adapter


class AlignedVLM(Model):
    """The adapter for a VLMNetwork: scoring by level readout, text by generation, personalization."""

    capabilities = frozenset({"score", "distribution", "comment", "suggest", "personalize"})

    def __init__(
        self, network: VLMNetwork | None = None, distribution: bool = False, aligner=None, support: tuple | None = None
    ):
        if not isinstance(network, VLMNetwork):
            raise AesbenchError(
                f"model {self.name!r} has no trained network: train one with `aesbench train {self.name} --output DIR`,"
                " then pass --model DIR (the checkpoint folder)"
            )
        self.network, self.distribution = network, parse_bool(distribution, "distribution")
        self.aligner, self.support = aligner, support  # set on a personalized copy
        self._prefixes: dict = {}  # CALM-In: the LLM cache of the support turns, per readout
        if network.config.personalize == "in_context":
            self.name = f"{type(self).name}-in"  # CALM-In: its own leaderboard row
        self.checkpoint: Path | None = None
        self._hashes = None

    def config(self) -> dict:
        return {**asdict(self.network.config), "distribution": self.distribution}

    def describe(self) -> dict:
        net = self.network
        probe = net.aligner(net.encode([Image.new("RGB", (32, 32))], cache=False))
        desc = {
            "name": self.name,
            "config": self.config(),
            "device": str(net.device),
            "dtype": net.config.dtype,
            "encoder": {"source": net.encoder.source, "preprocessing": net.encoder.describe(), "taps": net.taps},
            "llm": {
                "class": type(net.llm).__name__,
                "source": net.config.llm,
                "packaged": net.llm_source,
                "chat_template": net.format.chat,
            },
            "visual_tokens_per_image": int(probe.shape[1]),
            "readout": {
                name: {
                    "text": net.readout_text(r),
                    "words": list(r.words),
                    "weights": list(r.weights),
                    "token_ids": net.readout_ids[name],
                    "softmax": "over the readout's words (float32)",
                }
                for name, r in net.readouts.items()
            },
            "personalize": {
                "mode": net.config.personalize,
                "finetune": "aligner copy, Adam, score KL on the support set",
                "steps": net.config.personalize_steps,
                "lr": net.config.personalize_lr,
                "in_context_examples": net.config.in_context_examples,
            },
            "generation": {"do_sample": False, "num_beams": 1, "max_new_tokens": net.config.max_new_tokens},
            "padding": "right for scoring (readout at each row's last token), left for generation",
        }
        if self.checkpoint is not None:
            if self._hashes is None:
                self._hashes = weight_hashes(self.checkpoint)
            desc.update(checkpoint=str(self.checkpoint.resolve()), weights_sha256=self._hashes)
        return desc

    def use_feature_cache(self, root) -> bool:
        self.feature_cache = self.network.use_feature_cache(root)
        return True

    def _probs(self, images: list[Image.Image], readout: str) -> np.ndarray:
        net = self.network
        r = net.readouts[readout]
        if self.support is None:
            samples = [readout_sample([img], r) for img in images]
        else:
            support_images, words = self.support
            samples = [readout_sample(list(support_images) + [img], r, in_context_sample(r, words)) for img in images]
            prefix = self._prefixes.setdefault(readout, {})  # the support turns run once per support set and readout
            return net.level_probs(samples, readout, self.aligner, shared_images=len(support_images), prefix=prefix)
        return net.level_probs(samples, readout, self.aligner)

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        scores = self.network.config.levels.score(self._probs(images, "levels"), request.score_range)
        out = [{"score": float(s)} for s in scores]
        if self.distribution:
            for line, p in zip(out, self._probs(images, "bins")):
                line["distribution"] = p.tolist()
        return out

    def _text(self, images, prompt: str) -> list[str]:
        return self.network.generate([text_sample([img], prompt) for img in images], self.aligner)

    def comment(self, images: list[Image.Image], request: Request) -> list[str]:
        return self._text(images, request.prompt or self.network.config.comment_prompt)

    def suggest(self, images: list[Image.Image], request: Request) -> list[str]:
        return self._text(images, request.prompt or self.network.config.suggest_prompt)

    def personalize(self, images: list[Image.Image], scores: list[float], request: Request) -> "AlignedVLM":
        net = self.network
        if net.config.personalize == "in_context":
            n = min(net.config.in_context_examples, len(images))  # the first n of the seeded support draw
            words = [nearest_word(net.config.levels, s, request.score_range) for s in scores[:n]]
            return type(self)(net, support=(list(images[:n]), words))
        return type(self)(net, aligner=finetune_aligner(net, images, scores, request.score_range))

    def save_pretrained(self, path: str | Path) -> None:
        save_network(self.network, Path(path))
        self.checkpoint = Path(path)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, distribution: bool = False, personalize: str | None = None
    ) -> "AlignedVLM":
        network = load_network(path, cls.name)
        if personalize is not None:
            network.config.personalize = personalize
            network.config.check()
        model = cls(network, distribution=distribution)
        model.checkpoint = Path(path)
        return model


def finetune_aligner(net: VLMNetwork, images, scores, score_range):
    """CALM's personalization: a copy of the aligner tuned on the support set with the score loss (seeded)."""
    aligner = copy.deepcopy(net.aligner).train()
    r = net.config.levels
    samples = [
        readout_sample([img], r, target=("levels", r.soft_label(s, score_range))) for img, s in zip(images, scores)
    ]
    optimiser = torch.optim.Adam(aligner.parameters(), lr=net.config.personalize_lr)
    generator = torch.Generator().manual_seed(0)
    with torch.enable_grad():
        for _ in range(net.config.personalize_steps):
            batch = torch.randperm(len(samples), generator=generator)[:PERSONALIZE_BATCH].tolist()
            loss = net([samples[i] for i in batch], aligner=aligner)["kl"]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return aligner.eval()
