"""CLIP-IQA: zero-shot quality from a CLIP checkpoint and antonym prompts (Wang et al., AAAI 2023).

For each (positive, negative) prompt pair the image's cosine similarities to the two prompts, times
the checkpoint's own logit scale, go through a softmax; the probability of the positive prompt,
averaged over pairs, is mapped linearly onto the request's score range:

    p     = mean over pairs of softmax(s · [cos(img, pos), cos(img, neg)])[0]     s = exp(logit_scale)
    score = lo + (hi − lo) · p

Unlike the paper's code (a ResNet-50 CLIP without positional embeddings, fed the image at its own
size), any local CLIP checkpoint is used as it is, with its processor's resize and centre crop.

`LocalClip` (a CLIP folder loaded offline, embedding images and texts the way OpenAI's CLIP does)
lives here and is shared with the LAION aesthetic predictor.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from aesbench.adapter import Model, Request, register
from aesbench.errors import AesbenchError, first_line
from aesbench.features import FeatureCache, module_cache
from aesbench.options import parse_bool
from aesbench.weights import local_only, optional_import, require_files, weight_hashes

DTYPES = ("float32", "float16", "bfloat16")
DEFAULT_PROMPTS = [["Good photo.", "Bad photo."]]
PREPROCESSING_KEYS = (
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
)


class LocalClip:
    """A CLIP checkpoint in Hugging Face layout, loaded without the network unless `online`.

    `text=False` loads only the vision tower and its projection (CLIPVisionModelWithProjection reads
    the same weight names from a full CLIP checkpoint), which is all an embedding head needs. The
    image processor is the PIL one where transformers has both, so preprocessing does not change
    with whether torchvision happens to be installed, and stays close to OpenAI's PIL pipeline.
    Embeddings are computed in `dtype` and returned in float32, L2-normalised.
    """

    def __init__(
        self,
        path: str | Path,
        model: str,
        text: bool,
        dtype: str = "float32",
        device: str | None = None,
        online: bool = False,
    ):
        torch = optional_import("torch", "clip", model)
        transformers = optional_import("transformers", "clip", model)
        if dtype not in DTYPES:
            raise AesbenchError(f"model {model!r}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        online = parse_bool(online, "online")
        self.hub_id = online and not Path(path).expanduser().is_dir()  # online=True may name a hub repository
        if not self.hub_id:
            path = require_files(
                path,
                ["config.json", "preprocessor_config.json"],
                model,
                "a CLIP checkpoint folder (config.json, weights, preprocessor_config.json)",
            )
        self.path, self.model_name, self.dtype = str(path), model, dtype
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        offline = local_only(online)
        processor_class = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        try:
            self.model = self._load_model(transformers, text, offline)
            self.processor = processor_class.from_pretrained(self.path, local_files_only=offline)
            self.tokenizer = (
                transformers.AutoTokenizer.from_pretrained(self.path, local_files_only=offline) if text else None
            )
        except (OSError, ValueError, RuntimeError) as e:
            raise AesbenchError(f"model {model!r}: cannot load CLIP from {self.path}: {first_line(e)}") from None
        self.model.to(self.device, getattr(torch, dtype)).eval()  # cast after loading: any transformers version
        self.embedding_dim = self.model.visual_projection.out_features
        self._hashes = None
        self.feature_cache = None

    def use_feature_cache(self, root) -> FeatureCache:
        """Image embeddings on disk, shared by every head on this CLIP (LAION's heads, CLIP-IQA's prompts)."""
        import torch

        tower = torch.nn.ModuleDict(
            {"vision_model": self.model.vision_model, "visual_projection": self.model.visual_projection}
        )
        self.feature_cache = module_cache(
            root,
            tower,
            {
                "backbone": "CLIP vision tower + projection",
                "preprocessing": self.describe()["preprocessing"],
                "output": "image embedding, L2-normalised, float32",
            },
        )
        return self.feature_cache

    def _load_model(self, transformers, text: bool, offline: bool):
        """The model, refusing any weight the checkpoint lacks: transformers would only warn and leave it random."""
        model_class, config = transformers.CLIPModel, None
        if not text:
            model_class = transformers.CLIPVisionModelWithProjection
            config = transformers.AutoConfig.from_pretrained(self.path, local_files_only=offline)
            if isinstance(config, transformers.CLIPConfig):  # its vision part alone forgets the projection size
                config.vision_config.projection_dim = config.projection_dim
                config = config.vision_config
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # a vision-only load skips the text weights by design
        try:
            model, info = model_class.from_pretrained(
                self.path, config=config, local_files_only=offline, output_loading_info=True
            )
        finally:
            transformers.logging.set_verbosity(verbosity)
        missing = sorted(info["missing_keys"])
        if missing:
            raise AesbenchError(
                f"model {self.model_name!r}: {self.path} lacks {len(missing)} CLIP weight(s) (first: {missing[0]});"
                " it is not a complete CLIP checkpoint"
            )
        return model

    def embed_images(self, images: list[Image.Image]):
        import torch

        if self.feature_cache is not None:
            return torch.from_numpy(self.feature_cache.get(images, lambda batch: self._embed(batch).cpu().numpy())).to(
                self.device
            )
        return self._embed(images)

    def _embed(self, images: list[Image.Image]):
        import torch

        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            pooled = self.model.vision_model(pixel_values=pixels.to(self.device, self.model.dtype)).pooler_output
            return torch.nn.functional.normalize(self.model.visual_projection(pooled).float(), dim=-1)

    def embed_texts(self, texts: list[str]):
        import torch

        limit = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt")
        if tokens["input_ids"].shape[1] > limit:
            raise AesbenchError(
                f"model {self.model_name!r}: a prompt is longer than the {limit} tokens CLIP's text tower takes"
            )
        with torch.inference_mode():  # padding follows the end token, which the causal mask keeps from seeing it
            pooled = self.model.text_model(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            ).pooler_output
            return torch.nn.functional.normalize(self.model.text_projection(pooled).float(), dim=-1)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().float().exp())

    def describe(self) -> dict:
        """Where the weights came from, their hashes and exactly what is done to an image."""
        if self._hashes is None:
            self._hashes = {} if self.hub_id else weight_hashes(self.path)
        settings = self.processor.to_dict()
        preprocessing = {
            "processor": type(self.processor).__name__,
            **{k: settings[k] for k in PREPROCESSING_KEYS if k in settings},
        }
        if "resample" in preprocessing:
            preprocessing["resample"] = Image.Resampling(preprocessing["resample"]).name.lower()
        described = {
            "path": self.path,
            "weights_sha256": self._hashes,
            "dtype": self.dtype,
            "image_size": self.model.vision_model.config.image_size,
            "embedding_dim": self.embedding_dim,
            "preprocessing": preprocessing,
        }
        if self.hub_id:
            described["note"] = "a hub repository fetched with online=True; its files were not hashed"
        return described


def prompt_pairs(prompts, model: str) -> list[list[str]]:
    """[[positive, negative], ...]; one bare pair is accepted too (`--model-arg prompts=[Good, Bad]`)."""
    if isinstance(prompts, list) and len(prompts) == 2 and all(isinstance(p, str) for p in prompts):
        prompts = [prompts]
    if (
        not isinstance(prompts, list)
        or not prompts
        or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and p for p in pair)
            for pair in prompts
        )
    ):
        raise AesbenchError(f"model {model!r}: prompts must be [positive, negative] pairs of texts, got {prompts!r}")
    return prompts


@register("clip-iqa")
class ClipIqa(Model):
    """P(positive prompt) from CLIP, averaged over antonym pairs, on the request's score range."""

    capabilities = frozenset({"score"})

    def __init__(
        self,
        path: str,
        prompts: list | None = None,
        dtype: str = "float32",
        device: str | None = None,
        online: bool = False,
    ):
        self.prompts = prompt_pairs(DEFAULT_PROMPTS if prompts is None else prompts, self.name)
        online = parse_bool(online, "online")
        self.options = {"path": str(path), "prompts": self.prompts, "dtype": dtype, "device": device, "online": online}
        self.clip = LocalClip(path, self.name, text=True, dtype=dtype, device=device, online=online)
        texts = [text for pair in self.prompts for text in pair]
        self.text_embeddings = self.clip.embed_texts(texts).reshape(len(self.prompts), 2, -1)  # once, not per batch

    def config(self) -> dict:
        return dict(self.options)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "config": self.config(),
            "device": self.clip.device,
            "clip": self.clip.describe(),
            "prompts": self.prompts,
            "logit_scale": self.clip.logit_scale,
        }

    def use_feature_cache(self, root) -> bool:
        self.feature_cache = self.clip.use_feature_cache(root)
        return True

    def score(self, images: list[Image.Image], request: Request) -> list[dict]:
        import torch

        similarity = torch.einsum("nd,pkd->npk", self.clip.embed_images(images), self.text_embeddings)
        p_positive = (self.clip.logit_scale * similarity).softmax(dim=-1)[..., 0].mean(dim=-1)
        lo, hi = request.score_range
        return [{"score": lo + (hi - lo) * float(p)} for p in p_positive]
