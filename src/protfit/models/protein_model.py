"""ProteinModel = backbone + pooler + head, and the state a checkpoint of it must hold."""

from __future__ import annotations

import torch
from torch import nn

from protfit.config import RunConfig
from protfit.models.backbone import Backbone, base_weight_quantization, load_backbone
from protfit.models.extra_features import ExtraFeatureScaler, feature_layout
from protfit.models.heads import build_head
from protfit.models.poolers import build_pooler
from protfit.models.sources import ModelError


class ProteinModel(nn.Module):
    """Token ids -> per-residue hidden states -> pooled vector -> logits (B, out).

    ``backbone_trainable`` is set by the training method (``apply_method``). When it is False the
    backbone runs in eval mode (no dropout) under ``torch.no_grad`` (no graph kept), also after
    ``model.train()``; the pooler and head still train.
    """

    def __init__(
        self,
        backbone: Backbone,
        pooler: nn.Module,
        head: nn.Module,
        feature_scaler: ExtraFeatureScaler | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooler = pooler
        self.head = head
        # model.extra_features: per-sequence numbers (batch key ``extra_features``) standardised and
        # concatenated to the pooled vector before the head
        self.feature_scaler = feature_scaler
        self._backbone_trainable = True
        # set by methods that need them: a module between backbone and pooler (structure adapter),
        # and training plug-ins (e.g. AdaLoRA's rank allocation after each optimizer step)
        self.adapter: nn.Module | None = None
        self.training_plugins: list = []

    @property
    def backbone_trainable(self) -> bool:
        return self._backbone_trainable

    @backbone_trainable.setter
    def backbone_trainable(self, trainable: bool) -> None:
        self._backbone_trainable = trainable
        self.backbone.train(self.training and trainable)

    def train(self, mode: bool = True) -> ProteinModel:
        super().train(mode)
        if not self._backbone_trainable:
            self.backbone.eval()
        return self

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Per-residue hidden states (B, L, H) of the backbone."""
        if self._backbone_trainable:
            return self.backbone(input_ids, attention_mask)
        with torch.no_grad():
            return self.backbone(input_ids, attention_mask)

    def pool(
        self, hidden: torch.Tensor, residue_mask: torch.Tensor, **structure: torch.Tensor
    ) -> torch.Tensor:
        """Structure adapter (when a method attached one), then pooling: (B, L, H) -> (B, D)."""
        if self.adapter is not None:
            hidden = self.adapter(hidden, residue_mask.bool(), **structure)
        elif structure:
            raise ValueError(
                f"structure inputs {sorted(structure)} given, but no structure adapter is attached"
            )
        return self.pooler(hidden, residue_mask.bool())

    def embed(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        residue_mask: torch.Tensor | None = None,
        hidden_states: torch.Tensor | None = None,
        pooled: torch.Tensor | None = None,
        **structure: torch.Tensor,
    ) -> torch.Tensor:
        """Pooled vectors (B, D), the input of the head.

        Batches carry token ids, or precomputed per-residue ``hidden_states`` / ``pooled`` vectors
        when an embedding cache replaces the frozen backbone.
        """
        if pooled is not None:
            return pooled
        if hidden_states is None:
            hidden_states = self.encode(input_ids, attention_mask)
        return self.pool(hidden_states, residue_mask, **structure)

    def forward(self, extra_features: torch.Tensor | None = None, **inputs: torch.Tensor) -> torch.Tensor:
        pooled = self.embed(**inputs)
        if self.feature_scaler is not None:
            if extra_features is None:
                raise ValueError(
                    f"this model reads the extra features {self.feature_scaler.names} (model.extra_features), "
                    "but the batch carries none"
                )
            pooled = torch.cat([pooled, self.feature_scaler(extra_features).to(pooled.dtype)], dim=-1)
        return self.head(pooled)


def build_model(cfg: RunConfig, num_labels: int) -> ProteinModel:
    """Backbone, pooler and head as configured; everything trains until ``apply_method`` decides."""
    backbone = load_backbone(cfg.model, quantization_config=base_weight_quantization(cfg.model))
    pooler = build_pooler(cfg.model.pooler, backbone.hidden_size, cfg)
    if getattr(pooler, "needs_cls_token", False) and not backbone.has_cls_token:
        raise ModelError(
            f"model.pooler '{cfg.model.pooler}' reads the CLS token, but the {backbone.family} family "
            "has no CLS token; choose mean, attention1d or light_attention"
        )
    out_dim = 1 if cfg.data.problem_type == "regression" else num_labels
    scaler = ExtraFeatureScaler(feature_layout(cfg)) if cfg.model.extra_features else None
    head = build_head(pooler.output_dim + (scaler.width if scaler else 0), out_dim, cfg.model.head)
    return ProteinModel(backbone, pooler, head, scaler)


def trainable_state_dict(model: ProteinModel) -> dict[str, torch.Tensor]:
    """The parameters that train plus the pooler's and head's buffers (e.g. batch-norm statistics):
    what a checkpoint must hold to restore the model on top of the pretrained backbone."""
    state = {name: param.detach() for name, param in model.named_parameters() if param.requires_grad}
    modules = (
        ("pooler", model.pooler),
        ("head", model.head),
        ("adapter", model.adapter),
        ("feature_scaler", model.feature_scaler),
    )
    for prefix, module in modules:
        if module is None:
            continue
        for name, buffer in module.named_buffers(prefix=prefix):
            if buffer is not None:
                state[name] = buffer.detach()
    return state


def load_trainable_state_dict(model: ProteinModel, state: dict[str, torch.Tensor]) -> None:
    """Load a checkpoint written by :func:`trainable_state_dict` into a model built the same way."""
    expected = trainable_state_dict(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key} (checkpoint {tuple(state[key].shape)}, model {tuple(expected[key].shape)})"
        for key in sorted(set(expected) & set(state))
        if state[key].shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                problems.append(f"{title}: {shown}")
        raise ModelError(
            "the checkpoint does not fit this model (was it trained with another model, pooler, head or "
            "method?); " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=False)
