"""Models: backbones per family, poolers, heads, the ProteinModel and the training methods."""

from protfit.models.backbone import Backbone, ModelError, load_backbone
from protfit.models.heads import build_head
from protfit.models.methods import apply_method, format_model_statistics, model_statistics
from protfit.models.onehot import OneHotBackbone
from protfit.models.poolers import build_pooler
from protfit.models.protein_model import (
    ProteinModel,
    build_model,
    load_trainable_state_dict,
    trainable_state_dict,
)

__all__ = [
    "Backbone",
    "ModelError",
    "OneHotBackbone",
    "ProteinModel",
    "apply_method",
    "build_head",
    "build_model",
    "build_pooler",
    "format_model_statistics",
    "load_backbone",
    "load_trainable_state_dict",
    "model_statistics",
    "trainable_state_dict",
]
