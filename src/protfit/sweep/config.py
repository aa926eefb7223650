"""The sweep file: a base run config, a search space over any of its keys, and how to search.

```yaml
base: run.yaml                     # a run config file (relative to this file) or an inline mapping
overrides: [train.epochs=10]       # applied to the base in every trial
space:
  train.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
  model.head.dropout: {type: float, low: 0.0, high: 0.5}
  data.batch_size: {type: categorical, choices: [16, 32, 64]}
  model.lora.r: {type: int, low: 4, high: 32, log: true, when: {model.method: [lora, dora]}}
n_trials: 20
sampler: {name: tpe}
pruner: {name: median}
```

Validated once, like a run config: unknown keys are errors that list the allowed keys, and every
space key must be a key of the run config (checked against the base before any trial runs).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protfit.config import ConfigError, RunConfig, apply_overrides, build_config, format_validation_error

Scalar = bool | int | float | str | None
# A categorical choice may also be a list (model.head.hidden_dims: [[128], [32], []]); Optuna keeps it
# as its JSON text (its choices must be scalars) and the trial's run config gets the list.
Choice = Scalar | list[Scalar]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # validated once, then only read


class _Param(_Section):
    when: dict[str, list[Scalar]] | None = Field(
        None,
        description="Condition: sample this parameter only when every named key (a base config key or a "
        "parameter listed earlier) has one of the listed values, e.g. {model.method: [lora, dora]}",
    )


class FloatParam(_Param):
    type: Literal["float"] = Field(description="A real number in [low, high]")
    low: float = Field(description="Lower bound (included)")
    high: float = Field(description="Upper bound (included)")
    log: bool = Field(False, description="Sample uniformly in log space (learning rates, weight decay)")
    step: float | None = Field(None, gt=0, description="Discretise to low + k*step (not with log)")

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log=true needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("give log=true or a step, not both")
        return self


class IntParam(_Param):
    type: Literal["int"] = Field(description="An integer in [low, high]")
    low: int = Field(description="Lower bound (included)")
    high: int = Field(description="Upper bound (included)")
    log: bool = Field(False, description="Sample uniformly in log space")
    step: int = Field(1, ge=1, description="Spacing of the allowed values (1 with log)")

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("log=true needs low > 0 and step 1")
        return self


class CategoricalParam(_Param):
    type: Literal["categorical"] = Field(description="One of a list of values")
    choices: list[Choice] = Field(
        min_length=1,
        description="The values to choose from (scalars, or lists such as head widths [[128], []])",
    )


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
PARAM_TYPES: dict[str, type[BaseModel]] = {
    "float": FloatParam,
    "int": IntParam,
    "categorical": CategoricalParam,
}


class SamplerConfig(_Section):
    name: Literal["tpe", "random", "grid", "cmaes"] = Field(
        "tpe",
        description="tpe (default): Tree-structured Parzen Estimator; random; grid: every combination "
        "(categorical, int, or float with a step); cmaes: CMA-ES (float/int parameters; needs `cmaes`)",
    )
    seed: int | None = Field(0, description="Sampler seed (reproducible suggestions); None: random")
    n_startup_trials: int = Field(
        10, ge=0, description="tpe / cmaes: random trials before the model-based search starts"
    )


class PrunerConfig(_Section):
    name: Literal["none", "median", "successive_halving", "hyperband"] = Field(
        "median",
        description="Stop unpromising trials on their per-epoch validation reports: median (below the "
        "median of earlier trials at the same epoch), successive_halving, hyperband; none: never",
    )
    n_startup_trials: int = Field(5, ge=0, description="median: trials that are never pruned")
    n_warmup_steps: int = Field(0, ge=0, description="median: epochs reported before pruning starts")
    min_resource: int = Field(
        1, ge=1, description="successive_halving / hyperband: epochs a trial always gets"
    )
    reduction_factor: int = Field(
        3, ge=2, description="successive_halving / hyperband: keep 1 in reduction_factor trials per rung"
    )


class ObjectiveConfig(_Section):
    seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="Train every trial once per seed (train.seed); the objective is the mean, the spread "
        "is stored per trial",
    )
    cv: int | None = Field(
        None,
        ge=2,
        description="k-fold cross-validation on train+validation (stratified for single-label "
        "classification); the objective is the mean over folds, the spread is stored per trial",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ObjectiveConfig:
        if self.seeds is not None and self.cv is not None:
            raise ValueError("give objective.seeds or objective.cv, not both")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"objective.seeds lists a seed twice: {self.seeds}")
        return self


class StudyConfig(_Section):
    name: str | None = Field(None, description="Study name; None: the sweep folder's name")
    storage: str | None = Field(
        None,
        description="Optuna storage URL (e.g. postgresql://user@host/db) shared by workers on several "
        "machines; None: a SQLite file study.db inside the sweep folder",
    )
    heartbeat_interval: int = Field(
        10,
        ge=1,
        description="With a shared storage: seconds between the heartbeats a worker records for its "
        "running trial (Optuna's heartbeat)",
    )
    grace_period: int = Field(
        60,
        ge=1,
        description="With a shared storage: seconds without a heartbeat after which any worker marks a "
        "running trial failed (its worker died) and queues its parameters again",
    )

    @model_validator(mode="after")
    def _grace_after_heartbeat(self) -> StudyConfig:
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"study.grace_period ({self.grace_period}) must exceed study.heartbeat_interval "
                f"({self.heartbeat_interval}), or every trial would look dead between two heartbeats"
            )
        return self


class SweepOutputConfig(_Section):
    dir: str = Field("sweeps", description="Parent folder of sweep folders")
    name: str | None = Field(None, description="Sweep folder name; None: sweep-<timestamp>")
    keep_best_weights: int | None = Field(
        1,
        ge=0,
        description="How many of the best complete trials keep their weights (checkpoints/); the other "
        "trials' checkpoints are deleted as soon as they can no longer be among them (pruned, failed and "
        "collapsed trials at once), while every trial keeps its metrics, history and predictions. "
        "null: every trial keeps its weights",
    )


class SweepConfig(_Section):
    base: str | dict[str, Any] = Field(
        description="The run config every trial starts from: a YAML file (relative to the sweep file) "
        "or an inline mapping with data/model/train/... sections"
    )
    overrides: list[str] = Field(
        default_factory=list, description="Dotted key=value overrides applied to the base in every trial"
    )
    space: dict[str, Param] = Field(
        default_factory=dict,
        description="Search space: dotted run-config key -> parameter (float, int, categorical); "
        "entries here replace the preset's",
    )
    preset: str | None = Field(None, description="A ready-made space (`protfit sweep --list-presets`)")
    enqueue: list[dict[str, Choice]] = Field(
        default_factory=list,
        description="Trials run first with these parameter values, in order (e.g. the starting config as "
        "trial 0, so the sweep can never report a best value below it); each value must lie in its "
        "parameter's range; parameters left out are sampled",
    )
    n_trials: int = Field(20, ge=1, description="Trials that must finish (complete or pruned)")
    timeout: float | None = Field(
        None, gt=0, description="Seconds after which no new trial starts (running ones finish)"
    )
    n_jobs: int = Field(
        1,
        ge=1,
        description="Trials run in parallel on this machine (worker processes; CPU threads or GPUs split)",
    )
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)
    output: SweepOutputConfig = Field(default_factory=SweepOutputConfig)

    @model_validator(mode="after")
    def _space_given(self) -> SweepConfig:
        if not self.space and self.preset is None:
            raise ValueError("the sweep has no search space: give `space:` entries or a `preset:`")
        return self


def _allowed_keys(location: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = SweepConfig
    parts = list(location[:-1])
    while parts:
        part = str(parts.pop(0))
        if model is SweepConfig and part == "space":
            if len(parts) < 2:
                return []
            model = PARAM_TYPES.get(str(parts[1]), _Param)
            parts = parts[2:]
            continue
        annotation = getattr(model.model_fields.get(part), "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def build_sweep_config(raw: dict[str, Any], source: str = "sweep") -> SweepConfig:
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as error:
        tag = "give type: float, int or categorical"
        raise ConfigError(
            format_validation_error(
                error,
                f"invalid sweep file ({source})",
                _allowed_keys,
                {"union_tag_invalid": tag, "union_tag_not_found": tag},
            )
        ) from None


def load_sweep_config(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Read a sweep file; ``overrides`` are dotted keys of the sweep file itself (n_trials=10)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping (base, space, n_trials, ...)")
    raw = apply_overrides(raw, overrides or [])
    if isinstance(raw.get("base"), str):
        # a base file is found relative to the sweep file, so a sweep folder can be moved as a whole
        base = Path(raw["base"]).expanduser()
        if not base.is_absolute() and not base.is_file() and (path.parent / base).is_file():
            raw["base"] = str(path.parent / base)
    return build_sweep_config(raw, str(path))


def base_run_raw(sweep: SweepConfig, source: str = "sweep") -> dict[str, Any]:
    """The base run config as a raw mapping, with the sweep's overrides applied."""
    if isinstance(sweep.base, dict):
        raw = copy.deepcopy(sweep.base)
    else:
        path = Path(sweep.base).expanduser()
        if not path.is_file():
            raise ConfigError(f"{source}, field 'base': run config file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}, field 'base': {path} must hold a run config mapping")
    try:
        return apply_overrides(raw, list(sweep.overrides))
    except ConfigError as error:
        raise ConfigError(f"{source}, field 'overrides': {error}") from None


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set a dotted key in a nested mapping (values keep their type, unlike key=value strings)."""
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"'{key}': '{part}' holds a value, not a section")
        node = child
    node[parts[-1]] = value
    return raw


def get_dotted(raw: dict[str, Any], key: str, default: Any = None) -> Any:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def trial_run_config(base_raw: dict[str, Any], params: dict[str, Any], source: str) -> RunConfig:
    """The run config of one trial: the base with the trial's parameters set."""
    raw = copy.deepcopy(base_raw)
    for key, value in params.items():
        set_dotted(raw, key, value)
    return build_config(raw, source)
