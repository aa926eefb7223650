"""Differentially private training (DP-SGD, Abadi et al. 2016) with Opacus.

Opacus computes per-sample gradients of the trained modules (its GradSampleModule hooks), its
DPOptimizer clips each sample's gradient to ``max_grad_norm``, sums, adds Gaussian noise of std
``noise_multiplier * max_grad_norm`` and steps the base AdamW; its RDP accountant turns
(noise, sampling rate = batch size / training rows, steps) into epsilon at ``delta``, reported per
epoch (``dp_epsilon`` in the history) and in the summary.

Limits, checked before any work: one process, ``model.method=freeze`` only (the pooler and head train; per-sample
gradients of transformer layers and PEFT adapters are not supported here), no gradient accumulation,
no technique that adds passes or loss terms outside the per-sample gradients (SAM, R-Drop,
adversarial, L2 in the loss, L2-SP), and no BatchNorm in pooler or head (Opacus refuses it). Batches
are protfit's shuffled fixed-size batches, not Poisson sampling: the reported epsilon uses the
standard sampling-rate approximation, as Opacus' ``make_private(poisson_sampling=False)`` does.
"""

from __future__ import annotations

from typing import Any

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.sections.privacy import PrivacyConfig


class DifferentialPrivacy(Plugin):
    name = "privacy"

    def __init__(self, cfg: PrivacyConfig) -> None:
        self.cfg = cfg
        self.steps = 0
        self.epsilon: float | None = None

    def configure_optimizer(self, parts: Any) -> None:
        try:
            from opacus.grad_sample import GradSampleModule
            from opacus.optimizers import DPOptimizer
        except ImportError as error:
            raise RuntimeError("regularization.privacy needs Opacus: pip install opacus") from error
        if parts.accelerator.num_processes > 1:
            raise ValueError(
                "regularization.privacy runs in one process: each process would add its own noise to "
                "gradients that DDP then averages; train without --num-processes"
            )
        model = parts.model
        trained_elsewhere = [
            name
            for name, p in model.named_parameters()
            if p.requires_grad and name.split(".")[0] not in ("pooler", "head")
        ]
        if trained_elsewhere:
            raise ValueError(
                f"regularization.privacy: only pooler and head may train, but {trained_elsewhere[:3]} train too"
            )
        # The hooks go on the model's own pooler/head modules; the model keeps them unwrapped, so
        # checkpoints have the same keys as any other run.
        self.hooks = []
        for module in (model.pooler, model.head):
            if any(p.requires_grad for p in module.parameters()):
                try:
                    self.hooks.append(GradSampleModule(module, batch_first=True, loss_reduction="mean"))
                except Exception as error:  # opacus' validation: unsupported layers such as BatchNorm
                    raise ValueError(
                        f"regularization.privacy: Opacus cannot compute per-sample gradients here ({error}); "
                        "use model.head.norm=layernorm or none"
                    ) from None
        self.batch_size = parts.cfg.data.batch_size
        self.sample_rate = min(1.0, self.batch_size / len(parts.splits.train.frame))
        parts.optimizer = DPOptimizer(
            parts.optimizer,
            noise_multiplier=self.cfg.noise_multiplier,
            max_grad_norm=self.cfg.max_grad_norm,
            expected_batch_size=self.batch_size,
            loss_reduction="mean",
        )

    def on_after_optimizer_step(self, state: TrainingState) -> None:
        self.steps += 1

    def current_epsilon(self) -> float:
        from opacus.accountants import RDPAccountant

        accountant = RDPAccountant()
        accountant.history = [(self.cfg.noise_multiplier, self.sample_rate, self.steps)]
        return float(accountant.get_epsilon(self.cfg.delta))

    def on_validation_end(self, state: TrainingState) -> None:
        self.epsilon = self.current_epsilon()
        state.epoch_record["dp_epsilon"] = self.epsilon

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])

    def summary_entries(self, summary: dict[str, Any]) -> dict[str, Any]:
        return {
            "privacy": {
                "epsilon": self.current_epsilon() if self.steps else None,
                "delta": self.cfg.delta,
                "noise_multiplier": self.cfg.noise_multiplier,
                "max_grad_norm": self.cfg.max_grad_norm,
                "steps": self.steps,
                "sample_rate": self.sample_rate,
            }
        }
