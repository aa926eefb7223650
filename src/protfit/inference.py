"""Use a trained run: `protfit.load(RUN_DIR)` -> predict / embed / evaluate.

The model is rebuilt from the run's resolved config (base weights from the same hub id, folder or
alias) and the trained weights of its best checkpoint are applied; batching is the same
length-bucketed batching as in training, so predictions equal the run's own test predictions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from protfit.config import RunConfig, load_config
from protfit.data.batching import EncodedDataset, ProteinCollator, build_dataloader
from protfit.data.domain import domain_notes
from protfit.data.loading import read_sequences, validate_sequences
from protfit.data.validation import VALIDATED
from protfit.metrics import targets_from_frame
from protfit.models.embedding_cache import cached_loader_if_present
from protfit.models.extra_features import compute_extra_features
from protfit.models.methods import apply_method
from protfit.models.protein_model import ProteinModel, build_model, load_trainable_state_dict
from protfit.report.confidence import metrics_with_intervals
from protfit.report.run_dir import CONFIG_FILE, RunLock, load_run_plugins, read_json, write_json
from protfit.training.checkpoint import (
    checkpoint_epoch,
    load_model_state,
    missing_reason,
    recover_checkpoint,
)
from protfit.training.evaluation import (
    LabelScaling,
    evaluate,
    loss_function,
    model_inputs,
    write_predictions,
)
from protfit.training.setup import build_accelerator

logger = logging.getLogger("protfit")


@dataclass
class TrainedModel:
    config: RunConfig
    model: ProteinModel
    scaling: LabelScaling
    num_labels: int
    label_names: list[str] | None
    run_dir: Path
    checkpoint: str = "best"
    checkpoint_epoch: int | None = None  # None: a checkpoint saved before epochs were recorded
    # model.extra_features: how training computed each (reference, scoring model), from model_meta.json
    extra_feature_states: dict[str, Any] | None = None
    # the training split's lengths and composition (model_meta.json); None for runs older than it
    training_domain: dict[str, Any] | None = None

    @property
    def problem_type(self) -> str:
        return self.config.data.problem_type

    def _loader(self, frame: pd.DataFrame) -> torch.utils.data.DataLoader:
        backbone = self.model.backbone
        labelled = "label" in frame
        collator = ProteinCollator(backbone.pad_token_id, self.problem_type, self.num_labels)
        dataset = EncodedDataset(
            frame,
            backbone.tokenize(frame["aa_seq"].tolist()),
            self.problem_type if labelled else None,
            self.num_labels,
            structure_inputs=self.config.model.structure_inputs,
            source="the input sequences",
            extra_features=self._extra_features(frame),
        )
        # A run that trained on cached features predicts from them where they exist (its test split):
        # predictions then equal test_predictions.csv exactly; other sequences run the backbone live.
        cached = cached_loader_if_present(self.model, self.config, dataset)
        if cached is not None:
            return cached
        return build_dataloader(dataset, self.config.data, shuffle=False, seed=0, collator=collator)

    def _extra_features(self, frame: pd.DataFrame) -> np.ndarray | None:
        """model.extra_features of ``frame``, computed as training computed them (same reference)."""
        if not self.config.model.extra_features:
            return None
        values, _ = compute_extra_features(self.config, {"input": frame}, self.extra_feature_states)
        return values["input"]

    def _validated(self, sequences: list[str] | pd.DataFrame) -> pd.DataFrame:
        """Sequences and user frames get the same residue/label/structure checks and truncation as
        training data; frames that come out of protfit's own loaders are already validated."""
        if isinstance(sequences, pd.DataFrame):
            if sequences.attrs.get(VALIDATED):
                return sequences
            frame, source = sequences, "the DataFrame"
        else:
            frame, source = pd.DataFrame({"aa_seq": list(sequences)}), "the sequences"
        return validate_sequences(frame, self.config.data, source=source, num_labels=self.num_labels)

    def outputs(self, sequences: list[str] | pd.DataFrame, progress: str | None = None) -> np.ndarray:
        """Probabilities / scores / values in input order; ``progress`` names a progress bar."""
        frame = self._validated(sequences)
        accelerator = build_accelerator(self.config.train)
        self.model.to(accelerator.device)
        result = evaluate(
            self.model,
            self._loader(frame.drop(columns=["label"], errors="ignore")),
            loss_function(self.problem_type),
            self.scaling,
            accelerator,
            self.problem_type,
            progress=progress,
        )
        return result.outputs

    def predict(
        self,
        sequences: list[str] | pd.DataFrame,
        output_csv: str | Path | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """Predicted label / class probabilities / multi-label scores / value, one row per sequence,
        and ``domain_note``: why a sequence lies outside the training data (empty when it does not)."""
        frame = self._validated(sequences)
        outputs = self.outputs(frame, progress="predict" if progress else None)
        table = write_predictions(
            None,
            frame,
            outputs,
            self.problem_type,
            self.label_names,
            self.config.evaluation.multi_label_threshold,
        )
        if self.training_domain is not None:
            table["domain_note"] = domain_notes(frame["aa_seq"].tolist(), self.training_domain)
        else:
            logger.info(
                "%s records no training-data statistics (trained before protfit noted inputs outside "
                "the training data): predictions carry no domain note",
                self.run_dir,
            )
        if output_csv is not None:
            table.to_csv(output_csv, index=False)
        return table

    @torch.no_grad()
    def embed(self, sequences: list[str] | pd.DataFrame) -> np.ndarray:
        """Pooled embeddings (the head's input), rows in input order."""
        frame = self._validated(sequences)
        accelerator = build_accelerator(self.config.train)
        self.model.to(accelerator.device).eval()
        vectors, indices = [], []
        for batch in self._loader(frame.drop(columns=["label"], errors="ignore")):
            batch = {key: value.to(accelerator.device) for key, value in batch.items()}
            vectors.append(self.model.embed(**model_inputs(batch)).float().cpu())
            indices.append(batch["index"].cpu())
        order = torch.argsort(torch.cat(indices))
        return torch.cat(vectors)[order].numpy()

    def evaluate(self, frame: pd.DataFrame, out_dir: str | Path, progress: bool = False) -> dict[str, Any]:
        """Metrics with bootstrap intervals on a labelled frame; writes CSV, JSON and a plot.

        ``out_dir`` is locked while it is written (``eval.lock``): a second process evaluating into
        the same folder is refused instead of mixing its files with this one's."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(out_dir, lock_file="eval.lock", what="eval folder"):
            return self._evaluate_into(frame, out_dir, progress)

    def _evaluate_into(self, frame: pd.DataFrame, out_dir: Path, progress: bool) -> dict[str, Any]:
        from protfit.report.plots import plot_evaluation

        frame = self._validated(frame)
        outputs = self.outputs(frame, progress="evaluate" if progress else None)
        targets = targets_from_frame(frame, self.problem_type, self.num_labels)
        names = self.config.metric_names
        metrics = metrics_with_intervals(
            names,
            self.problem_type,
            outputs,
            targets,
            self.num_labels,
            self.config.evaluation.bootstrap,
            self.config.evaluation.multi_label_threshold,
        )
        pd.DataFrame([{"metric": name, **entry} for name, entry in metrics.items()]).to_csv(
            out_dir / "eval_metrics.csv", index=False
        )
        write_json(
            out_dir / "eval_metrics.json",
            {
                "n": len(frame),
                "checkpoint": {"name": self.checkpoint, "epoch": self.checkpoint_epoch},
                "metrics": metrics,
            },
        )
        write_predictions(
            out_dir / "eval_predictions.csv",
            frame,
            outputs,
            self.problem_type,
            self.label_names,
            self.config.evaluation.multi_label_threshold,
        )
        plot_evaluation(
            outputs,
            targets,
            self.problem_type,
            self.label_names,
            out_dir,
            self.config.evaluation.multi_label_threshold,
        )
        return metrics


def load(run_dir: str | Path, checkpoint: str = "best") -> TrainedModel:
    """Rebuild a trained model from its run folder (base weights + the run's trained weights)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a protfit run folder (no {CONFIG_FILE})")
    if not recover_checkpoint(run_dir / "checkpoints" / checkpoint):  # repairs a kill mid-replacement
        raise FileNotFoundError(
            f"{run_dir} has no '{checkpoint}' checkpoint: {missing_reason(run_dir / 'checkpoints', checkpoint)}"
        )
    load_run_plugins(run_dir)  # the run's own pooler / head / metric may come from a plug-in module
    config = load_config(run_dir / CONFIG_FILE)
    if (run_dir / config.model.name).is_dir():  # an export names its merged backbone folder relatively
        config = config.model_copy(
            update={"model": config.model.model_copy(update={"name": str(run_dir / config.model.name)})}
        )
    meta = read_json(run_dir / "model_meta.json")
    model = build_model(config, meta["num_labels"])
    model = apply_method(model, config, total_steps=1)
    # what the run's plug-ins froze or unfroze after the method (regularization.freeze_layers): the
    # checkpoint holds exactly the parameters that trained, the rest come from the pretrained backbone
    overrides = meta.get("trainable_overrides") or {}
    for name, parameter in model.named_parameters():
        if name in overrides:
            parameter.requires_grad_(overrides[name])
    weights, epoch = _read_checkpoint(run_dir / "checkpoints" / checkpoint)
    load_trainable_state_dict(model, weights)
    model.eval()
    return TrainedModel(
        config=config,
        model=model,
        scaling=LabelScaling.from_dict(meta["label_scaling"]),
        num_labels=meta["num_labels"],
        label_names=meta["label_names"],
        run_dir=run_dir,
        checkpoint=checkpoint,
        checkpoint_epoch=epoch,
        extra_feature_states=meta.get("extra_features"),
        training_domain=meta.get("training_domain"),
    )


def _read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """A checkpoint's weights and the epoch they are from. A run that is still training may replace
    the checkpoint while it is read, so it is read again until the epoch recorded before and after
    reading the weights agree."""
    for _ in range(10):
        epoch = checkpoint_epoch(folder)
        weights = load_model_state(folder)
        if checkpoint_epoch(folder) == epoch:
            return weights, epoch
    raise RuntimeError(f"checkpoint {folder} kept being replaced while it was read; try again")


def read_labelled(model: TrainedModel, path: str | Path) -> pd.DataFrame:
    frame = read_sequences(path, model.config.data, num_labels=model.num_labels)
    if "label" not in frame:
        raise ValueError(f"{path} has no '{model.config.data.label_column}' column: evaluation needs labels")
    return frame
