"""`aesbench train calm`: CALM's training recipe, stage by stage, on the tasks' training splits.

    lm        (small config only: its LLM starts from random weights) the decoder learns the
              language of the training texts; nothing else is trained.
    pretrain  text-guided self-supervised learning (aesbench/models/ssl.py) on unlabeled images,
              plus generic image-text pairs (the comment task's training captions) for the FC;
              the Q-Formers and the FC are trained, the encoder and the LLM are frozen.
    comment   instruct tuning on the comment task's training split (AVA-Captions: never AVA test images).
    score     instruct tuning on scoring (soft level labels from each MOS; the 10-bin readout from the
              vote distribution where the dataset has one), PIAA (in-context episodes from the PIAA task's
              training workers) and suggesting (advice for degraded training images).
              In comment and score the MFAM and the LLM are trained (LoRA when lora_rank > 0).

The encoder is frozen throughout. Each finished stage saves the checkpoint folder, so a run stopped
at any point resumes: finished stages are skipped, and an unfinished one continues from its last
saved state (aesbench/training.py). Everything is recorded in OUTPUT/training.json.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from .. import __version__
from ..adapter import sha256_file
from ..datasets import read_dataset
from ..degradations import SUGGEST_KINDS, item_rng
from ..errors import AesbenchError
from ..families import decode
from ..images import ImageError, Preprocessing, load_image
from ..runs import git_state, identity_track, package_version
from ..task import Task, load_task
from ..training import LOG_FILE, PLOT_FILE, Schedule, plot_losses, run_stage
from ..weights import optional_import
from . import ssl
from .calm import (BIN_WORDS, CONFIG_FILE, Calm, CalmConfig, CalmNetwork, Sample, build_network, in_context_sample,
                   load_network, nearest_word, save_network, score_sample)
from .readout import LEVEL_WORDS
from .text import train_tokenizer

STAGES = ("lm", "pretrain", "comment", "score")
PROVENANCE_FILE, PROGRESS_FILE = "training.json", "stages_done.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _schedules() -> dict:
    return {"lm": Schedule(epochs=6, batch_size=32, lr=2e-3), "pretrain": Schedule(epochs=4, batch_size=16, lr=1e-3),
            "comment": Schedule(epochs=6, batch_size=16, lr=5e-4), "score": Schedule(epochs=5, batch_size=16, lr=3e-4)}


@dataclass
class CalmTrainConfig:
    """The whole recipe; a YAML file with `model:` (CalmConfig) and `train:` (these fields) overrides it."""

    model: CalmConfig = field(default_factory=CalmConfig)
    score_task: str | None = "tiny-ava-score"
    comment_task: str | None = "tiny-ava-comment"
    piaa_task: str | None = "tiny-flickr-aes-piaa"
    suggest_task: str | None = "tiny-pccd-suggest"  # only its prompt is used: its images are test images
    pretrain_images: str | None = None  # a folder of unlabeled images; default: the score and comment tasks' training images
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    ssl: bool = True  # ablation: False leaves only the image-text pairs in pre-training
    aug_groups: list[str] = field(default_factory=lambda: list(ssl.GROUPS))
    pairwise: float = 0.5  # share of SSL samples that compare two images
    ssl_per_image: int = 2  # SSL samples per pre-training image per epoch
    image_text: bool = True
    advice_per_image: int = 1  # suggest samples per pre-training image per epoch (score stage)
    piaa_episodes: int = 150  # in-context episodes per epoch (score stage)
    schedules: dict = field(default_factory=_schedules)
    seed: int = 0
    mixed_precision: str = "auto"  # "auto": bf16 on a GPU that has it, else full precision
    save_every: int = 50
    max_minutes: float | None = None

    @classmethod
    def load(cls, path: str | Path | None) -> "CalmTrainConfig":
        if path is None:
            return cls()
        shipped = Path(__file__).parent / "configs" / f"{path}.yaml"
        if not Path(path).is_file() and shipped.is_file():
            path = shipped
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise AesbenchError(f"cannot read the training config {path}: {e}") from None
        if not isinstance(data, dict) or set(data) - {"model", "train"}:
            raise AesbenchError(f"{path}: a training config has two sections, model: and train:")
        train = dict(data.get("train") or {})
        known = {f.name for f in dataclasses.fields(cls)} - {"model"}
        unknown = sorted(set(train) - known)
        if unknown:
            raise AesbenchError(f"{path}: unknown train key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        schedules = _schedules()
        for stage, values in (train.pop("schedules", None) or {}).items():
            if stage not in schedules:
                raise AesbenchError(f"{path}: unknown stage {stage!r} in schedules (stages: {', '.join(STAGES)})")
            schedules[stage] = dataclasses.replace(schedules[stage], **values)
        config = cls(model=CalmConfig.from_dict(dict(data.get("model") or {})), schedules=schedules, **train)
        config.check()
        return config

    def check(self) -> None:
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise AesbenchError(f"unknown stage {bad[0]!r}; stages: {', '.join(STAGES)}")
        bad = [g for g in self.aug_groups if g not in ssl.GROUPS]
        if bad:
            raise AesbenchError(f"unknown augmentation group {bad[0]!r}; groups: {', '.join(ssl.GROUPS)}")


# ---------------------------------------------------------------------------------------------
# Training data


@dataclass
class TrainingData:
    score: list = field(default_factory=list)  # Items with mos (and distribution)
    score_range: tuple = (1.0, 10.0)
    captions: list = field(default_factory=list)  # (Item, [sentences])
    pretrain: list = field(default_factory=list)  # image paths
    piaa: dict = field(default_factory=dict)  # worker -> Items with score
    piaa_range: tuple = (1.0, 5.0)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    prompts: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)

    def image(self, path):
        return load_image(path, self.preprocessing)


def _train_split(name: str, family: str, data_root) -> tuple[Task, object]:
    task = load_task(name)
    if task.family != family:
        raise AesbenchError(f"training needs a {family} task here; {task.name!r} is a {task.family} task")
    task = dataclasses.replace(task, dataset={**task.dataset, "split": "train"})
    task.resolve_root(data_root)
    return task, read_dataset(task)


def _readable(items, task: Task, skipped: list, what: str) -> list:
    """Items whose image decodes; the others are recorded skips."""
    ok, _, failed = decode(items, task)
    skipped += [{"id": item.id, "source": what, "reason": reason} for item, reason in failed]
    return ok


def collect(config: CalmTrainConfig, data_root: Path | None) -> TrainingData:
    data = TrainingData()
    record = lambda task, ds, n: {"task": task.name, "task_sha256": task.sha256(), "split": "train", "n": n,
                                  "label_files": {str(p): sha256_file(p) for p in ds.label_files}}
    if config.score_task:
        task, ds = _train_split(config.score_task, "score", data_root)
        data.skipped += [{**s, "source": task.name} for s in ds.skipped]
        data.score = _readable(ds.items, task, data.skipped, task.name)
        data.score_range = tuple(float(v) for v in task.protocol.get("score_range", (1, 10)))
        data.preprocessing, data.prompts["score"] = task.preprocessing, task.prompt
        data.sources["score"] = record(task, ds, len(data.score))
    if config.comment_task:
        task, ds = _train_split(config.comment_task, "comment", data_root)
        items = _readable(ds.items, task, data.skipped, task.name)
        data.captions = [(item, list(item.label["references"])) for item in items]
        data.prompts["comment"] = task.prompt
        data.sources["comment"] = record(task, ds, len(items))
    if config.piaa_task:
        task, ds = _train_split(config.piaa_task, "piaa", data_root)
        for worker, items in ds.groups.items():
            ok = _readable(items, task, data.skipped, task.name)
            if len(ok) > config.model.in_context_examples:
                data.piaa[worker] = ok
        data.piaa_range = tuple(float(v) for v in task.protocol.get("score_range", (1, 5)))
        data.sources["piaa"] = {**record(task, ds, sum(len(v) for v in data.piaa.values())), "workers": sorted(data.piaa)}
    if config.suggest_task:
        data.prompts["suggest"] = load_task(config.suggest_task).prompt
    if config.pretrain_images:
        folder = Path(config.pretrain_images).expanduser()
        if not folder.is_dir():
            raise AesbenchError(f"pretrain_images {folder} is not a folder of images")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in paths:
            try:
                load_image(path, data.preprocessing)
                data.pretrain.append(path)
            except ImageError as e:
                data.skipped.append({"id": str(path), "source": "pretrain_images", "reason": str(e)})
        data.sources["pretrain"] = {"folder": str(folder.resolve()), "n": len(data.pretrain)}
    else:
        seen = dict.fromkeys([item.image for item in data.score] + [item.image for item, _ in data.captions])
        data.pretrain = list(seen)
        data.sources["pretrain"] = {"from": "the score and comment tasks' training images", "n": len(data.pretrain)}
    return data


def training_texts(config: CalmTrainConfig, data: TrainingData) -> list[str]:
    """Every text the model is trained on or prompted with, for the small config's tokenizer and its lm stage."""
    m = config.model
    answers = [f"{m.answer_prefix} {w}." for w in LEVEL_WORDS + tuple(m.level_words)] + [f"{m.bins_prefix} {w}." for w in BIN_WORDS]
    prompts = [m.score_prompt, m.bins_prompt, m.comment_prompt, m.suggest_prompt, *data.prompts.values(),
               CalmNetwork.template(""), ssl.SINGLE_PROMPT, ssl.PAIR_PROMPT]
    captions = [c for _, refs in data.captions for c in refs]
    return prompts + answers + captions + ssl.all_texts()


# ---------------------------------------------------------------------------------------------
# Samples per stage: specs are cheap tuples; build(epoch, index) makes the Sample when it is needed


def lm_specs(config: CalmTrainConfig, data: TrainingData) -> tuple[list, Callable]:
    m = config.model
    texts = [c for _, refs in data.captions for c in refs] + [a for kind in SUGGEST_KINDS for a in ssl.ADVICE[kind]]
    texts += [CalmNetwork.template(m.score_prompt, f"{m.answer_prefix} {w}.") for w in m.level_words]
    texts += [CalmNetwork.template(m.bins_prompt, f"{m.bins_prefix} {w}.") for w in BIN_WORDS]
    n_ssl = len(texts)

    def build(epoch, index):
        if index < len(texts):
            return Sample([], [(texts[index], True)])
        rng = item_rng(config.seed, f"lm/{epoch}/{index}")
        kinds = ssl.draw_kinds(rng, tuple(config.aug_groups))
        text = ssl.pair_text(kinds, bool(rng.random() < 0.5), rng) if rng.random() < config.pairwise else ssl.single_text(kinds, rng)
        return Sample([], [(text, True)])

    return list(range(n_ssl * 2)), build


def pretrain_specs(config: CalmTrainConfig, data: TrainingData) -> tuple[list, Callable]:
    specs = []
    if config.ssl:
        specs += [("ssl", i) for i in range(len(data.pretrain)) for _ in range(config.ssl_per_image)]
    if config.image_text:
        specs += [("caption", i) for i in range(len(data.captions))]
    m = config.model

    def build(epoch, index):
        kind, i = specs[index]
        rng = item_rng(config.seed, f"pretrain/{epoch}/{index}")
        if kind == "caption":
            item, refs = data.captions[i]
            return Sample([data.image(item.image)], [0, (CalmNetwork.template(m.comment_prompt), False), (str(rng.choice(refs)), True)])
        original = data.image(data.pretrain[i])
        kinds = ssl.draw_kinds(rng, tuple(config.aug_groups))
        augmented = ssl.augment(original, kinds, rng)
        if rng.random() < config.pairwise:
            first = bool(rng.random() < 0.5)
            pair = [augmented, original] if first else [original, augmented]
            parts = [("First image:", False), 0, ("Second image:", False), 1,
                     (CalmNetwork.template(ssl.PAIR_PROMPT), False), (ssl.pair_text(kinds, first, rng), True)]
            return Sample(pair, parts)
        return Sample([augmented], [0, (CalmNetwork.template(ssl.SINGLE_PROMPT), False), (ssl.single_text(kinds, rng), True)])

    return specs, build


def comment_specs(config: CalmTrainConfig, data: TrainingData) -> tuple[list, Callable]:
    specs = [(i, j) for i, (_, refs) in enumerate(data.captions) for j in range(len(refs))]
    prompt = data.prompts.get("comment", config.model.comment_prompt)

    def build(epoch, index):
        i, j = specs[index]
        item, refs = data.captions[i]
        return Sample([data.image(item.image)], [0, (CalmNetwork.template(prompt), False), (refs[j], True)])

    return specs, build


def score_specs(config: CalmTrainConfig, data: TrainingData) -> tuple[list, Callable]:
    m = config.model
    levels, bins = m.levels, m.bins
    specs = [("score", i) for i in range(len(data.score))]
    specs += [("bins", i) for i, item in enumerate(data.score) if "distribution" in item.label]
    specs += [("advice", i) for i in range(len(data.pretrain)) for _ in range(config.advice_per_image)]
    workers = sorted(data.piaa)
    if workers:
        specs += [("piaa", e) for e in range(config.piaa_episodes)]
    suggest_prompt = data.prompts.get("suggest", m.suggest_prompt)

    def build(epoch, index):
        kind, i = specs[index]
        rng = item_rng(config.seed, f"score/{epoch}/{index}")
        if kind == "score":
            item = data.score[i]
            return Sample([data.image(item.image)], score_sample(levels), ("levels", levels.soft_label(item.label["mos"], data.score_range)))
        if kind == "bins":
            item = data.score[i]
            return Sample([data.image(item.image)], score_sample(bins), ("bins", item.label["distribution"]))
        if kind == "advice":
            problem = str(rng.choice(SUGGEST_KINDS))
            img = ssl.augment(data.image(data.pretrain[i]), [problem], rng)
            return Sample([img], [0, (CalmNetwork.template(suggest_prompt), False), (ssl.advice(problem, rng), True)])
        items = data.piaa[workers[int(rng.integers(len(workers)))]]
        chosen = rng.choice(len(items), size=m.in_context_examples + 1, replace=False)
        support, query = [items[j] for j in chosen[:-1]], items[chosen[-1]]
        words = [nearest_word(levels, it.label["score"], data.piaa_range) for it in support]
        images = [data.image(it.image) for it in support + [query]]
        return Sample(images, in_context_sample(levels, words), ("levels", levels.soft_label(query.label["score"], data.piaa_range)))

    return specs, build


SPECS = {"lm": lm_specs, "pretrain": pretrain_specs, "comment": comment_specs, "score": score_specs}


def trainable(network: CalmNetwork, stage: str) -> list:
    """The parameters a stage trains; everything else is frozen for it."""
    network.requires_grad_(False)
    if stage == "lm":
        modules = [network.llm]
    elif stage == "pretrain":
        modules = [network.mfam]
    else:
        modules = [network.mfam, network.llm]
    for module in modules:
        module.requires_grad_(True)
    if stage in ("comment", "score") and network.config.lora_rank:
        network.llm.requires_grad_(False)
        for name, p in network.llm.named_parameters():
            p.requires_grad_("lora_" in name)
    return [p for p in network.parameters() if p.requires_grad]


def _with_lora(network: CalmNetwork) -> None:
    peft = optional_import("peft", "lora", "calm")
    if not hasattr(network.llm, "peft_config"):
        lora = peft.LoraConfig(r=network.config.lora_rank, lora_alpha=2 * network.config.lora_rank, lora_dropout=0.0,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
        network.llm = peft.get_peft_model(network.llm, lora)


# ---------------------------------------------------------------------------------------------
# The command


def train_calm(config: CalmTrainConfig, output: str | Path, data_root: Path | None = None, stages: list[str] | None = None,
               track: Callable = identity_track, on_step: Callable | None = None) -> tuple[Calm, dict]:
    """Run the recipe's stages into the checkpoint folder `output` (resuming what is there)."""
    torch = optional_import("torch", "train", "calm")
    started = time.time()
    output = Path(output)
    stages = list(stages or config.stages)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise AesbenchError(f"unknown stage {bad[0]!r}; stages: {', '.join(STAGES)}")
    progress_file = output / PROGRESS_FILE
    if output.exists() and not progress_file.is_file() and any(output.iterdir()):
        raise AesbenchError(f"output {output} exists and is not a CALM training folder; choose another --output or delete it")
    output.mkdir(parents=True, exist_ok=True)
    progress = json.loads(progress_file.read_text()) if progress_file.is_file() else {"config": None, "done": []}
    config_dict = json.loads(json.dumps(asdict(config), default=str))
    recipe = {k: v for k, v in config_dict.items() if k not in ("max_minutes", "stages")}  # may change on resume
    if progress["config"] not in (None, recipe):
        raise AesbenchError(f"{output} was trained with another config; resume with the same config or choose another --output")
    torch.manual_seed(config.seed)
    data = collect(config, data_root)
    if (output / CONFIG_FILE).is_file():
        network = load_network(output)
    else:
        tokenizer = train_tokenizer(training_texts(config, data)) if config.model.llm == "small" and not config.model.llm_tokenizer else None
        network = build_network(config.model, tokenizer)
    summaries = progress.get("summaries", [])
    deadline = time.monotonic() + 60 * config.max_minutes if config.max_minutes else None
    for stage in stages:
        if stage in progress["done"]:
            continue
        if stage == "lm" and (config.model.llm != "small" or config.model.llm_config is not None):
            summaries.append({"stage": "lm", "skipped": "the LLM is pretrained; lm is for the small config's new decoder"})
            continue
        if stage in ("comment", "score") and config.model.lora_rank:
            _with_lora(network)
        specs, build = SPECS[stage](config, data)
        if not specs:
            summaries.append({"stage": stage, "skipped": "no training data for it in this config"})
            continue
        cache = stage != "pretrain"  # pre-training images are augmented afresh every time
        summary = run_stage(stage, network, trainable(network, stage), len(specs), build,
                            lambda module, samples: module(samples, cache=cache), config.schedules[stage], config.seed,
                            output, config.mixed_precision, on_step, config.save_every, deadline)
        summaries.append(summary)
        network.requires_grad_(False)
        save_network(network, output)
        if summary["stopped"] != "finished":
            break
        progress = {"config": recipe, "done": progress["done"] + [stage], "summaries": summaries}
        progress_file.write_text(json.dumps(progress, indent=2) + "\n")
    if (output / LOG_FILE).is_file():
        plot_losses(output / LOG_FILE, output / PLOT_FILE)
    model = Calm(network)
    model.checkpoint = output
    ended = time.time()
    provenance = {
        "aesbench": __version__, "git": git_state(), "torch": package_version("torch"),
        "transformers": package_version("transformers"), "accelerate": package_version("accelerate"),
        "device": str(network.device), "config": config_dict, "data": data.sources, "skipped": data.skipped,
        "stages": summaries, "stages_done": progress["done"], "seed": config.seed, "model": model.describe(),
        "start": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "end": dt.datetime.fromtimestamp(ended, dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(ended - started, 3), "command": " ".join(sys.argv),
    }
    (output / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    return model, provenance
