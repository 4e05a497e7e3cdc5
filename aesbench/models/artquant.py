"""ArtQuant (AAAI 2026, arXiv 2512.23413): artistic-image assessment by a VLM that jointly writes a
three-level description (perception, cognition, emotion) and a score sentence.

The network is aesbench/models/vlm.py, the same code as CALM's: a frozen vision encoder, an aligner
that is one Q-Former on the encoder's last layer (the visual abstractor of ArtQuant's mPLUG-Owl2
code base) and a causal LM. What differs is ArtQuant's readout and training:

    readout  "How would you rate the quality of this painting?" then "The quality of the painting is";
             softmax over excellent/good/fair/poor/bad, weights 10, 7.5, 5, 3.5, 1 (configurable).
    labels   the public code's soft labels: a Gaussian over the five level anchors with mean and
             width fitted so that its expectation is the score on 0-10 (readout.fit_soft_label).
    loss     1.0 x LM loss on the descriptions
             + 0.05 x (LM loss on the score answer without its level token
                       + KL(label || full-vocabulary softmax at the level position))
             (weights in the recipe: description_weight, score_weight; readout.full_vocab_kl).

Capabilities: score, comment (the three-level description, generated), suggest (generation from the
task's prompt). Training: aesbench/models/artquant_train.py (`aesbench train artquant`).
"""

from __future__ import annotations

from ..adapter import register
from ..errors import AesbenchError
from .readout import ARTQUANT_WEIGHTS, LEVEL_WORDS
from .vlm import AlignedVLM, VLMConfig

SCORE_PROMPT = "How would you rate the quality of this painting?"
SCORE_PREFIX = "The quality of the painting is"
DESCRIBE_PROMPT = "Describe this painting's perception, cognition and emotion."

# ---------------------------------------------------------------------------------------------
# The public code (Henglin-Liu/ArtQuant), as data: what its training sees

IMAGE_TOKEN = "<|image|>"
# preprocess/preprocess.ipynb, `ask_prompts`: one drawn per image (np.random.randint, unseeded) when
# the score JSON is written, then fixed for every epoch. The strings put the image after the
# question, but training moves it first: src/datasets/utils.py preprocess_multimodal rewrites each
# to IMAGE_TOKEN + "\n" + question. Inference (src/evaluate/iqa_eval.py) keeps it after the question.
ASK_PROMPTS = (
    "Rate the quality of this painting.\n<|image|>",
    "How would you rate the quality of this painting?\n<|image|>",
    "How would you judge the quality of this painting?\n<|image|>",
    "How do you assess the quality of this painting?\n<|image|>",
    "Could you evaluate the quality of this painting?\n<|image|>",
    "What is your quality rating for this painting?\n<|image|>",
    "Can you rate the quality of this painting?\n<|image|>",
    "What do you think about the quality of this painting?\n<|image|>",
    "Can you judge the quality of this painting?\n<|image|>",
    "What's your opinion on the quality of this painting?\n<|image|>",
)
SCORE_PROMPTS = tuple(p.replace(IMAGE_TOKEN, "").strip() for p in ASK_PROMPTS)  # the questions alone

# The conversation template of training (train.sh --version v1: conv_vicuna_v1, SeparatorStyle.TWO)
# and of inference (iqa_eval.py: conv_mplug_owl2, TWO_NO_SYS: no system prompt).
TRAIN_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# src/model/modeling_mplug_owl2.py forward(input_type="single") with train.sh's flags:
#   loss = weight_desp * LM(descriptions) + weight_next_token * (LM(score answer without its level token) + weight_softkl * KL)
# so the KL's effective weight is 0.05 x 1.0, the same as the score sentence's LM loss.
ORIGINAL_LOSS_WEIGHTS = {"weight_desp": 1.0, "weight_next_token": 0.05, "weight_softkl": 1.0}

# train.sh and src/train/train_mem.py (defaults where train.sh sets nothing).
ORIGINAL_TRAINING = {
    "llm": "mPLUG-Owl2 (LLaMA-2-7B)",
    "vision_model": "trained (--freeze_vision_model False)",
    "visual_abstractor": "trained (--tune_visual_abstractor True)",
    "lora": {
        "r": 128,
        "alpha": 256,
        "dropout": 0.05,
        "bias": "none",
        "targets": "every LLM layer's q_proj and v_proj.multiway.1 (the image-token branch of the modality-adaptive v_proj)",
    },
    "frozen": "the LLM's own weights, token embeddings and lm_head",
    "epochs": 3,
    "learning_rate": 2e-5,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "per_device_batch": 4,
    "gradient_accumulation": 4,
    "precision": "bf16",
    "image_aspect_ratio": "pad",
}


def level_word(score: float, anchors=ARTQUANT_WEIGHTS, words=LEVEL_WORDS) -> str:
    """The hard level word of the training answer (the notebook's get_level): the word of the
    smallest anchor at or above the score (≤ 1 bad, ≤ 3.5 poor, ≤ 5 fair, ≤ 7.5 good, else excellent),
    not the nearest anchor. Anchors and words in the readout's order, highest anchor first."""
    for anchor, word in sorted(zip(anchors, words))[:-1]:
        if score <= anchor:
            return word
    return max(zip(anchors, words))[1]


def original_scale(mos: float, score_range: tuple[float, float]) -> float:
    """A MOS on the scale the public code fits soft labels on (fit_soft_label's `score`): APDD's
    0–100 total comes divided by 10, as ArtCLIP's train.csv (the notebook's input) holds it; scores on
    0–10 or 1–10 (BAID, ArtiMuse-10K, AVA) pass through. Other ranges have no rule in the original
    (use LevelReadout.to_weights there)."""
    lo, hi = (float(v) for v in score_range)
    if (lo, hi) == (0.0, 100.0):
        return float(mos) / 10.0
    if lo in (0.0, 1.0) and hi == 10.0:
        return float(mos)
    raise AesbenchError(f"the public ArtQuant code fits scores on 0–10 only; no rule for the range {score_range}")


def score_answer(level: str, prefix: str = SCORE_PREFIX) -> str:
    """The score sample's whole answer, as the notebook writes it: "The quality of the painting is good."
    (the tokenizer's EOS follows it in training, and its LM loss covers every token but the level word's)."""
    return f"{prefix} {level}."


def original_training_text(question: str, answer: str) -> str:
    """The text the public code tokenizes for one training sample (image token and EOS included):
    system prompt, "USER: <|image|>\\n" + question, " ASSISTANT: " + answer + "</s>"."""
    question = IMAGE_TOKEN + "\n" + question.replace(IMAGE_TOKEN, "").strip()
    return f"{TRAIN_SYSTEM_PROMPT} USER: {question} ASSISTANT: {answer}</s>"


def artquant_config(**changes) -> VLMConfig:
    """ArtQuant's small default: the abstractor (one Q-Former, 16 queries) on EfficientNet-Lite0's last layer."""
    preset = dict(
        model_type="artquant",
        qformer_layers=[17],
        thematic_layer=None,
        queries=16,
        score_prompt=SCORE_PROMPT,
        answer_prefix=SCORE_PREFIX,
        level_weights=list(ARTQUANT_WEIGHTS),
        comment_prompt=DESCRIBE_PROMPT,
        max_new_tokens=96,
        readout_kl="vocab",
        lora_targets=["q_proj", "v_proj"],
    )
    return VLMConfig.from_dict({**preset, **changes})


@register("artquant")
class ArtQuant(AlignedVLM):
    """ArtQuant: joint three-level description and level-readout score; train with `aesbench train artquant`."""

    capabilities = frozenset({"score", "comment", "suggest"})
