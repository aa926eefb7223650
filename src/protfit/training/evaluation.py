"""Loss, label scaling and a forward pass over a whole split (shared by training, eval and predict)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from protfit.metrics import outputs_from_logits, predicted_labels


class _RegressionLoss(nn.MSELoss):
    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.squeeze(-1), labels)


def loss_function(problem_type: str) -> nn.Module:
    """Criterion taking (logits from the head, labels from the collator)."""
    return {
        "single_label_classification": nn.CrossEntropyLoss(),
        "multi_label_classification": nn.BCEWithLogitsLoss(),
        "regression": _RegressionLoss(),
    }[problem_type]


@dataclass(frozen=True)
class LabelScaling:
    """Regression targets are standardised with the training split's mean and spread.

    Fitness-like labels come in arbitrary units; a head trained on raw values with a shared learning
    rate converges slowly or not at all. Outputs are mapped back, so users only ever see their units.
    Classification labels pass through unchanged.
    """

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, train: pd.DataFrame, problem_type: str) -> LabelScaling:
        if problem_type != "regression":
            return cls()
        values = train["label"].to_numpy(dtype=np.float64)
        spread = float(values.std())
        return cls(mean=float(values.mean()), std=spread if spread > 0 else 1.0)

    @classmethod
    def from_dict(cls, payload: dict) -> LabelScaling:
        return cls(mean=payload["mean"], std=payload["std"])

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}

    def scale(self, labels: torch.Tensor) -> torch.Tensor:
        if self.mean == 0.0 and self.std == 1.0:
            return labels
        return (labels - self.mean) / self.std

    def unscale(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean


NON_INPUT_KEYS = frozenset({"labels", "index"})


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Everything in a batch the model consumes: token ids and masks today, and whatever a data
    path adds (cached embeddings, structure tokens) without the loop having to know."""
    return {key: value for key, value in batch.items() if key not in NON_INPUT_KEYS}


@dataclass
class SplitOutputs:
    loss: float
    outputs: np.ndarray  # rows in the split's original order


@torch.no_grad()
def evaluate(
    model,
    loader,
    criterion,
    scaling: LabelScaling,
    accelerator,
    problem_type: str,
    progress: str | None = None,
) -> SplitOutputs:
    """Forward a whole split; length-bucketed batches are put back into the split's row order.

    With several processes each forwards its shard; outputs, per-sample losses and row indices are
    gathered and de-duplicated by row (accelerate repeats a few samples to even out the last round),
    so every process gets every row exactly once. ``progress`` names a progress bar; None shows none.
    """
    model.eval()
    outputs, indices, losses = [], [], []
    show = progress is not None and accelerator.is_main_process
    for batch in tqdm(loader, desc=progress, disable=not show, leave=False, dynamic_ncols=True):
        batch = {key: value.to(accelerator.device) for key, value in batch.items()}
        with accelerator.autocast():
            logits = model(**model_inputs(batch))
        logits = logits.float()
        if "labels" in batch:
            losses.append(per_sample_loss(criterion, logits, scaling.scale(batch["labels"])).cpu().numpy())
        outputs.append(outputs_from_logits(logits.cpu(), problem_type))
        indices.append(batch["index"].cpu().numpy())
    index = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    stacked = np.concatenate(outputs) if outputs else np.zeros(0)
    loss = np.concatenate(losses) if losses else None
    if accelerator.num_processes > 1:
        index, stacked, loss = _gather_unique(accelerator, index, stacked, loss)
    order = np.argsort(index, kind="stable")
    stacked = stacked[order]
    if problem_type == "regression":
        stacked = scaling.unscale(stacked)
    return SplitOutputs(
        loss=float(loss.mean()) if loss is not None and len(loss) else float("nan"),
        outputs=stacked,
    )


def per_sample_loss(criterion: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The criterion's loss of each sample (B,): its mean over a batch is the criterion's value."""
    if isinstance(criterion, nn.CrossEntropyLoss):
        return nn.functional.cross_entropy(logits, labels, reduction="none")
    if isinstance(criterion, nn.BCEWithLogitsLoss):
        return nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(dim=-1)
    return (logits.squeeze(-1) - labels) ** 2


def _gather_unique(accelerator, index: np.ndarray, outputs: np.ndarray, loss: np.ndarray | None):
    from accelerate.utils import gather_object

    pieces = gather_object([(index, outputs, loss)])
    index = np.concatenate([piece[0] for piece in pieces])
    outputs = np.concatenate([piece[1] for piece in pieces])
    _, first = np.unique(index, return_index=True)
    loss = np.concatenate([piece[2] for piece in pieces])[first] if loss is not None else None
    return index[first], outputs[first], loss


def write_predictions(
    path: Path,
    frame: pd.DataFrame,
    outputs: np.ndarray,
    problem_type: str,
    label_names: list[str] | None,
    threshold: float,
) -> pd.DataFrame:
    """One row per sequence: prediction, and class probabilities / label scores where they exist."""
    table = pd.DataFrame({"name": frame["name"].to_numpy()})
    if "label" in frame:
        table["label"] = frame["label"].to_numpy()
    predicted = predicted_labels(outputs, problem_type, threshold)
    if problem_type == "regression":
        table["prediction"] = predicted
    elif problem_type == "single_label_classification":
        table["prediction"] = predicted
        if label_names:
            table["prediction_name"] = [label_names[index] for index in predicted]
        for index in range(outputs.shape[1]):
            table[f"prob_{label_names[index] if label_names else index}"] = outputs[:, index]
    else:
        table["prediction"] = [",".join(str(i) for i in np.flatnonzero(row)) for row in predicted]
        for index in range(outputs.shape[1]):
            table[f"score_{label_names[index] if label_names else index}"] = outputs[:, index]
    table.to_csv(path, index=False)
    return table
