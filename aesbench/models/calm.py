"""CALM (AAAI 2025): a vision encoder, the Multi-scale Feature Alignment Module (MFAM) and an LLM.

The network is aesbench/models/vlm.py (shared with ArtQuant), whose aligner is the MFAM below;
its defaults are CALM's small config. Training lives in aesbench/models/calm_train.py.

    image ──encoder (frozen)──┬─ layer L_thematic ── FC ─────────────── thematic tokens
                              ├─ layer l_1 ── Q-Former (n queries) ──── low-level tokens
                              ├─ layer l_2 ── Q-Former ──────────────── middle-level tokens
                              └─ layer l_3 ── Q-Former ──────────────── high-level tokens
    [all tokens] + "USER: {instruction} ASSISTANT: {answer}" ── LLM

The paper's configuration (configs/calm-paper.yaml): CLIP ViT-L/14 at 224 px, Q-Formers of 2 layers
with 32 queries on layers 4, 12 and 24, the FC on layer 24, Vicuna-7B. The small default: EfficientNet-
Lite0 with its real ImageNet weights, Q-Formers on blocks 5, 11 and the head convolution (17), the FC
on 17 pooled to a 3x3 grid, and a small Llama-architecture decoder with a word-level tokenizer
trained on the training texts.

Scoring: after "The aesthetics of the image is" the logits of excellent/good/fair/poor/bad are
softmaxed and weighted 1, .75, .5, .25, 0 (Q-Align's readout). PIAA: personalize=finetune (CALM, a
copy of the MFAM tuned on the support set) or in_context (CALM-In, five support images with their
level words in the prompt).
"""

from __future__ import annotations

from ..adapter import register
from .vlm import AlignedVLM


@register("calm")
class Calm(AlignedVLM):
    """CALM: encoder + multi-scale alignment + LLM; train with `aesbench train calm`, then --model CHECKPOINT."""
