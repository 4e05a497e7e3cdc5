"""`aesbench train calm`: CALM's training recipe, stage by stage, on the tasks' training splits.

    lm        (small config only: its LLM starts from random weights) the decoder learns the
              language of the training texts; nothing else is trained.
    align     (not in the paper: our addition for a small LLM and little data) the aligner alone, without
              the LLM (so a step costs an encoder pass): augmented or untouched pre-training images, each
              part's mean token pulled to the LLM's embedding of the words describing the image
              (VLMNetwork.align_loss). Hundreds of cheap steps on fresh augmentations give every part,
              the Q-Formers included, image-dependent tokens the LLM can read; without it the
              Q-Formers end as a constant prompt and the model answers from the text prior.
    pretrain  text-guided self-supervised learning (aesbench/models/ssl.py) on unlabeled images,
              plus generic image-text pairs (the comment task's training captions) for the FC;
              the Q-Formers and the FC are trained, the encoder and the LLM are frozen.
    comment   instruct tuning on the comment task's training split (AVA-Captions: never AVA test images).
    score     instruct tuning on scoring (soft level labels from each MOS; the 10-bin readout from the
              vote distribution where the dataset has one), PIAA (in-context episodes from the PIAA task's
              training workers) and suggesting (advice for degraded training images), with one
              caption per comment image replayed each epoch (comment_replay) so that a small model
              does not forget how to comment. In comment and score the MFAM is trained, and the LLM as
              model.llm_tuning says (LoRA adapters in the small config; frozen, or every weight).
              Pretrain, comment and score also replay alignment samples (align_replay).
              In comment and score every one-image answer is also asked to be likelier with its own
              image than with another of its batch's (image_contrast, VLMNetwork.forward: not in the paper;
              without it a small LLM answers from the captions' text prior and the grounding gap after
              score is 0). ssl_replay (off by default) also runs SSL samples through the LLM there.

The encoder is frozen throughout. Each finished stage saves the checkpoint folder, so a run stopped
at any point resumes: finished stages are skipped, and an unfinished one continues from its last
saved state (aesbench/training.py). Everything is recorded in OUTPUT/training.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.stats import spearmanr

from ..provenance import sha256_file
from ..degradations import SUGGEST_KINDS, item_rng
from ..errors import AesbenchError
from ..images import ImageError, Preprocessing, load_image
from ..task import load_task
from ..training import Schedule
from . import ssl
from .diagnostics import linear_probe
from .calm import Calm
from .vlm import Sample, VLMConfig, in_context_sample, nearest_word, readout_sample, text_sample
from .readout import LEVEL_WORDS
from .recipe import (
    RecipeStage,
    SkipStage,
    align_specs,
    load_recipe,
    readable,
    run_recipe,
    train_split,
    with_align_replay,
    write_provenance,
)

STAGES = ("lm", "align", "pretrain", "comment", "score")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _schedules() -> dict:
    """lm is the from-scratch decoder's; the others are sized for a pretrained LLM on 2 CPU cores
    (about 20 minutes in all): the aligner learns at 1e-3 while it is new (align, pretrain), then at
    3e-4 so instruct tuning adapts it rather than rewrites it; the LLM (when llm_tuning trains it) at 2e-4."""
    return {
        "lm": Schedule(epochs=6, batch_size=32, lr=2e-3),
        "align": Schedule(epochs=3, batch_size=32, lr=1e-3),
        "pretrain": Schedule(epochs=2, batch_size=16, lr=1e-3),
        "comment": Schedule(epochs=2, batch_size=4, lr=2e-4, aligner_lr=3e-4),
        "score": Schedule(epochs=3, batch_size=4, lr=2e-4, aligner_lr=3e-4),
    }


@dataclass
class CalmTrainConfig:
    """The whole recipe; a YAML file with `model:` (VLMConfig) and `train:` (these fields) overrides it."""

    model: VLMConfig = field(default_factory=VLMConfig)
    score_task: str | None = "tiny-ava-score"
    comment_task: str | None = "tiny-ava-comment"
    piaa_task: str | None = "tiny-flickr-aes-piaa"
    suggest_task: str | None = "tiny-pccd-suggest"  # only its prompt is used: its images are test images
    pretrain_images: str | None = (
        None  # a folder of unlabeled images; default: the score and comment tasks' training images
    )
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    ssl: bool = True  # ablation: False leaves only the image-text pairs in pre-training
    aug_groups: list[str] = field(default_factory=lambda: list(ssl.GROUPS))
    pairwise: float = 0.5  # share of SSL samples that compare two images
    ssl_per_image: int = 2  # SSL samples per pre-training image per epoch
    align_per_image: int = 20  # alignment samples per pre-training image per epoch
    align_clean: float = 0.2  # share of alignment samples left untouched ("clean")
    align_replay: int = 1  # alignment samples per pre-training image per epoch in pretrain, comment and score
    image_text: bool = True
    advice_per_image: int = 2  # suggest samples per advice image per epoch (score stage)
    comment_replay: bool = True  # the score stage also sees one caption per comment image (against forgetting)
    piaa_episodes: int = 40  # in-context episodes per epoch (score stage)
    image_contrast: float = 1.0  # weight of the image-contrast loss in comment and score (VLMNetwork.forward)
    ssl_replay: int = 0  # SSL samples per pre-training image per epoch in comment and score, through the LLM
    schedules: dict = field(default_factory=_schedules)
    seed: int = 0
    mixed_precision: str = "auto"  # "auto": bf16 where the hardware has it (training.native_bf16), else fp32
    save_every: int = 50
    max_minutes: float | None = None

    @classmethod
    def load(cls, path: str | Path | None) -> "CalmTrainConfig":
        config = load_recipe(cls, path, lambda **m: VLMConfig.from_dict(m), _schedules)
        config.check()
        return config

    def check(self) -> None:
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise AesbenchError(f"unknown stage {bad[0]!r}; stages: {', '.join(STAGES)}")
        ssl.check_groups(self.aug_groups)


# ---------------------------------------------------------------------------------------------
# Training data


@dataclass
class TrainingData:
    score: list = field(default_factory=list)  # Items with mos (and distribution)
    score_range: tuple = (1.0, 10.0)
    captions: list = field(default_factory=list)  # (Item, [sentences])
    pretrain: list = field(default_factory=list)  # image paths
    advice: list = field(default_factory=list)  # image paths: the better-rated half of the score images (or pretrain)
    piaa: dict = field(default_factory=dict)  # worker -> Items with score
    piaa_range: tuple = (1.0, 5.0)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    prompts: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)

    def image(self, path):
        return load_image(path, self.preprocessing)


def collect(config: CalmTrainConfig, data_root: Path | None) -> TrainingData:
    data = TrainingData()
    record = lambda task, ds, n: {
        "task": task.name,
        "task_sha256": task.sha256(),
        "split": "train",
        "n": n,
        "label_files": {str(p): sha256_file(p) for p in ds.label_files},
    }
    if config.score_task:
        task, ds = train_split(config.score_task, "score", data_root)
        data.skipped += [{**s, "source": task.name} for s in ds.skipped]
        data.score = readable(ds.items, task, data.skipped, task.name)
        data.score_range = tuple(float(v) for v in task.protocol.score_range)
        data.preprocessing, data.prompts["score"] = task.preprocessing, task.prompt
        data.sources["score"] = record(task, ds, len(data.score))
    if config.comment_task:
        task, ds = train_split(config.comment_task, "comment", data_root)
        items = readable(ds.items, task, data.skipped, task.name)
        data.captions = [(item, list(item.label["references"])) for item in items]
        data.prompts["comment"] = task.prompt
        data.sources["comment"] = record(task, ds, len(items))
    if config.piaa_task:
        task, ds = train_split(config.piaa_task, "piaa", data_root)
        for worker, items in ds.groups.items():
            ok = readable(items, task, data.skipped, task.name)
            if len(ok) > config.model.in_context_examples:
                data.piaa[worker] = ok
        data.piaa_range = tuple(float(v) for v in task.protocol.score_range)
        data.sources["piaa"] = {
            **record(task, ds, sum(len(v) for v in data.piaa.values())),
            "workers": sorted(data.piaa),
        }
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
    # Advice is taught on images that have nothing else wrong, as the suggest protocol degrades good
    # images: the better-rated half of the score task's training images (all pre-training images without one).
    if data.score:
        ranked = sorted(data.score, key=lambda item: -item.label["mos"])
        data.advice = [item.image for item in ranked[: max(1, len(ranked) // 2)]]
    else:
        data.advice = list(data.pretrain)
    data.sources["advice"] = {
        "from": "the better-rated half of the score images" if data.score else "the pre-training images",
        "n": len(data.advice),
    }
    return data


def training_texts(config: CalmTrainConfig, data: TrainingData) -> list[str]:
    """Every text the model is trained on or prompted with, for the small config's tokenizer and its lm stage."""
    m = config.model
    answers = [f"{m.answer_prefix} {w}." for w in LEVEL_WORDS + tuple(m.level_words)] + [
        f"{m.bins_prefix} {w}." for w in m.bin_words
    ]
    prompts = [
        m.score_prompt,
        m.bins_prompt,
        m.comment_prompt,
        m.suggest_prompt,
        *data.prompts.values(),
        "USER: ASSISTANT:",
        ssl.SINGLE_PROMPT,
        ssl.PAIR_PROMPT,
    ]
    captions = [c for _, refs in data.captions for c in refs]
    return prompts + answers + captions + ssl.all_texts()


# ---------------------------------------------------------------------------------------------
# Samples per stage: specs are cheap tuples; build(epoch, index) makes the Sample when it is needed


def lm_specs(config: CalmTrainConfig, data: TrainingData) -> tuple[list, Callable]:
    m = config.model
    texts = [c for _, refs in data.captions for c in refs] + [a for kind in SUGGEST_KINDS for a in ssl.ADVICE[kind]]
    texts += [f"USER: {m.score_prompt} ASSISTANT: {m.answer_prefix} {w}." for w in m.level_words]
    texts += [f"USER: {m.bins_prompt} ASSISTANT: {m.bins_prefix} {w}." for w in m.bin_words]
    n_ssl = len(texts)

    def build(epoch, index):
        if index < len(texts):
            return Sample([], [], [(texts[index], "lm")])
        rng = item_rng(config.seed, f"lm/{epoch}/{index}")
        kinds = ssl.draw_kinds(rng, tuple(config.aug_groups))
        text = (
            ssl.pair_text(kinds, bool(rng.random() < 0.5), rng)
            if rng.random() < config.pairwise
            else ssl.single_text(kinds, rng)
        )
        return Sample([], [], [(text, "lm")])

    return list(range(n_ssl * 2)), build


def calm_align_specs(config: CalmTrainConfig, data: TrainingData) -> tuple[list, Callable]:
    return align_specs(data.pretrain, data.image, config, config.align_per_image)


def ssl_sample(config: CalmTrainConfig, data: TrainingData, i: int, rng: np.random.Generator) -> Sample:
    """A text-guided SSL sample (aesbench/models/ssl.py) on pre-training image i: one augmented image and
    what was done to it, or (a config.pairwise share) the image and its augmented copy compared."""
    original = data.image(data.pretrain[i])
    kinds = ssl.draw_kinds(rng, tuple(config.aug_groups))
    augmented = ssl.augment(original, kinds, rng)
    if rng.random() < config.pairwise:
        first = bool(rng.random() < 0.5)
        pair = [augmented, original] if first else [original, augmented]
        turns = [(["First image:", 0, "Second image:", 1], ssl.PAIR_PROMPT, None)]
        return Sample(pair, turns, [(ssl.pair_text(kinds, first, rng), "lm")])
    return text_sample([augmented], ssl.SINGLE_PROMPT, ssl.single_text(kinds, rng))


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
            return text_sample([data.image(item.image)], m.comment_prompt, str(rng.choice(refs)))
        return ssl_sample(config, data, i, rng)

    return specs, build


def with_ssl_replay(stage: str, config: CalmTrainConfig, data: TrainingData, specs: list, build: Callable):
    """An instruct stage's samples plus config.ssl_replay SSL samples per pre-training image and epoch,
    through the LLM: the LLM, tuned in these stages, keeps reading from the image tokens what was done
    to the image, the skill that commenting and suggesting need, on fresh augmentations every epoch."""
    n = len(specs)
    extra = [("ssl", i) for i in range(len(data.pretrain)) for _ in range(config.ssl_replay)]

    def build_mixed(epoch, index):
        if index < n:
            return build(epoch, index)
        return ssl_sample(config, data, extra[index - n][1], item_rng(config.seed, f"{stage}/{epoch}/ssl/{index}"))

    return specs + extra, build_mixed


def comment_specs(config: CalmTrainConfig, data: TrainingData) -> tuple[list, Callable]:
    specs = [(i, j) for i, (_, refs) in enumerate(data.captions) for j in range(len(refs))]
    prompt = data.prompts.get("comment", config.model.comment_prompt)

    def build(epoch, index):
        i, j = specs[index]
        item, refs = data.captions[i]
        return text_sample([data.image(item.image)], prompt, refs[j])

    return specs, build


def score_specs(config: CalmTrainConfig, data: TrainingData) -> tuple[list, Callable]:
    m = config.model
    levels, bins = m.levels, m.bins
    specs = [("score", i) for i in range(len(data.score))]
    specs += [("bins", i) for i, item in enumerate(data.score) if "distribution" in item.label]
    specs += [("advice", i) for i in range(len(data.advice)) for _ in range(config.advice_per_image)]
    specs += [("comment", i) for i in range(len(data.captions))] if config.comment_replay else []
    workers = sorted(data.piaa)
    if workers:
        specs += [("piaa", e) for e in range(config.piaa_episodes)]
    suggest_prompt = data.prompts.get("suggest", m.suggest_prompt)
    comment_prompt = data.prompts.get("comment", m.comment_prompt)

    def build(epoch, index):
        kind, i = specs[index]
        rng = item_rng(config.seed, f"score/{epoch}/{index}")
        if kind == "score":
            item = data.score[i]
            return readout_sample(
                [data.image(item.image)],
                levels,
                target=("levels", levels.soft_label(item.label["mos"], data.score_range)),
            )
        if kind == "bins":
            item = data.score[i]
            return readout_sample([data.image(item.image)], bins, target=("bins", item.label["distribution"]))
        if kind == "comment":  # one caption per image and epoch, so commenting is not forgotten
            item, refs = data.captions[i]
            return text_sample([data.image(item.image)], comment_prompt, str(rng.choice(refs)))
        if kind == "advice":
            problem = str(rng.choice(SUGGEST_KINDS))
            img = ssl.augment(data.image(data.advice[i]), [problem], rng)
            return text_sample([img], suggest_prompt, ssl.advice(problem, rng))
        items = data.piaa[workers[int(rng.integers(len(workers)))]]
        chosen = rng.choice(len(items), size=m.in_context_examples + 1, replace=False)
        support, query = [items[j] for j in chosen[:-1]], items[chosen[-1]]
        words = [nearest_word(levels, it.label["score"], data.piaa_range) for it in support]
        images = [data.image(it.image) for it in support + [query]]
        return readout_sample(
            images,
            levels,
            in_context_sample(levels, words),
            ("levels", levels.soft_label(query.label["score"], data.piaa_range)),
        )

    return specs, build


SPECS = {
    "lm": lm_specs,
    "align": calm_align_specs,
    "pretrain": pretrain_specs,
    "comment": comment_specs,
    "score": score_specs,
}


# ---------------------------------------------------------------------------------------------
# The command


PARTS = {"lm": "llm", "align": "aligner", "pretrain": "aligner", "comment": "aligner+llm", "score": "aligner+llm"}


def train_calm(
    config: CalmTrainConfig,
    output: str | Path,
    data_root: Path | None = None,
    stages: list[str] | None = None,
    on_step: Callable | None = None,
) -> tuple[Calm, dict]:
    """Run the recipe's stages into the checkpoint folder `output` (resuming what is there)."""
    data = collect(config, data_root)

    def plan(stage):
        specs, build = SPECS[stage](config, data)
        if not specs:
            return SkipStage("no training data for it in this config")
        if stage in ("comment", "score") and config.ssl and config.ssl_replay:
            specs, build = with_ssl_replay(stage, config, data, specs, build)
        if stage in ("pretrain", "comment", "score") and config.align_replay:
            specs, build = with_align_replay(stage, config, data.pretrain, data.image, specs, build)
        cache = (
            stage != "pretrain"
        )  # pre-training images are augmented afresh every time (alignment samples never cache)
        contrast = config.image_contrast if stage in ("comment", "score") else 0.0
        return RecipeStage(
            specs, build, PARTS[stage], lambda module, samples: module(samples, cache=cache, contrast=contrast)
        )

    def stage_check(
        stage, network
    ):  # after scoring is taught: the readout vs a linear probe, both on the training images
        if stage != "score" or not data.score:
            return {}
        images, mos = [data.image(item.image) for item in data.score], [item.label["mos"] for item in data.score]
        probs = np.concatenate(
            [network.level_probs([readout_sample([img], network.config.levels)], "levels") for img in images]
        )
        readout = network.config.levels.score(probs, data.score_range)
        return {
            "train_split": {
                "readout_srcc": round(float(spearmanr(readout, mos)[0]), 4),
                "linear_probe": linear_probe(network, images, mos, seed=config.seed),
            }
        }

    network, provenance = run_recipe(
        config,
        output,
        list(stages or config.stages),
        STAGES,
        lambda: training_texts(config, data),
        plan,
        {"sources": data.sources, "skipped": data.skipped},
        on_step,
        stage_check=stage_check,
    )
    model = Calm(network)
    model.checkpoint = Path(output)
    write_provenance(output, provenance, model)
    return model, provenance
