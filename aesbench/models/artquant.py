"""ArtQuant (AAAI 2026, arXiv 2512.23413): artistic-image assessment by a VLM that jointly writes a
three-level description (perception, cognition, emotion) and a score sentence.

The network is aesbench/models/vlm.py, the same code as CALM's: a frozen vision encoder, an aligner
that is one Q-Former on the encoder's last layer (the visual abstractor of ArtQuant's mPLUG-Owl2
code base) and a causal LM. What differs is ArtQuant's readout and training:

    readout  "How would you rate the quality of this painting?" then "The quality of the painting is";
             softmax over excellent/good/fair/poor/bad, weights 10, 7.5, 5, 3.5, 1 (configurable).
    labels   a Gaussian over the five level anchors whose expectation equals the MOS (readout.py).
    loss     1.0 x LM loss on the descriptions
             + 0.05 x (LM loss on the score sentence without its level token + KL(label || levels))
             (weights in the recipe: description_weight, score_weight).

Capabilities: score, comment (the three-level description, generated), suggest (generation from the
task's prompt). Training: aesbench/models/artquant_train.py (`aesbench train artquant`).
"""
from __future__ import annotations

from ..adapter import register
from .readout import ARTQUANT_WEIGHTS
from .vlm import AlignedVLM, VLMConfig

SCORE_PROMPT = "How would you rate the quality of this painting?"
SCORE_PREFIX = "The quality of the painting is"
DESCRIBE_PROMPT = "Describe this painting's perception, cognition and emotion."


def artquant_config(**changes) -> VLMConfig:
    """ArtQuant's small default: the abstractor (one Q-Former, 16 queries) on EfficientNet-Lite0's last layer."""
    preset = dict(model_type="artquant", qformer_layers=[17], thematic_layer=None, queries=16, score_prompt=SCORE_PROMPT,
                  answer_prefix=SCORE_PREFIX, level_weights=list(ARTQUANT_WEIGHTS), comment_prompt=DESCRIBE_PROMPT,
                  max_new_tokens=96)
    return VLMConfig.from_dict({**preset, **changes})


@register("artquant")
class ArtQuant(AlignedVLM):
    """ArtQuant: joint three-level description and level-readout score; train with `aesbench train artquant`."""

    capabilities = frozenset({"score", "comment", "suggest"})
