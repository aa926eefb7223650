"""Loss-side regularizers: label smoothing and R-Drop.

Both are extra terms of the ``loss`` hook, so the logged training loss stays the plain task loss
(comparable across runs) while the optimised objective includes the term.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.sections.losses import LabelSmoothingConfig, RDropConfig
from protfit.training.evaluation import model_inputs


class LabelSmoothing(Plugin):
    """Single-label: the objective becomes (1 - eps) CE + eps * mean_k(-log p_k), exactly
    ``F.cross_entropy(label_smoothing=eps)``; multi-label: BCE against targets y (1 - eps) + eps / 2."""

    name = "label_smoothing"

    @classmethod
    def from_config(cls, section: LabelSmoothingConfig, cfg: Any) -> LabelSmoothing:
        return cls(section, cfg.data.problem_type)

    def __init__(self, cfg: LabelSmoothingConfig, problem_type: str) -> None:
        self.cfg, self.problem_type = cfg, problem_type

    def loss(self, state: TrainingState, batch: dict[str, Any], logits: Any, loss: Any) -> Any:
        eps, labels = self.cfg.epsilon, batch["labels"]
        if self.problem_type == "single_label_classification":
            uniform = -F.log_softmax(logits.float(), dim=-1).mean(dim=-1).mean()
            return eps * (uniform - loss)
        smoothed = labels * (1 - eps) + eps / 2
        return F.binary_cross_entropy_with_logits(logits.float(), smoothed) - loss


class RDrop(Plugin):
    """A second forward pass of each micro-batch (different dropout masks) and alpha x the symmetric
    KL between the two predictive distributions (regression: the squared difference of the outputs).
    Costs one more forward and backward per micro-batch; needs dropout somewhere that trains."""

    name = "rdrop"

    @classmethod
    def from_config(cls, section: RDropConfig, cfg: Any) -> RDrop:
        return cls(section, cfg.data.problem_type)

    def __init__(self, cfg: RDropConfig, problem_type: str) -> None:
        self.cfg, self.problem_type = cfg, problem_type

    def loss(self, state: TrainingState, batch: dict[str, Any], logits: Any, loss: Any) -> Any:
        other = state.model(**model_inputs(batch)).float()
        return self.cfg.alpha * consistency(logits.float(), other, self.problem_type)


def consistency(first: torch.Tensor, second: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Symmetric divergence between two passes' predictions (0 when they agree)."""
    if problem_type == "single_label_classification":
        p, q = F.log_softmax(first, dim=-1), F.log_softmax(second, dim=-1)
        kl = F.kl_div(p, q, log_target=True, reduction="batchmean") + F.kl_div(
            q, p, log_target=True, reduction="batchmean"
        )
        return kl / 2
    if problem_type == "multi_label_classification":
        p, q = torch.sigmoid(first), torch.sigmoid(second)
        eps = 1e-6
        kl_pq = p * (torch.log(p + eps) - torch.log(q + eps)) + (1 - p) * (
            torch.log(1 - p + eps) - torch.log(1 - q + eps)
        )
        kl_qp = q * (torch.log(q + eps) - torch.log(p + eps)) + (1 - q) * (
            torch.log(1 - q + eps) - torch.log(1 - p + eps)
        )
        return (kl_pq + kl_qp).mean() / 2
    return (first - second).pow(2).mean()
