"""protfit: fine-tune protein language models on protein property prediction."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from protfit.config import RunConfig, load_config
    from protfit.inference import TrainedModel, load
    from protfit.training.train import RunResult, train

_LAZY = {
    "train": ("protfit.training.train", "train"),
    "RunResult": ("protfit.training.train", "RunResult"),
    "load": ("protfit.inference", "load"),
    "TrainedModel": ("protfit.inference", "TrainedModel"),
    "RunConfig": ("protfit.config", "RunConfig"),
    "load_config": ("protfit.config", "load_config"),
}


def __getattr__(name: str):
    # Lazy so that `import protfit` (and `protfit --help`) does not import torch.
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'protfit' has no attribute {name!r}")


__all__ = ["RunConfig", "RunResult", "TrainedModel", "__version__", "load", "load_config", "train"]
