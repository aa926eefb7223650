"""A plug-in that makes any run collapse to a constant predictor, deterministically."""

import torch

from protfit.plugins import Plugin


class ZeroWeights(Plugin):
    """Zeroes every weight matrix of the head after each step: the output is its last bias, a
    constant (what an exploding learning rate does to a real run, made deterministic)."""

    name = "zero_weights"

    def on_after_optimizer_step(self, state):
        with torch.no_grad():
            for name, parameter in state.parts.unwrapped_model.head.named_parameters():
                if name.endswith("weight"):
                    parameter.zero_()
