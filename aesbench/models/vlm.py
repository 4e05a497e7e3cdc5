"""A vision-language network built from parts: a frozen vision encoder tapped at chosen layers, an
aligner that turns those layers into tokens, and a causal LM; shared by CALM and ArtQuant.

    image ──encoder (frozen)──┬─ layer L_thematic ── FC ─────────── thematic tokens
                              ├─ layer l_1 ── Q-Former (n queries) ─ tokens
                              └─ ...        ── Q-Former ──────────── tokens
    [image tokens] + "USER: {instruction} ASSISTANT: {answer}" ── LLM

The aligner is CALM's Multi-scale Feature Alignment Module (an FC on the last layer, one Q-Former
per tapped level); with a single Q-Former on the last layer and no FC it is a visual abstractor of
the mPLUG-Owl2 kind that ArtQuant uses. Reads top to bottom: the config, the Q-Former, the aligner,
the network (how images and text become one sequence of embeddings, the losses, the readout and
generation), building/saving/loading, and the adapter `aesbench eval` talks to.

Scoring is the field's readout (aesbench/models/readout.py): after a fixed answer prefix the logits
of the level words are softmaxed over those words and weighted. The 10-bin distribution, when asked
for, is the same readout over the words "1".."10" after its own prompt. Sequences are right-padded
and the readout is taken at each sequence's last real token, so a score does not depend on the
batch it was computed in. Text is generated greedily. Learned text carries a loss group ("lm", or
e.g. ArtQuant's "score_lm"); the network returns the mean token loss per group and the readout KL,
and each recipe weights them.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..adapter import Model, Request
from ..errors import AesbenchError, first_line
from ..features import FeatureCache, image_key, module_cache
from ..weights import local_only, optional_import, require_files, weight_hashes
from .readout import LEVEL_WORDS, QALIGN_WEIGHTS, LevelReadout, first_token_ids
from .text import small_decoder
from .vision import EFFICIENTNET, make_encoder

torch = optional_import("torch", "train", "aesbench.models")
nn = torch.nn

SCORE_PROMPT = "How would you rate the aesthetics of this image?"
SCORE_PREFIX = "The aesthetics of the image is"
BINS_PROMPT = "Rate the aesthetics of this image from 1 to 10."
BINS_PREFIX = "The rating is"
BIN_WORDS = tuple(str(i) for i in range(1, 11))
COMMENT_PROMPT = "Write a short critique of this photograph's aesthetics."
SUGGEST_PROMPT = "How could this photograph be improved?"
ALIGNER_FILE, CONFIG_FILE, LLM_DIR, VISION_DIR = "aligner.safetensors", "config.json", "llm", "vision"
PERSONALIZE_MODES = ("finetune", "in_context")
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
    # LLM: "small" (built from the fields below with a trained word-level tokenizer), a local Hugging
    # Face causal LM folder, or llm_config (random weights)
    llm: str = "small"
    llm_config: dict | None = None
    llm_tokenizer: str | None = None  # a local tokenizer folder for llm_config; else one is trained on the texts
    llm_hidden: int = 192
    llm_layers: int = 4
    llm_heads: int = 4
    max_positions: int = 1024
    lora_rank: int = 0  # > 0: the LLM is tuned through LoRA adapters (peft), merged when saved
    # readout and prompts
    score_prompt: str = SCORE_PROMPT
    answer_prefix: str = SCORE_PREFIX
    level_words: list[str] = field(default_factory=lambda: list(LEVEL_WORDS))
    level_weights: list[float] = field(default_factory=lambda: list(QALIGN_WEIGHTS))
    label_sigma: float = 0.1  # soft level labels' width, fraction of the weights' span
    bins_prompt: str = BINS_PROMPT
    bins_prefix: str = BINS_PREFIX
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
        if self.personalize not in PERSONALIZE_MODES:
            raise AesbenchError(f"model config: personalize must be one of {', '.join(PERSONALIZE_MODES)}, not {self.personalize!r}")
        if self.queries < 1 or self.qformer_depth < 1 or self.qformer_dim % self.qformer_heads:
            raise AesbenchError("model config: queries and qformer_depth must be >= 1 and qformer_dim divisible by qformer_heads")

    @property
    def levels(self) -> LevelReadout:
        return LevelReadout(self.score_prompt, self.answer_prefix, tuple(self.level_words), tuple(self.level_weights), self.label_sigma)

    @property
    def bins(self) -> LevelReadout:
        return LevelReadout(self.bins_prompt, self.bins_prefix, BIN_WORDS, tuple(float(w) for w in range(1, 11)), self.label_sigma)


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

    def __init__(self, in_dim: int, dim: int, out_dim: int, queries: int, depth: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.image_proj = nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim))
        self.layers = nn.ModuleList(QFormerLayer(dim, heads) for _ in range(depth))
        self.out_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out_dim))

    def forward(self, image_tokens):
        image = self.image_proj(image_tokens)
        q = self.queries.unsqueeze(0).expand(image.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, image)
        return self.out_proj(q)


class Aligner(nn.Module):
    """The FC projection of the thematic layer and one Q-Former per tapped layer; tokens concatenated."""

    def __init__(self, config: VLMConfig, layer_dims: list[int], llm_dim: int):
        super().__init__()
        self.config = config
        if config.thematic_layer is not None:
            self.fc = nn.Linear(layer_dims[config.thematic_layer], llm_dim)
        self.qformers = nn.ModuleList(
            QFormer(layer_dims[layer], config.qformer_dim, llm_dim, config.queries, config.qformer_depth, config.qformer_heads)
            for layer in config.qformer_layers)

    def forward(self, taps: dict):
        c, tokens = self.config, []
        if c.thematic_layer is not None:
            x = taps[c.thematic_layer]
            if c.thematic_grid and x.shape[1] > c.thematic_grid ** 2:  # a square convolutional map
                side = int(round(x.shape[1] ** 0.5))
                grid = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)
                x = nn.functional.adaptive_avg_pool2d(grid, c.thematic_grid).flatten(2).transpose(1, 2)
            tokens.append(self.fc(x))
        tokens += [qf(taps[layer]) for qf, layer in zip(self.qformers, c.qformer_layers)]
        return torch.cat(tokens, dim=1)


# ---------------------------------------------------------------------------------------------
# The network: sequences of image and text parts


@dataclass
class Sample:
    """One training or inference sequence.

    parts: in order, ints (an index into `images`) and (text, group) pairs; text with a group (a
    loss name such as "lm") is predicted, text with None is context. target: (readout name, level
    probabilities) for the next token after the last part, trained with KL(target || softmax over
    the readout's words).
    """

    images: list
    parts: list
    target: tuple[str, np.ndarray] | None = None


class VLMNetwork(nn.Module):
    def __init__(self, config: VLMConfig, encoder, llm, tokenizer):
        super().__init__()
        self.config, self.encoder, self.tokenizer = config, encoder, tokenizer
        self.llm = llm
        self.aligner = Aligner(config, encoder.layer_dims, llm.get_input_embeddings().embedding_dim)
        self.encoder_module = encoder.module  # registered so .to(device) moves it; frozen
        self.encoder_module.requires_grad_(False)
        self.taps = sorted(set(config.qformer_layers) | ({config.thematic_layer} - {None}))
        self.readouts = {"levels": config.levels, "bins": config.bins}
        self.readout_ids = {name: first_token_ids(tokenizer, self.template(r.prompt, r.answer_prefix), r.words)
                            for name, r in self.readouts.items()}
        self._taps_cache: dict[str, list] = {}
        self.feature_cache: FeatureCache | None = None  # on disk, under the memory cache: set by use_feature_cache
        self._tap_shapes: list[tuple] = []

    @staticmethod
    def template(prompt: str, answer: str = "") -> str:
        """The text after an image: one fixed form for training and inference."""
        return f"USER: {prompt} ASSISTANT:" + (f" {answer}" if answer else "")

    @property
    def device(self):
        return next(self.aligner.parameters()).device

    def use_feature_cache(self, root) -> FeatureCache:
        """Keep the tapped layers on disk too: every checkpoint on the same frozen encoder and taps
        (CALM's ablation variants, say) and every later run reads them instead of encoding again."""
        self._tap_shapes = [tuple(t.shape[1:]) for t in self._encode([Image.new("RGB", (32, 32))])]
        self.feature_cache = module_cache(root, self.encoder_module, {
            "backbone": self.encoder.name, "preprocessing": self.encoder.describe(), "layers": self.taps,
            "shapes": self._tap_shapes, "output": "each tapped layer's tokens, flattened and concatenated, float32"})
        return self.feature_cache

    def _encode(self, images: list[Image.Image]) -> list:
        self.encoder_module.eval()
        with torch.no_grad():
            return self.encoder.tapped(self.encoder.prepare(images).to(self.device), self.taps)

    def _cached_encode(self, images: list[Image.Image]) -> list:
        """_encode through the disk cache: one flat float32 row per image, split back into the taps."""
        flat = self.feature_cache.get(images, lambda batch: torch.cat([t.float().flatten(1) for t in self._encode(batch)], 1).cpu().numpy())
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

    def embed(self, samples: list[Sample], aligner=None, cache: bool = True, left_pad: bool = False):
        """Embeddings, attention mask, LM labels (-100 where not learned), each label's loss group
        (an index into the returned names) and each row's last position."""
        embedding = self.llm.get_input_embeddings()
        images = [img for s in samples for img in s.images]
        visual = (aligner or self.aligner)(self.encode(images, cache)) if images else None
        rows, labels, groups, names, offset = [], [], [], [], 0
        bos = self.tokenizer.bos_token_id
        for s in samples:
            pieces, row_labels, row_groups = [], [], []
            if bos is not None:
                pieces.append(embedding(torch.tensor([bos], device=self.device)))
                row_labels.append(-100)
                row_groups.append(-1)
            for part in s.parts:
                if isinstance(part, int):
                    tokens = visual[offset + part].to(pieces[0].dtype if pieces else visual.dtype)
                    pieces.append(tokens)
                    row_labels += [-100] * tokens.shape[0]
                    row_groups += [-1] * tokens.shape[0]
                else:
                    text, group = part
                    ids = self._tokens(text) + ([self.tokenizer.eos_token_id] if group == "lm" else [])
                    pieces.append(embedding(torch.tensor(ids, dtype=torch.long, device=self.device)))
                    if group is not None and group not in names:
                        names.append(group)
                    row_labels += ids if group is not None else [-100] * len(ids)
                    row_groups += [names.index(group) if group is not None else -1] * len(ids)
            offset += len(s.images)
            rows.append(torch.cat([p.to(pieces[0].dtype) for p in pieces]))
            labels.append(row_labels)
            groups.append(row_groups)
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
            last.append(length - 1 if left_pad else n - 1)
        return x, mask, (y, g, names), torch.tensor(last, device=self.device)

    def forward(self, samples: list[Sample], aligner=None, cache: bool = True):
        """Training losses: the mean token loss of each text group and the mean KL of the readout targets ("kl")."""
        x, mask, (labels, groups, names), last = self.embed(samples, aligner, cache)
        logits = self.llm(inputs_embeds=x, attention_mask=mask).logits.float()
        losses = {}
        token_loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                 reduction="none")
        shifted = groups[:, 1:].reshape(-1)
        for index, name in enumerate(names):
            losses[name] = token_loss[shifted == index].mean()
        targeted = [i for i, s in enumerate(samples) if s.target is not None]
        if targeted:
            kl = []
            for i in targeted:
                name, probs = samples[i].target
                log_q = logits[i, last[i], self.readout_ids[name]].log_softmax(-1)
                p = torch.tensor(probs, dtype=torch.float32, device=logits.device)
                kl.append((p * (p.clamp_min(1e-12).log() - log_q)).sum())
            losses["kl"] = torch.stack(kl).mean()
        return losses

    def level_probs(self, samples: list[Sample], readout: str, aligner=None) -> np.ndarray:
        with torch.no_grad():
            x, mask, _, last = self.embed(samples, aligner)
            logits = self.llm(inputs_embeds=x, attention_mask=mask).logits.float()
        rows = logits[torch.arange(len(samples)), last][:, self.readout_ids[readout]]
        return rows.double().softmax(-1).cpu().numpy()  # in float64, so each row sums to 1

    def generate(self, samples: list[Sample], aligner=None) -> list[str]:
        with torch.no_grad():
            x, mask, _, _ = self.embed(samples, aligner, left_pad=True)
            out = self.llm.generate(inputs_embeds=x, attention_mask=mask, do_sample=False, num_beams=1,
                                    max_new_tokens=self.config.max_new_tokens, eos_token_id=self.tokenizer.eos_token_id,
                                    pad_token_id=self.tokenizer.pad_token_id)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


def score_sample(readout: LevelReadout, image_index: int = 0) -> list:
    return [image_index, (VLMNetwork.template(readout.prompt, readout.answer_prefix), None)]


def in_context_sample(readout: LevelReadout, support_words: list[str]) -> list:
    """Support images each followed by their level word, then the query image (the last one)."""
    parts = []
    for i, word in enumerate(support_words):
        parts += [i, (VLMNetwork.template(readout.prompt, f"{readout.answer_prefix} {word}.") + "\n", None)]
    return parts + score_sample(readout, len(support_words))


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
        raise AesbenchError(f"model config: layer {needed} asked for, but the encoder has layers 0..{len(encoder.layer_dims) - 1}")
    dtype = getattr(torch, config.dtype)
    source = folder / LLM_DIR if folder is not None else None
    try:
        if source is not None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=True)
            llm = transformers.AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=dtype)
        elif config.llm_config is not None or config.llm == "small":
            if config.llm_tokenizer:
                tokenizer = transformers.AutoTokenizer.from_pretrained(config.llm_tokenizer, local_files_only=local_only())
            if tokenizer is None:
                raise AesbenchError(f"{owner}: a new LLM needs a tokenizer: llm_tokenizer (a local folder) or one trained on the training texts")
            if config.llm_config is not None:  # random weights at any size (the paper-size check)
                llm = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config.llm_config), dtype=dtype)
            else:
                llm = small_decoder(len(tokenizer), config.llm_hidden, config.llm_layers, config.llm_heads, config.max_positions, tokenizer)
        else:
            llm_folder = require_files(config.llm, ["config.json"], owner, "a Hugging Face causal LM folder (config.json, weights, tokenizer)")
            tokenizer = transformers.AutoTokenizer.from_pretrained(llm_folder, local_files_only=local_only())
            llm = transformers.AutoModelForCausalLM.from_pretrained(llm_folder, local_files_only=local_only(), dtype=dtype)
    except (OSError, ValueError, KeyError) as e:
        raise AesbenchError(f"{owner}: cannot build the LLM ({first_line(e)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    network = VLMNetwork(config, encoder, llm, tokenizer)
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
    config = {**asdict(network.config), "lora_rank": 0, "encoder_source": network.encoder.source}
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def load_network(path: str | Path, owner: str) -> VLMNetwork:
    safetensors = optional_import("safetensors.torch", "train", owner)
    path = require_files(path, [CONFIG_FILE, ALIGNER_FILE, f"{LLM_DIR}/config.json"], owner, f"a checkpoint folder written by `aesbench train {owner}`")
    data = json.loads((path / CONFIG_FILE).read_text())
    extra = {k: data.pop(k) for k in ("encoder_source",) if k in data}
    config = VLMConfig.from_dict(data)
    network = build_network(config, folder=path, pretrained=True)
    try:
        safetensors.load_model(network.aligner, str(path / ALIGNER_FILE), device=str(network.device))
    except (OSError, RuntimeError) as e:
        raise AesbenchError(f"{owner}: cannot load {path / ALIGNER_FILE}: {first_line(e)}") from None
    saved, now = extra.get("encoder_source", {}).get("weights"), network.encoder.source.get("weights")
    if saved and now and saved != now:
        raise AesbenchError(f"{owner}: the encoder weights installed here differ from those {path} was trained with"
                            f" ({', '.join(now)}); install the package version it names in config.json")
    network.eval()
    return network


# ---------------------------------------------------------------------------------------------
# The adapter


class AlignedVLM(Model):
    """The adapter for a VLMNetwork: scoring by level readout, text by generation, personalization."""

    capabilities = frozenset({"score", "distribution", "comment", "suggest", "personalize"})

    def __init__(self, network: VLMNetwork | None = None, distribution: bool = False, aligner=None, support: tuple | None = None):
        if not isinstance(network, VLMNetwork):
            raise AesbenchError(f"model {self.name!r} has no trained network: train one with `aesbench train {self.name} --output DIR`,"
                                " then pass --model DIR (the checkpoint folder)")
        self.network, self.distribution = network, bool(distribution)
        self.aligner, self.support = aligner, support  # set on a personalized copy
        if network.config.personalize == "in_context":
            self.name = f"{type(self).name}-in"  # CALM-In: its own leaderboard row
        self.checkpoint: Path | None = None
        self._hashes = None

    def config(self) -> dict:
        return {**asdict(self.network.config), "distribution": self.distribution}

    def describe(self) -> dict:
        net = self.network
        probe = net.aligner(net.encode([Image.new("RGB", (32, 32))], cache=False))
        desc = {"name": self.name, "config": self.config(), "device": str(net.device), "dtype": net.config.dtype,
                "encoder": {"source": net.encoder.source, "preprocessing": net.encoder.describe(), "taps": net.taps},
                "llm": type(net.llm).__name__, "visual_tokens_per_image": int(probe.shape[1]),
                "readout": {name: {"text": net.template(r.prompt, r.answer_prefix), "words": list(r.words), "weights": list(r.weights),
                                   "token_ids": net.readout_ids[name], "softmax": "over the readout's words (float32)"}
                            for name, r in net.readouts.items()},
                "personalize": {"mode": net.config.personalize, "finetune": "aligner copy, Adam, score KL on the support set",
                                "steps": net.config.personalize_steps, "lr": net.config.personalize_lr,
                                "in_context_examples": net.config.in_context_examples},
                "generation": {"do_sample": False, "num_beams": 1, "max_new_tokens": net.config.max_new_tokens},
                "padding": "right for scoring (readout at each row's last token), left for generation"}
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
            samples = [Sample([img], score_sample(r)) for img in images]
        else:
            support_images, words = self.support
            samples = [Sample(list(support_images) + [img], in_context_sample(r, words)) for img in images]
        return net.level_probs(samples, readout, self.aligner)

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        scores = self.network.config.levels.score(self._probs(images, "levels"), request.score_range)
        out = [{"score": float(s)} for s in scores]
        if self.distribution:
            for line, p in zip(out, self._probs(images, "bins")):
                line["distribution"] = p.tolist()
        return out

    def _text(self, images, prompt: str) -> list[str]:
        return self.network.generate([Sample([img], [0, (self.network.template(prompt), None)]) for img in images], self.aligner)

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
    def from_pretrained(cls, path: str | Path, distribution: bool = False, personalize: str | None = None) -> "AlignedVLM":
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
    samples = [Sample([img], score_sample(r), ("levels", r.soft_label(s, score_range))) for img, s in zip(images, scores)]
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
