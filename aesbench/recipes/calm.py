"""`aesbench train calm`, and `--model calm` listed without importing torch."""

from ..adapter import MODELS
from . import staged_recipe

MODELS.lazy(
    "calm",
    "aesbench.models.calm",
    capabilities=frozenset({"score", "distribution", "comment", "suggest", "personalize"}),
    doc="CALM: encoder + multi-scale alignment + LLM; train with `aesbench train calm`, then --model CHECKPOINT.",
)

staged_recipe(
    "calm",
    "aesbench.models.calm_train",
    "CalmTrainConfig",
    "train_calm",
    "the small config on the tiny tasks",
    "lm, align, pretrain, comment, score",
    "CALM: SSL pre-training, then instruct tuning (see aesbench/models/calm_train.py).",
)
