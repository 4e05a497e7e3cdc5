"""`aesbench train artquant`: ArtQuant's recipe on an art score task and its description file.

    lm        (small config only: its LLM starts from random weights) the decoder learns the language
              of the descriptions and score sentences; nothing else is trained.
    align     (not in ArtQuant: our stand-in for the pre-training mPLUG-Owl2's abstractor comes with) the
              abstractor alone, without the LLM: the training images augmented afresh (or left clean), its
              mean token pulled to the LLM's embedding of the words describing each (recipe.align_specs).
    instruct  joint training on the task's training split: for each image a description sample
              (the three levels, LM loss, weight description_weight) and a score sample as the public
              code builds it: one of its ten questions, the answer "<prefix> <level>." learned but for
              the level token, and the KL between the fitted soft label and the full-vocabulary softmax
              at the level position (both weighted score_weight). The aligner is trained, the LLM as
              model.llm_tuning says (LoRA in the small config, as the original); the encoder is frozen
              (the original also trains it). Alignment samples are mixed in (align_replay, weight 1),
              so the abstractor keeps what the align stage gave it.
              descriptions: false drops the description samples (the "scores alone" baseline).

Shares the training loop (aesbench/training.py), the network (vlm.py), the stage bookkeeping and
the parameter selection with CALM's recipe (calm_train.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..provenance import sha256_file
from ..descriptions import LEVELS, read_descriptions
from ..degradations import item_rng
from ..errors import AesbenchError
from ..images import load_image
from ..training import Schedule
from .artquant import SCORE_PROMPTS, ArtQuant, artquant_config, level_word, original_scale
from . import ssl
from .recipe import (
    RecipeStage,
    align_specs,
    load_recipe,
    readable,
    run_recipe,
    train_split,
    with_align_replay,
    write_provenance,
)
from .readout import fit_soft_label
from .vlm import ALIGN, READOUT, Sample, VLMConfig, text_sample

STAGES = ("lm", "align", "instruct")


def _schedules() -> dict:
    """lm is the from-scratch decoder's; the others are sized for a pretrained LLM on 2 CPU cores: the
    abstractor learns at 1e-3 while it is new (align), then at 3e-4; the LLM's LoRA adapters at 2e-4."""
    return {
        "lm": Schedule(epochs=8, batch_size=32, lr=2e-3),
        "align": Schedule(epochs=4, batch_size=32, lr=1e-3),
        "instruct": Schedule(epochs=4, batch_size=8, lr=2e-4, aligner_lr=3e-4),
    }


@dataclass
class ArtQuantTrainConfig:
    """The recipe; a YAML file with `model:` (VLMConfig keys over ArtQuant's preset) and `train:` overrides it."""

    model: VLMConfig = field(default_factory=artquant_config)
    task: str = "tiny-art-score"
    descriptions_file: str = "descriptions.jsonl"  # relative to the task's data root, or absolute
    descriptions: bool = True
    description_weight: float = 1.0
    score_weight: float = 0.05
    align_per_image: int = 20  # alignment samples per training image per epoch
    align_clean: float = 0.2  # share of them left untouched
    align_replay: int = 1  # alignment samples per training image per epoch in instruct (weight 1)
    aug_groups: list[str] = field(default_factory=lambda: list(ssl.GROUPS))
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    schedules: dict = field(default_factory=_schedules)
    seed: int = 0
    mixed_precision: str = "auto"
    save_every: int = 50
    max_minutes: float | None = None

    @classmethod
    def load(cls, path: str | Path | None) -> "ArtQuantTrainConfig":
        config = load_recipe(cls, path, artquant_config, _schedules)
        ssl.check_groups(config.aug_groups)
        return config


@dataclass
class ArtData:
    items: list
    descriptions: dict
    score_range: tuple
    preprocessing: object
    sources: dict
    skipped: list


def collect(config: ArtQuantTrainConfig, data_root: Path | None) -> ArtData:
    task, ds = train_split(config.task, "score", data_root)
    skipped = [{**s, "source": task.name} for s in ds.skipped]
    items = readable(ds.items, task, skipped, task.name)
    path = Path(config.descriptions_file)
    path = path if path.is_absolute() else task.data_root / path
    found = read_descriptions(path) if config.descriptions else None
    descriptions = {}
    if found is not None:
        skipped += [{**s, "source": path.name} for s in found.skipped]
        descriptions = {it.id: found.records[it.id] for it in items if it.id in found.records}
        skipped += [
            {"id": it.id, "source": path.name, "reason": "no description (score sample only)"}
            for it in items
            if it.id not in descriptions
        ]
    sources = {
        "task": task.name,
        "task_sha256": task.sha256(),
        "split": "train",
        "n": len(items),
        "label_files": {str(p): sha256_file(p) for p in ds.label_files},
    }
    if found is not None:
        sources["descriptions"] = {"file": str(path.resolve()), "sha256": sha256_file(path), "n": len(descriptions)}
    return ArtData(
        items, descriptions, tuple(float(v) for v in task.protocol.score_range), task.preprocessing, sources, skipped
    )


def description_text(record: dict) -> str:
    return " ".join(f"{level.capitalize()}: {record[level].strip()}" for level in LEVELS)


def specs_for(stage: str, config: ArtQuantTrainConfig, data: ArtData) -> tuple[list, Callable]:
    m = config.model
    if stage == "lm":
        texts = [f"USER: {m.comment_prompt} ASSISTANT: {description_text(r)}" for r in data.descriptions.values()]
        texts += [f"USER: {m.score_prompt} ASSISTANT: {m.answer_prefix} {w}." for w in m.level_words]
        return texts, lambda epoch, index: Sample([], [], [(texts[index], "lm")])
    specs = [("score", i) for i in range(len(data.items))]
    specs += [("describe", i) for i, it in enumerate(data.items) if it.id in data.descriptions]

    def build(epoch, index):
        kind, i = specs[index]
        item = data.items[i]
        img = load_image(item.image, data.preprocessing)
        if kind == "describe":
            return text_sample([img], m.comment_prompt, description_text(data.descriptions[item.id]))
        # The public code's score sample: one of its question phrasings (drawn once per image), the
        # answer "<prefix> <level>." learned but for the level word, the KL target at the level word's
        # position fitted on the original's score scale (fit_soft_label)
        score = original_scale(item.label["mos"], data.score_range)
        prompt = SCORE_PROMPTS[int(item_rng(config.seed, f"prompt/{item.id}").integers(len(SCORE_PROMPTS)))]
        reply = [
            (m.answer_prefix, "score_lm"),
            (READOUT, None),
            (f" {level_word(score, m.level_weights, m.level_words)}", None),
            (".", "score_lm"),
        ]
        return Sample([img], [([0], prompt, None)], reply, ("levels", fit_soft_label(score, tuple(m.level_weights))))

    return specs, build


def weighted_loss(config: ArtQuantTrainConfig) -> Callable:
    """ArtQuant's objective from the network's named losses."""
    weights = {"lm": config.description_weight, "score_lm": config.score_weight, "kl": config.score_weight, ALIGN: 1.0}

    def loss_fn(module, samples):
        return {name: weights[name] * value for name, value in module(samples).items()}

    return loss_fn


def train_artquant(
    config: ArtQuantTrainConfig,
    output: str | Path,
    data_root: Path | None = None,
    stages: list[str] | None = None,
    on_step: Callable | None = None,
    on_epoch: Callable | None = None,
) -> tuple[ArtQuant, dict]:
    """Run the recipe's stages into the checkpoint folder `output` (resuming what is there).

    on_epoch(stage, epoch, model) is called after every whole epoch (learning curves)."""
    data = collect(config, data_root)
    if not data.items:
        raise AesbenchError(f"task {config.task!r} has no readable training images")
    m = config.model

    def texts():
        return [description_text(r) for r in data.descriptions.values()] + [
            m.score_prompt,
            m.answer_prefix,
            m.comment_prompt,
            "USER: ASSISTANT:",
            " ".join(m.level_words),
            " ".join(m.bin_words),
            *ssl.all_texts(),
        ]

    def plan(stage):
        paths, load = [it.image for it in data.items], lambda path: load_image(path, data.preprocessing)
        if stage == "align":
            specs, build = align_specs(paths, load, config, config.align_per_image)
            return RecipeStage(specs, build, "aligner", lambda module, samples: module(samples))
        specs, build = specs_for(stage, config, data)
        if stage == "instruct" and config.align_replay:
            specs, build = with_align_replay(stage, config, paths, load, specs, build)
        return RecipeStage(specs, build, "llm" if stage == "lm" else "aligner+llm", weighted_loss(config))

    loss = f"{config.description_weight} x LM(descriptions) + {config.score_weight} x (LM(score sentence without level) + KL)"
    network, provenance = run_recipe(
        config,
        output,
        list(stages or config.stages),
        STAGES,
        texts,
        plan,
        {"sources": data.sources, "skipped": data.skipped},
        on_step,
        on_epoch and (lambda stage, epoch, net: on_epoch(stage, epoch, ArtQuant(net))),
        {"loss": loss},
    )
    model = ArtQuant(network)
    model.checkpoint = Path(output)
    write_provenance(output, provenance, model)
    return model, provenance
