"""What CALM's and ArtQuant's training recipes share: reading a recipe YAML, running stages into a
checkpoint folder with resume, choosing the parameters a stage trains, and the provenance record.

A recipe is a dataclass with `model` (a VLMConfig), `stages`, `schedules` (stage -> Schedule), `seed`,
`mixed_precision`, `save_every` and `max_minutes`. A stage's plan is a RecipeStage (specs, build,
part, loss_fn): the samples, how to build one, which parameters it trains ("llm", "aligner" or
"aligner+llm") and its objective; or a SkipStage saying why the stage does not run. Each finished stage saves the checkpoint folder and is listed in stages_done.json,
so a rerun skips it; an unfinished stage resumes from its saved state (aesbench/training.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .. import distributed
from ..datasets import read_dataset
from ..degradations import item_rng
from ..errors import AesbenchError
from ..pipeline import decode
from ..provenance import build as build_provenance
from ..store import refuse_foreign_folder, run_lock, write_text
from ..task import Task, load_task
from ..training import LOG_FILE, PLOT_FILE, Schedule, StagePlan, plot_losses, run_stage
from ..weights import optional_import
from . import ssl
from .diagnostics import grounding
from .text import train_tokenizer
from .vlm import ALIGN, CONFIG_FILE, VLMNetwork, build_network, load_network, save_network, text_sample

PROGRESS_FILE, PROVENANCE_FILE = "stages_done.json", "training.json"


@dataclasses.dataclass
class RecipeStage:
    """A stage as a recipe plans it: its samples, build(epoch, index) -> one, the part it trains and its loss."""

    specs: list
    build: Callable
    part: str
    loss_fn: Callable


@dataclasses.dataclass
class SkipStage:
    """A stage that does not run in this config, and why."""

    reason: str


GROUNDING_SAMPLES = 24
CONFIG_DIR = Path(__file__).parent / "configs"


def load_recipe(cls, path: str | Path | None, make_model, schedules: Callable[[], dict]):
    """A recipe from YAML (model: over the model preset, train: over the recipe's defaults); a shipped
    config can be named without its path (e.g. calm-paper)."""
    if path is None:
        return cls()
    shipped = CONFIG_DIR / f"{path}.yaml"
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
    merged = schedules()
    for stage, values in (train.pop("schedules", None) or {}).items():
        if stage not in merged:
            raise AesbenchError(f"{path}: unknown stage {stage!r} in schedules (stages: {', '.join(merged)})")
        merged[stage] = dataclasses.replace(merged[stage], **values)
    return cls(model=make_model(**dict(data.get("model") or {})), schedules=merged, **train)


def train_split(name: str, family: str, data_root) -> tuple[Task, object]:
    """A task reading its training split (AVA: every id not in the test list; CSV/APDD: the train rows; PIAA: the other workers)."""
    task = load_task(name)
    if task.family != family:
        raise AesbenchError(f"training needs a {family} task here; {task.name!r} is a {task.family} task")
    task = dataclasses.replace(task, dataset={**task.dataset, "split": "train"})
    task.resolve_root(data_root)
    return task, read_dataset(task)


def readable(items, task: Task, skipped: list, what: str) -> list:
    """Items whose image decodes; the others are recorded skips."""
    ok, _, failed = decode(items, task)
    skipped += [{"id": item.id, "source": what, "reason": reason} for item, reason in failed]
    return ok


def align_specs(paths: list, load: Callable, config, per_image: int) -> tuple[list, Callable]:
    """Alignment samples (VLMNetwork.align_loss): per_image per image and epoch, each image augmented
    afresh from config.aug_groups (or left clean, a config.align_clean share of them), with the words
    that describe it as its target. They stand in for the image-text pre-training that gives the
    papers' aligners a start (LLaVA's 558K pairs for CALM's FC, mPLUG-Owl2's abstractor for
    ArtQuant), which a small config does not have."""
    specs = [i for i in range(len(paths)) for _ in range(per_image)]

    def build(epoch, index, stage="align"):
        rng = item_rng(config.seed, f"{stage}/{epoch}/align/{index}")
        kinds = [] if rng.random() < config.align_clean else ssl.draw_kinds(rng, tuple(config.aug_groups))
        words = ssl.describe(kinds, rng)
        answer = str(rng.choice(ssl.SINGLE_FORMS)).format(words)
        sample = text_sample([ssl.augment(load(paths[specs[index]]), kinds, rng)], ssl.SINGLE_PROMPT, answer)
        sample.target = (ALIGN, words)
        return sample

    return specs, build


def with_align_replay(
    stage: str, config, paths: list, load: Callable, specs: list, build: Callable
) -> tuple[list, Callable]:
    """A stage's samples plus config.align_replay alignment samples per image and epoch, so that
    training through the LLM keeps what the alignment stage gave each aligner part."""
    extra, build_aligned = align_specs(paths, load, config, config.align_replay)
    n = len(specs)

    def build_mixed(epoch, index):
        return build(epoch, index) if index < n else build_aligned(epoch, index - n, stage)

    return specs + [("align", i) for i in extra], build_mixed


def trainable(network: VLMNetwork, part: str, schedule: Schedule) -> list[dict]:
    """Freeze everything but `part` and return its optimiser groups: the aligner at schedule.aligner_lr
    (when set), the LLM as config.llm_tuning says (in instruct stages: LoRA adapters only, every weight,
    or nothing)."""
    network.requires_grad_(False)
    groups = []
    if part in ("aligner", "aligner+llm"):
        network.aligner.requires_grad_(True)
        groups.append({"params": list(network.aligner.parameters()), "lr": schedule.aligner_lr or schedule.lr})
    tuning = "full" if part == "llm" else network.config.llm_tuning if part == "aligner+llm" else "frozen"
    if tuning != "frozen":
        for name, p in network.llm.named_parameters():
            p.requires_grad_("lora_" in name if tuning == "lora" else True)
        groups.append({"params": [p for p in network.llm.parameters() if p.requires_grad], "lr": schedule.lr})
    return groups


def with_lora(network: VLMNetwork) -> None:
    peft = optional_import("peft", "lora", network.config.model_type)
    if not hasattr(network.llm, "peft_config"):
        rank = network.config.lora_rank
        lora = peft.LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            lora_dropout=0.0,
            target_modules=list(network.config.lora_targets),
            task_type="CAUSAL_LM",
        )
        network.llm = peft.get_peft_model(network.llm, lora)


def run_recipe(
    config,
    output: str | Path,
    stages: list[str],
    all_stages: tuple[str, ...],
    texts: Callable[[], list[str]],
    plan: Callable,
    data_record: dict,
    on_step: Callable | None = None,
    on_epoch: Callable | None = None,
    extra: dict | None = None,
    stage_check: Callable | None = None,
) -> tuple[VLMNetwork, dict]:
    """Run `stages` of a recipe into `output` (resuming what is there); return the network and its provenance.

    texts() gives the small config's tokenizer its training texts; plan(stage) gives the stage's
    RecipeStage, or a SkipStage saying why it is skipped. After each finished
    stage its summary records the grounding check on samples spread over the stage, and whatever
    stage_check(stage, network) returns (a dict).
    """
    started = time.time()
    output = Path(output)
    bad = [s for s in stages if s not in all_stages]
    if bad:
        raise AesbenchError(f"unknown stage {bad[0]!r}; stages: {', '.join(all_stages)}")
    refuse_foreign_folder(output, PROGRESS_FILE, "a stopped training of this recipe")
    output.mkdir(parents=True, exist_ok=True)
    with run_lock(output) if distributed.rank() == 0 else contextlib.nullcontext():  # one training per folder at a time
        return _run_stages(
            config, output, stages, texts, plan, data_record, on_step, on_epoch, extra, stage_check, started
        )


def _run_stages(
    config,
    output: Path,
    stages: list[str],
    texts: Callable,
    plan: Callable,
    data_record: dict,
    on_step,
    on_epoch,
    extra,
    stage_check,
    started: float,
) -> tuple[VLMNetwork, dict]:
    torch = optional_import("torch", "train", config.model.model_type)
    progress_file = output / PROGRESS_FILE
    config_dict = json.loads(json.dumps(asdict(config), default=str))
    recipe = {k: v for k, v in config_dict.items() if k not in ("max_minutes", "stages")}  # these may change on resume
    progress = _read_progress(progress_file)
    if progress["config"] not in (None, recipe):
        raise AesbenchError(
            f"{output} was trained with another config; resume with the same config or choose another --output"
        )
    if (
        progress["config"] is None and distributed.rank() == 0
    ):  # from now on the folder is this recipe's, even if stopped in its first stage
        progress["config"] = recipe
        write_text(progress_file, json.dumps(progress, indent=2) + "\n")
    torch.manual_seed(config.seed)
    if (output / CONFIG_FILE).is_file():
        network = load_network(output, config.model.model_type)
    else:
        new_small = config.model.llm == "small" and not config.model.llm_tokenizer
        network = build_network(
            config.model, train_tokenizer(texts(), owner=config.model.model_type) if new_small else None
        )
    summaries = progress["summaries"]
    deadline = time.monotonic() + 60 * config.max_minutes if config.max_minutes else None
    for stage in stages:
        if stage in progress["done"]:
            continue
        if stage == "lm" and (config.model.llm != "small" or config.model.llm_config is not None):
            summaries.append(
                {"stage": "lm", "skipped": "the LLM is pretrained; lm is for the small config's new decoder"}
            )
            continue
        stage_plan = plan(stage)
        if isinstance(stage_plan, SkipStage):
            summaries.append({"stage": stage, "skipped": stage_plan.reason})
            continue
        specs, build = stage_plan.specs, stage_plan.build
        if stage_plan.part == "aligner+llm" and config.model.llm_tuning == "lora":
            # fresh adapters drawn from (seed, stage) alone: a process resuming at this stage draws the same
            torch.manual_seed(int(item_rng(config.seed, f"{stage}/lora").integers(2**62)))
            with_lora(network)
        schedule = config.schedules[stage]
        summary = run_stage(
            StagePlan(
                stage,
                network,
                trainable(network, stage_plan.part, schedule),
                len(specs),
                build,
                stage_plan.loss_fn,
                schedule,
                config.seed,
                config.mixed_precision,
                config.save_every,
            ),
            output,
            on_step,
            deadline,
            on_epoch and (lambda stage, epoch: on_epoch(stage, epoch, network)),
        )
        network.requires_grad_(False)
        if summary["stopped"] == "finished" and hasattr(network.llm, "merge_and_unload"):
            network.llm = network.llm.merge_and_unload()  # as saved: the next stage's adapters start afresh on it
        main = distributed.rank() == 0  # under accelerate launch every process holds the same weights: one writes
        if main and summary["stopped"] == "finished":  # does the stage's model read the image? (diagnostics.py)
            spread = sorted({int(i) for i in np.linspace(0, len(specs) - 1, min(GROUNDING_SAMPLES, len(specs)))})
            summary["grounding"] = grounding(network, [build(0, i) for i in spread])
            if stage_check:
                summary.update(stage_check(stage, network))
        summaries.append(summary)
        if main:
            save_network(network, output)
        if summary["stopped"] != "finished":
            break
        progress = {"config": recipe, "done": progress["done"] + [stage], "summaries": summaries}
        if main:
            write_text(progress_file, json.dumps(progress, indent=2) + "\n")
    if distributed.rank() == 0 and (output / LOG_FILE).is_file():
        plot_losses(output / LOG_FILE, output / PLOT_FILE)
    ended = time.time()
    provenance = build_provenance(
        started,
        ended,
        ("torch", "transformers", "accelerate"),
        {
            "device": str(network.device),
            "config": config_dict,
            **(extra or {}),
            "data": data_record["sources"],
            "skipped": data_record["skipped"],
            "stages": summaries,
            "stages_done": progress["done"],
            "seed": config.seed,
        },
    )
    return network, provenance


def _read_progress(path: Path) -> dict:
    """stages_done.json ({"config", "done", "summaries"}; a fresh one where there is none), or one line
    saying what to do."""
    if not path.is_file():
        return {"config": None, "done": [], "summaries": []}
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        progress = None
    if not (
        isinstance(progress, dict)
        and "config" in progress
        and isinstance(progress.get("done"), list)
        and isinstance(progress.get("summaries"), list)
    ):
        raise AesbenchError(
            f"{path} is damaged (empty, truncated or not a stages record), so which stages finished is unknown;"
            f" delete {path.parent} to train again from the start, or choose another --output"
        )
    return progress


def write_provenance(output: str | Path, provenance: dict, model) -> None:
    provenance["model"] = model.describe()
    if distributed.rank() == 0:  # whole or not at all (store.write_text)
        write_text(Path(output) / PROVENANCE_FILE, json.dumps(provenance, indent=2, default=str) + "\n")
