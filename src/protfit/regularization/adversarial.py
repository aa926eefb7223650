"""Adversarial training on the input embeddings: FGM (Miyato et al. 2017) and PGD (Madry et al. 2018).

A forward hook on the token embedding table makes its output a graph node whose gradient the step
reads. FGM: clean pass (gradients at the clean input), then a pass on embeddings moved by
``epsilon * g / |g|`` (per sequence), whose gradients add to the clean ones: 2 passes per step.
PGD: clean pass, ``steps`` ascent passes that move the perturbation by ``step_size`` along the
normalised gradient and project it back into the ``epsilon`` ball, then a final pass at the
perturbed point whose parameter gradients add to the clean ones: steps + 2 passes per step.
Each micro-batch of a step gets its own perturbation (gradient accumulation stays exact).
"""

from __future__ import annotations

from typing import Any

import torch

from protfit.plugins import Plugin, StepContext, TrainingState
from protfit.regularization.layers import input_embeddings
from protfit.regularization.sections.adversarial import AdversarialConfig


def _normalised(grad: torch.Tensor) -> torch.Tensor:
    norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return grad / norm.view(-1, *([1] * (grad.dim() - 1)))


def _project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = torch.clamp(epsilon / norm, max=1.0)
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


class Adversarial(Plugin):
    name = "adversarial"
    needs_backbone_forward = True

    def __init__(self, cfg: AdversarialConfig) -> None:
        self.cfg = cfg
        self.capture = False
        self.deltas: list[torch.Tensor] | None = None
        self.captured: list[torch.Tensor] = []

    def configure_model(self, parts: Any) -> None:
        input_embeddings(parts.model).register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self.deltas is not None:
            output = output + self.deltas[len(self.captured) if self.capture else self._next()]
        if self.capture:
            if not output.requires_grad:
                output = output.detach().requires_grad_()
            output.retain_grad()
            self.captured.append(output)
        return output

    def _next(self) -> int:
        self._position += 1
        return self._position - 1

    def _pass(self, proceed: Any, capture: bool) -> tuple[float, list[torch.Tensor]]:
        self.capture, self.captured, self._position = capture, [], 0
        try:
            loss = proceed()
            grads = [c.grad.detach() if c.grad is not None else torch.zeros_like(c) for c in self.captured]
        finally:
            self.capture, self.captured = False, []
        return loss, grads

    def training_step(self, state: TrainingState, step: StepContext, proceed: Any) -> float:
        params = [p for p in state.model.parameters() if p.requires_grad]
        self.deltas = None
        loss, grads = self._pass(proceed, capture=True)  # clean gradients stay in p.grad
        eps = self.cfg.epsilon
        try:
            if self.cfg.kind == "fgm":
                self.deltas = [eps * _normalised(g) for g in grads]
            else:
                clean = [None if p.grad is None else p.grad.detach().clone() for p in params]
                size = self.cfg.step_size or 2 * eps / self.cfg.steps
                self.deltas = [torch.zeros_like(g) for g in grads]
                for _ in range(self.cfg.steps):
                    state.optimizer.zero_grad(set_to_none=True)
                    _, grads = self._pass(proceed, capture=True)
                    self.deltas = [
                        _project(d + size * _normalised(g), eps)
                        for d, g in zip(self.deltas, grads, strict=True)
                    ]
                state.optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    for p, g in zip(params, clean, strict=True):
                        p.grad = g
            self._pass(proceed, capture=False)  # adversarial gradients add to the clean ones
        finally:
            self.deltas = None
        return loss
