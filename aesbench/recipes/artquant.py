"""`aesbench train artquant`, and `--model artquant` listed without importing torch."""

from ..adapter import MODELS
from . import staged_recipe

MODELS.lazy(
    "artquant",
    "aesbench.models.artquant",
    capabilities=frozenset({"score", "comment", "suggest"}),
    doc="ArtQuant: joint three-level description and level-readout score; train with `aesbench train artquant`.",
)

staged_recipe(
    "artquant",
    "aesbench.models.artquant_train",
    "ArtQuantTrainConfig",
    "train_artquant",
    "the small config on tiny-art-score",
    "lm, align, instruct",
    "ArtQuant: joint three-level descriptions and level-readout scores (see aesbench/models/artquant_train.py).",
)
