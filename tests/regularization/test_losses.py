"""Label smoothing equals torch's smoothed cross-entropy; R-Drop's term is the two passes' divergence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from protfit.regularization.losses import LabelSmoothing, RDrop, consistency
from protfit.regularization.sections.losses import LabelSmoothingConfig, RDropConfig


def test_label_smoothing_objective_is_torchs_smoothed_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.randint(0, 4, (6,))
    plain = F.cross_entropy(logits, labels)
    plugin = LabelSmoothing(LabelSmoothingConfig(enabled=True, epsilon=0.2), "single_label_classification")
    total = plain + plugin.loss(None, {"labels": labels}, logits, plain)
    assert torch.allclose(total, F.cross_entropy(logits, labels, label_smoothing=0.2))


def test_label_smoothing_multi_label_targets():
    logits, labels = torch.randn(3, 5), torch.randint(0, 2, (3, 5)).float()
    plain = F.binary_cross_entropy_with_logits(logits, labels)
    plugin = LabelSmoothing(LabelSmoothingConfig(enabled=True, epsilon=0.1), "multi_label_classification")
    total = plain + plugin.loss(None, {"labels": labels}, logits, plain)
    assert torch.allclose(total, F.binary_cross_entropy_with_logits(logits, labels * 0.9 + 0.05))


@pytest.mark.parametrize(
    "problem", ["single_label_classification", "multi_label_classification", "regression"]
)
def test_consistency_is_zero_for_identical_passes_and_positive_otherwise(problem):
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    assert float(consistency(a, a, problem)) == pytest.approx(0.0, abs=1e-6)
    assert float(consistency(a, b, problem)) > 0
    assert float(consistency(a, b, problem)) == pytest.approx(float(consistency(b, a, problem)), rel=1e-5)


class _State:
    def __init__(self, model):
        self.model = model


def test_rdrop_runs_a_second_pass_with_its_own_dropout_mask():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))

    class Wrapped(torch.nn.Module):  # the loop calls model(**inputs)
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, pooled):
            return self.inner(pooled)

    wrapped = Wrapped().train()
    batch = {"pooled": torch.randn(5, 8), "labels": torch.randint(0, 3, (5,)), "index": torch.arange(5)}
    plugin = RDrop(RDropConfig(enabled=True, alpha=2.0), "single_label_classification")
    first = wrapped(batch["pooled"])
    term = plugin.loss(_State(wrapped), batch, first, None)
    assert float(term.detach()) > 0
    wrapped.eval()  # no dropout: both passes agree, the term vanishes
    assert float(plugin.loss(_State(wrapped), batch, wrapped(batch["pooled"]), None)) == pytest.approx(
        0.0, abs=1e-6
    )
