"""Refining the optimizer's parameter groups: split each group by a key, give each part options.

Several plug-ins refine the same groups (per-component weight decay, layer-wise LR decay); each one
splits every existing group further and sets its own option, so they compose in any order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn


def refine_groups(
    groups: list[dict[str, Any]],
    key: Callable[[nn.Parameter], Any],
    options: Callable[[Any, dict[str, Any]], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Split every group by ``key(parameter)``; ``options(key, group)`` gives the part's overrides."""
    refined = []
    for group in groups:
        parts: dict[Any, list[nn.Parameter]] = {}
        for parameter in group["params"]:
            parts.setdefault(key(parameter), []).append(parameter)
        for part, params in parts.items():
            name = f"{group.get('name', 'group')}/{part}"
            refined.append({**group, **options(part, group), "params": params, "name": name})
    return refined


def parameter_names(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> its name in the (unwrapped) model."""
    return {id(p): name for name, p in model.named_parameters()}
