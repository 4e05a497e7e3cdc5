"""The LAION aesthetic predictor: a small head on CLIP's L2-normalised image embedding.

Two heads exist. The first LAION predictor is one linear layer (state dict `weight`, `bias`). The
"improved aesthetic predictor" (christophschuhmann/improved-aesthetic-predictor, e.g.
`sac+logos+ava1-l14-linearMSE.pth`, trained on ViT-L/14 embeddings) is an MLP with no activations:

    layers.0 Linear(dim, 1024), Dropout(0.2), layers.2 Linear(1024, 128), Dropout(0.2),
    layers.4 Linear(128, 64), Dropout(0.1), layers.6 Linear(64, 16), layers.7 Linear(16, 1)

The ReLU MLP (`ava+logos-l14-reluMSE.pth`, avaclipmlp_inf_wds-relu.py in the same repository) has the same
sizes with a ReLU after each of the first four linear layers, so its keys are layers.{0,3,6,9,11}:

    layers.0 Linear(dim, 1024), ReLU, Dropout(0.2), layers.3 Linear(1024, 128), ReLU, Dropout(0.2),
    layers.6 Linear(128, 64), ReLU, Dropout(0.1), layers.9 Linear(64, 16), ReLU, layers.11 Linear(16, 1)

The head kind (linear, mlp, relu-mlp) is read from the state-dict keys unless `head` names it. As in the original code the
embedding is the projected image embedding (OpenAI CLIP's encode_image), divided by its L2 norm, and
the head runs in float32. The original uses OpenAI's `clip` package; here the same weights come from a
Hugging Face CLIP folder, whose processor resizes and crops the same way (bicubic, shortest edge,
centre crop) but is not bit-identical.

Scores are on the predictor's own scale, nominally 1-10 (AVA's, and it is not clipped). A request
with another score range gets the linear map of [1, 10] onto it: lo + (s − 1)(hi − lo)/9.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from aesbench.adapter import Model, Request, register
from aesbench.provenance import sha256_file
from aesbench.baselines.clip_iqa import LocalClip
from aesbench.errors import AesbenchError, first_line
from aesbench.options import parse_bool
from aesbench.weights import optional_import

NATIVE_RANGE = (1.0, 10.0)
HEADS = ("auto", "mlp", "relu-mlp", "linear")
MLP_KEYS = {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}
RELU_MLP_KEYS = {f"layers.{i}.{p}" for i in (0, 3, 6, 9, 11) for p in ("weight", "bias")}
LINEAR_KEYS = {"weight", "bias"}


def read_state_dict(path: str | Path, model: str) -> dict:
    """Tensors from a .safetensors file, or from a .pth state dict without running pickled code."""
    torch = optional_import("torch", "clip", model)
    path = Path(path).expanduser()
    if not path.is_file():
        raise AesbenchError(
            f"model {model!r}: head file {path} not found; point head_path at the predictor's .pth or .safetensors"
        )
    try:
        if path.suffix == ".safetensors":
            return optional_import("safetensors.torch", "clip", model).load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file can fail in many ways; all mean the same to the user
        raise AesbenchError(f"model {model!r}: cannot read head file {path}: {first_line(e)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AesbenchError(f"model {model!r}: head file {path} does not hold a state dict of tensors")
    return state


def head_kind(state: dict, requested: str, path: Path, model: str) -> str:
    keys = set(state)
    found = {frozenset(MLP_KEYS): "mlp", frozenset(RELU_MLP_KEYS): "relu-mlp", frozenset(LINEAR_KEYS): "linear"}.get(
        frozenset(keys)
    )
    if found is None:
        raise AesbenchError(
            f"model {model!r}: {path} holds neither an MLP head (layers.0 … layers.7, or the ReLU one's"
            f" layers.0 … layers.11) nor a linear head (weight, bias); its keys start {sorted(keys)[:4]}"
        )
    if requested not in ("auto", found):
        raise AesbenchError(f"model {model!r}: head={requested!r} but {path} holds the {found} head")
    return found


def build_head(kind: str, state: dict, dim: int, path: Path, model: str):
    """The original module layout, so the checkpoint's keys load strictly."""
    import torch.nn as nn

    first = state["weight" if kind == "linear" else "layers.0.weight"]
    if first.ndim != 2 or first.shape[1] != dim:
        raise AesbenchError(
            f"model {model!r}: head {path} takes {first.shape[-1]}-dim embeddings but the CLIP gives {dim};"
            " use the CLIP the head was trained on (ViT-L/14: 768)"
        )
    if kind == "linear":
        head = nn.Linear(dim, 1)
    elif kind == "relu-mlp":  # avaclipmlp_inf_wds-relu.py's MLP
        head = nn.Sequential(
            nn.Linear(dim, 1024),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.ReLU(),
            nn.Linear(16, 1),
        )
        state = {k.removeprefix("layers."): v for k, v in state.items()}
    else:
        head = nn.Sequential(
            nn.Linear(dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )
        state = {k.removeprefix("layers."): v for k, v in state.items()}
    try:
        head.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), first_line(e))
        raise AesbenchError(f"model {model!r}: head {path} does not fit the {kind} layout: {detail}") from None
    return head.eval()


@register("laion-aesthetic")
class LaionAesthetic(Model):
    """CLIP image embedding → linear, MLP or ReLU-MLP head, on the predictor's 1-10 scale."""

    capabilities = frozenset({"score"})

    def __init__(
        self,
        clip_path: str,
        head_path: str,
        head: str = "auto",
        dtype: str = "float32",
        device: str | None = None,
        online: bool = False,
    ):
        if head not in HEADS:
            raise AesbenchError(f"model {self.name!r}: head {head!r} is not one of {', '.join(HEADS)}")
        online = parse_bool(online, "online")
        self.options = {
            "clip_path": str(clip_path),
            "head_path": str(head_path),
            "head": head,
            "dtype": dtype,
            "device": device,
            "online": online,
        }
        self.head_path = Path(head_path).expanduser()
        state = read_state_dict(self.head_path, self.name)  # before CLIP: a wrong head path fails fast
        self.head_kind = head_kind(state, head, self.head_path, self.name)
        self.clip = LocalClip(clip_path, self.name, text=False, dtype=dtype, device=device, online=online)
        self.head = build_head(self.head_kind, state, self.clip.embedding_dim, self.head_path, self.name).to(
            self.clip.device
        )
        self.head_sha256 = sha256_file(self.head_path)

    def config(self) -> dict:
        return dict(self.options)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "config": self.config(),
            "device": self.clip.device,
            "clip": self.clip.describe(),
            "head": {"path": str(self.head_path), "sha256": self.head_sha256, "kind": self.head_kind},
            "native_range": list(NATIVE_RANGE),
        }

    def use_feature_cache(self, root) -> bool:
        self.feature_cache = self.clip.use_feature_cache(root)
        return True

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        import torch

        with torch.inference_mode():
            raw = self.head(self.clip.embed_images(images)).squeeze(-1).tolist()
        lo, hi = request.score_range
        if (lo, hi) == NATIVE_RANGE:
            return [{"score": s} for s in raw]
        n_lo, n_hi = NATIVE_RANGE
        return [{"score": lo + (s - n_lo) * (hi - lo) / (n_hi - n_lo)} for s in raw]
