"""The training-step protocol: how regularizers, optimizer wrappers and diagnostics plug into the recipe.

A technique is one :class:`Plugin` subclass that overrides the hooks it needs (and a registry entry
in :data:`protfit.registry.PLUGINS` when the config turns it on). The recipe never changes for a new
technique. The contract, in the order the hooks run:

Setup (once per run, inside ``setup_run``):

=========================== ============================================================================
``configure_model(parts)``   after the training method is applied, before parameter groups and the
                             optimizer: freeze/re-initialise layers, set dropout, snapshot weights.
                             May replace ``parts.model``.
``configure_param_groups``   ``(parts, groups) -> groups``: the optimizer's parameter groups (dicts with
                             ``params``, ``weight_decay``, optional ``lr`` / ``name``) before the
                             optimizer is built: layer-wise LR decay, separate head LR or decay.
``configure_optimizer``      after the optimizer is built, before the scheduler: may replace
                             ``parts.optimizer`` (Lookahead) and, with it, ``parts.model`` and
                             ``parts.loaders["train"]`` (DP-SGD).
=========================== ============================================================================

Training (``fit``); ``state`` is the live :class:`TrainingState`:

=================================== ==================================================================
``on_train_start(state)``            once, after a resumed run's state (plug-ins' included) is restored
``on_epoch_start(state)``            before each training epoch (``state.epoch`` is 1-based)
``transform_batch(state, batch)``    each *training* micro-batch, before its forward pass; returns the
                                     batch to use (augmentation). Never called for validation/test.
``training_step(state, step, proceed)`` once per optimizer step, wrapping the forward/backward passes
                                     of the step's micro-batches: ``proceed()`` runs them (through the
                                     next plug-in, then the default) and returns the mean loss. A
                                     plug-in may call it more than once (SAM: ascent, then descent).
``loss(state, batch, logits, loss)`` each micro-batch forward, after the task loss: return an extra
                                     term (a scalar tensor) to add, or None (R-Drop, L2-SP).
``on_before_optimizer_step(state)``  once per optimizer step, after all backward passes, *before*
                                     gradient clipping (gradients are complete and unclipped).
``on_after_clip(state)``             once per optimizer step, after clipping, right before
                                     ``optimizer.step()`` (gradient noise).
``on_after_optimizer_step(state)``   once per optimizer step, after ``optimizer.step()`` and
                                     ``scheduler.step()``, before the gradients are cleared (EMA
                                     update, AdaLoRA's rank allocation, scheduled dropout per step).
``swap_in_eval_weights(state)``      before validation, before the ``best`` checkpoint is written and
``swap_out_eval_weights(state)``     before test: put the weights to evaluate in place (SWA/EMA),
                                     and back after (``swap_out`` is skipped when the run ends).
``on_validation_end(state)``         each epoch after validation, before the history row and the
                                     checkpoints are written: add fields to ``state.epoch_record``.
``on_epoch_end(state)``              each epoch after its checkpoints and history row are written.
``on_train_end(state)``              once, after the last epoch (before testing).
``summary_entries(summary)``         once, after fitting: a dict merged into ``summary.json`` (the
                                     overfitting diagnostics, DP-SGD's epsilon).
=================================== ==================================================================

State: ``state_dict()`` returns a mapping of tensors and JSON values (nested dicts allowed) that
``checkpoints/last`` stores and ``--resume`` hands back to ``load_state_dict`` before
``on_train_start``, so a resumed run equals an uninterrupted one. Each plug-in's state is keyed by
its ``name`` (unique within a run). A method whose name looks like a hook but is not one
(``on_epoch_ned``) is an error when the class is defined, never a silent no-op.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from protfit.config import RunConfig

SETUP_HOOKS = ("configure_model", "configure_param_groups", "configure_optimizer")
TRAINING_HOOKS = (
    "on_train_start",
    "on_epoch_start",
    "transform_batch",
    "training_step",
    "loss",
    "on_before_optimizer_step",
    "on_after_clip",
    "on_after_optimizer_step",
    "swap_in_eval_weights",
    "swap_out_eval_weights",
    "on_validation_end",
    "on_epoch_end",
    "on_train_end",
    "summary_entries",
)
HOOKS = frozenset(SETUP_HOOKS + TRAINING_HOOKS)
_NOT_HOOKS = frozenset({"state_dict", "load_state_dict"})


@dataclass
class TrainingState:
    """What every training hook sees. ``parts`` is the run's :class:`~protfit.training.setup.RunParts`."""

    config: RunConfig
    parts: Any
    run_dir: Any
    epoch: int = 0
    global_step: int = 0
    last_loss: float | None = None  # the last optimizer step's training loss (trackers log it)
    epoch_record: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> torch.nn.Module:
        return self.parts.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.parts.optimizer


@dataclass
class StepContext:
    """One optimizer step's micro-batches, for ``training_step`` hooks."""

    micro_batches: list[dict[str, Any]]


class Plugin:
    """Base class of every training plug-in; override only the hooks you need (see the module doc)."""

    name: str = ""
    # True when the plug-in needs the backbone to run on every batch (it perturbs or augments the
    # inputs, or unfreezes backbone layers): the embedding cache of a frozen backbone is then off.
    needs_backbone_forward: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attribute in vars(cls):
            if attribute.startswith("_") or attribute in HOOKS or attribute in _NOT_HOOKS:
                continue
            looks_like_hook = attribute.startswith(("on_", "configure_", "swap_"))
            close = difflib.get_close_matches(attribute, sorted(HOOKS), n=1, cutoff=0.85)
            if looks_like_hook or close:
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise TypeError(
                    f"{cls.__name__}.{attribute} is not a training hook{hint} "
                    f"(hooks: {', '.join(sorted(HOOKS))})"
                )

    @classmethod
    def from_config(cls, section: Any, cfg: Any) -> Plugin:
        """The plug-in of a regularizer, from its config section (``regularization.<name>``) when the
        section is enabled; override to read more of the run config (layer-wise LR reads the rate)."""
        return cls(section)  # type: ignore[call-arg]

    @property
    def key(self) -> str:
        return self.name or type(self).__name__

    # setup
    def configure_model(self, parts: Any) -> None: ...

    def configure_param_groups(self, parts: Any, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return groups

    def configure_optimizer(self, parts: Any) -> None: ...

    # training
    def on_train_start(self, state: TrainingState) -> None: ...

    def on_epoch_start(self, state: TrainingState) -> None: ...

    def transform_batch(self, state: TrainingState, batch: dict[str, Any]) -> dict[str, Any]:
        return batch

    def training_step(self, state: TrainingState, step: StepContext, proceed: Callable[[], float]) -> float:
        return proceed()

    def loss(self, state: TrainingState, batch: dict[str, Any], logits: Any, loss: Any) -> Any:
        return None

    def on_before_optimizer_step(self, state: TrainingState) -> None: ...

    def on_after_clip(self, state: TrainingState) -> None: ...

    def on_after_optimizer_step(self, state: TrainingState) -> None: ...

    def swap_in_eval_weights(self, state: TrainingState) -> None: ...

    def swap_out_eval_weights(self, state: TrainingState) -> None: ...

    def on_validation_end(self, state: TrainingState) -> None: ...

    def on_epoch_end(self, state: TrainingState) -> None: ...

    def on_train_end(self, state: TrainingState) -> None: ...

    def summary_entries(self, summary: dict[str, Any]) -> dict[str, Any]:
        return {}

    # state
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class PluginList:
    """The run's plug-ins, called in order (``training_step`` nests: the first plug-in is outermost)."""

    def __init__(self, plugins: list[Plugin] | None = None) -> None:
        self.plugins = list(plugins or [])
        keys = [plugin.key for plugin in self.plugins]
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        if duplicated:
            raise ValueError(f"two training plug-ins share the name {duplicated}; give each a unique `name`")

    def __iter__(self) -> Iterator[Plugin]:
        return iter(self.plugins)

    def __len__(self) -> int:
        return len(self.plugins)

    @property
    def needs_backbone_forward(self) -> bool:
        return any(plugin.needs_backbone_forward for plugin in self.plugins)

    def call(self, hook: str, *args: Any) -> None:
        if hook not in HOOKS:
            raise AttributeError(f"'{hook}' is not a training hook")
        for plugin in self.plugins:
            getattr(plugin, hook)(*args)

    def param_groups(self, parts: Any, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for plugin in self.plugins:
            groups = plugin.configure_param_groups(parts, groups)
        return groups

    def transform_batch(self, state: TrainingState, batch: dict[str, Any]) -> dict[str, Any]:
        for plugin in self.plugins:
            batch = plugin.transform_batch(state, batch)
        return batch

    def extra_loss(self, state: TrainingState, batch: dict[str, Any], logits: Any, loss: Any) -> Any:
        total = loss
        for plugin in self.plugins:
            term = plugin.loss(state, batch, logits, loss)
            if term is not None:
                total = total + term
        return total

    def training_step(self, state: TrainingState, step: StepContext, default: Callable[[], float]) -> float:
        proceed = default
        for plugin in reversed(self.plugins):
            proceed = _bind(plugin, state, step, proceed)
        return proceed()

    @contextlib.contextmanager
    def evaluation_weights(self, state: TrainingState) -> Iterator[None]:
        self.call("swap_in_eval_weights", state)
        try:
            yield
        finally:
            for plugin in reversed(self.plugins):
                plugin.swap_out_eval_weights(state)

    def state_dict(self) -> dict[str, Any]:
        return {plugin.key: plugin.state_dict() for plugin in self.plugins}

    def load_state_dict(self, states: dict[str, Any]) -> None:
        missing = [plugin.key for plugin in self.plugins if plugin.key not in states and plugin.state_dict()]
        if missing:
            raise ValueError(
                f"the checkpoint holds no state for the training plug-in(s) {missing}: it was written by a "
                "run with other plug-ins; resume with the run's own config"
            )
        for plugin in self.plugins:
            if plugin.key in states:
                plugin.load_state_dict(states[plugin.key])


def _bind(plugin: Plugin, state: TrainingState, step: StepContext, inner: Callable[[], float]):
    return lambda: plugin.training_step(state, step, inner)
