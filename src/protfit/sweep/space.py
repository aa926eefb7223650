"""Search-space parameters -> Optuna suggestions and trial run configs.

A parameter's Optuna name is its dotted run-config key, so a trial's ``params`` are exactly the
overrides that built its run (``train.learning_rate: 3.1e-4``), and `protfit train BASE key=value`
reproduces a trial.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import optuna

from protfit.config import ConfigError, RunConfig
from protfit.sweep.config import CategoricalParam, FloatParam, IntParam, get_dotted, trial_run_config
from protfit.sweep.presets import preset_space

Param = FloatParam | IntParam | CategoricalParam


def resolve_space(sweep_space: dict[str, Param], preset: str | None, base: RunConfig) -> dict[str, Param]:
    """The preset's parameters (if any), then the sweep file's, which replace a preset entry of the same key."""
    space: dict[str, Param] = dict(preset_space(preset, base)) if preset else {}
    space.update(sweep_space)
    return space


def condition_holds(
    param: Param, sampled: dict[str, Any], base_values: dict[str, Any], skipped: set[str]
) -> bool:
    for key, allowed in (param.when or {}).items():
        if key in skipped:
            return False
        value = sampled[key] if key in sampled else get_dotted(base_values, key)
        if value not in allowed:
            return False
    return True


def suggest_params(trial: optuna.Trial, space: dict[str, Param], base: RunConfig) -> dict[str, Any]:
    """Ask the trial for every parameter whose condition holds, in the order of the space."""
    base_values = base.model_dump(mode="json")
    sampled: dict[str, Any] = {}
    skipped: set[str] = set()
    for key, param in space.items():
        if not condition_holds(param, sampled, base_values, skipped):
            skipped.add(key)
            continue
        if isinstance(param, FloatParam):
            sampled[key] = trial.suggest_float(key, param.low, param.high, log=param.log, step=param.step)
        elif isinstance(param, IntParam):
            sampled[key] = trial.suggest_int(key, param.low, param.high, log=param.log, step=param.step)
        else:
            picked = trial.suggest_categorical(key, [optuna_choice(choice) for choice in param.choices])
            sampled[key] = next(choice for choice in param.choices if optuna_choice(choice) == picked)
    return sampled


def optuna_choice(value: Any) -> Any:
    """A categorical choice as Optuna stores it: lists as their JSON text (Optuna takes scalars only)."""
    return json.dumps(value) if isinstance(value, list) else value


def check_enqueued(enqueued: list[dict[str, Any]], space: dict[str, Param], source: str) -> None:
    """Every fixed trial names space parameters only, with values inside their ranges."""
    for index, params in enumerate(enqueued):
        for key, value in params.items():
            where = f"{source}, field 'enqueue[{index}].{key}'"
            param = space.get(key)
            if param is None:
                raise ConfigError(f"{where}: not a parameter of the search space ({', '.join(space)})")
            if isinstance(param, CategoricalParam):
                if value not in param.choices:
                    raise ConfigError(f"{where}: {value!r} is not one of the choices {param.choices}")
            elif not isinstance(value, int | float) or not param.low <= value <= param.high:
                raise ConfigError(f"{where}: {value!r} is outside [{param.low}, {param.high}]")


def enqueued_params(params: dict[str, Any]) -> dict[str, Any]:
    """A fixed trial's parameters as Optuna's enqueue_trial takes them."""
    return {key: optuna_choice(value) for key, value in params.items()}


def representative_values(param: Param) -> list[Any]:
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    return [param.low, param.high]


def check_space(space: dict[str, Param], base_raw: dict[str, Any], source: str) -> None:
    """Every key must be a run-config key that accepts the range's ends; conditions must be resolvable."""
    if not space:
        raise ConfigError(f"{source}: the search space is empty")
    base = trial_run_config(base_raw, {}, f"{source}, field 'base'")
    base_values = base.model_dump(mode="json")
    earlier: list[str] = []
    for key, param in space.items():
        for value in representative_values(param):
            try:
                trial_run_config(base_raw, {key: value}, source)
            except ConfigError as error:
                raise ConfigError(f"{source}, field 'space.{key}' (value {value!r}):\n{error}") from None
        for condition_key in param.when or {}:
            if condition_key == key:
                raise ConfigError(f"{source}, field 'space.{key}.when': a parameter cannot depend on itself")
            if condition_key in space and condition_key not in earlier:
                raise ConfigError(
                    f"{source}, field 'space.{key}.when': '{condition_key}' is a parameter listed after "
                    f"'{key}'; list it before"
                )
            if condition_key not in space and get_dotted(base_values, condition_key, KeyError) is KeyError:
                raise ConfigError(
                    f"{source}, field 'space.{key}.when': '{condition_key}' is neither a search parameter "
                    "nor a run-config key"
                )
        earlier.append(key)


def grid_values(key: str, param: Param) -> list[Any]:
    """Every value a grid search visits for one parameter."""
    if isinstance(param, CategoricalParam):
        return [optuna_choice(choice) for choice in param.choices]
    if isinstance(param, IntParam):
        if param.log:
            raise ConfigError(f"space.{key}: the grid sampler cannot enumerate a log-scale int; use choices")
        return list(range(param.low, param.high + 1, param.step))
    if param.step is None:
        raise ConfigError(
            f"space.{key}: the grid sampler needs a step for a float (or type: categorical with choices)"
        )
    count = int(np.floor((param.high - param.low) / param.step + 1e-9)) + 1
    return [float(round(param.low + index * param.step, 12)) for index in range(count)]


def grid_search_space(space: dict[str, Param]) -> dict[str, list[Any]]:
    conditional = [key for key, param in space.items() if param.when]
    if conditional:
        raise ConfigError(
            f"the grid sampler visits every combination and cannot skip conditional parameters "
            f"({', '.join(conditional)}); use sampler tpe or random, or drop `when`"
        )
    return {key: grid_values(key, param) for key, param in space.items()}


def grid_size(space: dict[str, Param]) -> int:
    return int(np.prod([len(values) for values in grid_search_space(space).values()]))


def iter_grid(space: dict[str, Param]):
    grid = grid_search_space(space)
    for combination in itertools.product(*grid.values()):
        yield dict(zip(grid, combination, strict=True))
