"""What a regularizer is: a config section and a training plug-in, registered together in one call.

A regularizer is one file (a module in ``protfit/regularization/sections/``, or a user module loaded
with ``--plugins`` / the ``protfit.plugins`` entry-point group)::

    class StrengthConfig(Technique):
        strength: float = Field(0.1, gt=0.0, description="How hard it pulls")

    @register_regularizer("my_reg", StrengthConfig, "one line for `protfit models`")
    class MyRegularizer(Plugin):
        name = "my_reg"

        def __init__(self, section: StrengthConfig) -> None: ...

The section becomes ``regularization.my_reg`` of the run config (validated with the rest of the
config, shown by the web UI) and the plug-in joins a run when the section says ``enabled: true``.
A plug-in that needs more of the run config than its section overrides ``Plugin.from_config``.

The plug-in may be named ``"module:Class"`` instead: the built-in sections then import no torch
(checking a config stays fast), and the plug-in's module is imported when a run turns it on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from protfit.registry import PLUGINS

if TYPE_CHECKING:
    from protfit.plugins import Plugin

P = TypeVar("P")


class Technique(BaseModel):
    """Base of a regularizer's config section: off unless ``enabled: true``; every field has a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(False, description="Turn the technique on")


@dataclass(frozen=True)
class RegularizerBuilder:
    """The PLUGINS entry of a regularizer: its plug-in, built from its section when the section is on."""

    key: str
    plugin: type | str  # the class, or "module:Class" imported on first use

    def __call__(self, cfg: Any) -> Plugin | None:
        section = getattr(cfg.regularization, self.key)
        return self.plugin_class().from_config(section, cfg) if section.enabled else None

    def plugin_class(self) -> Any:
        if isinstance(self.plugin, str):
            module, _, attribute = self.plugin.partition(":")
            return getattr(importlib.import_module(module), attribute)
        return self.plugin


def register_regularizer(
    name: str, section: type[BaseModel], description: str, plugin: str | None = None
) -> Callable[[P], P]:
    """Register ``regularization.<name>``: its section class and its plug-in.

    As a class decorator on the plug-in, or called with ``plugin="module:Class"`` (the built-ins)."""

    def decorator(item: P) -> P:
        PLUGINS.add(name, RegularizerBuilder(name, item), description, section=section)  # type: ignore[arg-type]
        return item

    if plugin is not None:
        decorator(plugin)  # type: ignore[arg-type]
    return decorator


def regularizer_sections() -> dict[str, tuple[type[BaseModel], str]]:
    """name -> (section class, description) of every registered regularizer."""
    return {
        entry.name: (entry.options["section"], entry.description)
        for entry in PLUGINS.entries()
        if "section" in entry.options
    }
