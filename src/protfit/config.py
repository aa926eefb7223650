"""The one typed configuration of a run, validated once at the edge.

A config comes from a YAML file plus dotted ``key=value`` overrides (``train.epochs=3``); the CLI,
the Python API and (later) the web UI all build a :class:`RunConfig` and hand it to the same
functions. Unknown keys are errors, never silently ignored, and the message names the key and the
keys that are allowed there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protfit.config_messages import FieldProblem, validation_problems
from protfit.registry import (
    FAMILIES,
    FEATURES,
    HEADS,
    METHODS,
    PLUGINS,
    POOLERS,
    SCHEDULERS,
    TRACKERS,
    Entry,
    Registry,
    RegistryError,
)
from protfit.regularization.config import (
    assemble_regularization_config,
    check_regularization,
)

# The residue letters the data validation accepts (20 standard, X, and the rare/ambiguous B Z U O).
REFERENCE_RESIDUES = "ACDEFGHIKLMNPQRSTVWYXBZUO"

ProblemType = Literal["single_label_classification", "multi_label_classification", "regression"]

DEFAULT_METRICS: dict[str, list[str]] = {
    "single_label_classification": ["accuracy", "f1", "mcc", "auroc"],
    "multi_label_classification": ["f1_max", "auroc", "f1"],
    "regression": ["spearman", "pearson", "mse", "mae", "r2"],
}
DEFAULT_MONITOR: dict[str, str] = {
    "single_label_classification": "mcc",
    "multi_label_classification": "f1_max",
    "regression": "spearman",
}


class ConfigError(ValueError):
    """A configuration the user wrote is invalid; the message says which key and what is allowed.
    ``problems`` holds the same per key (from a validation error), for a front end's own labels."""

    def __init__(self, message: str, problems: tuple[FieldProblem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class _Section(BaseModel):
    # frozen: a config is validated once and then only read; a changed setting is a new config
    # (``model_copy(update=...)``), so no stage can see a value that skipped validation
    model_config = ConfigDict(extra="forbid", frozen=True)


def _registered(registry: Registry, name: str) -> str:
    """Field validator body: the name if the registry knows it, else the registry's message."""
    try:
        return registry.check(name)
    except RegistryError as error:
        raise ValueError(str(error).split(": ", 1)[1]) from None


class DataConfig(_Section):
    path: str = Field(description="Folder with train/validation/test files, or a Hugging Face dataset id")
    train_file: str | None = Field(None, description="Explicit train file (overrides discovery in `path`)")
    validation_file: str | None = Field(
        None,
        description="Explicit validation file (overrides discovery of validation.*, valid.*, val.*, dev.*)",
    )
    test_file: str | None = Field(
        None, description="Explicit test file (overrides discovery of test.*); no test split: no test metrics"
    )
    problem_type: ProblemType = Field(
        description="single_label_classification: one class per sequence; multi_label_classification: "
        "a set of classes per sequence; regression: one number per sequence"
    )
    num_labels: int | None = Field(
        None, ge=1, description="Classes for classification; inferred from the labels when omitted"
    )
    label_names: list[str] | None = Field(None, description="Class names, index i names label i")
    sequence_column: str = Field("aa_seq", description="Column holding the amino-acid sequences")
    label_column: str = Field(
        "label", description="Column holding the labels (multi-label: class indices such as 0,4,7)"
    )
    name_column: str = Field(
        "name", description="Column with sequence names (optional; missing names become <split>_<row>)"
    )
    foldseek_column: str = Field(
        "foldseek_seq",
        description="Column with Foldseek 3Di structure strings (read by model.method=ses_adapter)",
    )
    ss8_column: str = Field(
        "ss8_seq", description="Column with DSSP 8-state secondary structure strings (read by ses_adapter)"
    )
    unknown_residues: Literal["error", "map_to_x"] = Field(
        "error",
        description="Letters outside the 20 standard residues, X and the rare/ambiguous B Z U O: stop with an error, or map to X",
    )
    max_seq_len: int | None = Field(
        1022, ge=1, description="Residues kept per sequence; longer ones follow `truncation`"
    )
    truncation: Literal["keep_start", "error"] = Field(
        "keep_start", description="keep_start: keep the first max_seq_len residues (counted and reported)"
    )
    batch_size: int = Field(
        16,
        ge=1,
        description="Sequences per batch (per process); one optimizer step sees "
        "batch_size x train.gradient_accumulation_steps sequences",
    )
    max_tokens_per_batch: int | None = Field(
        None, ge=1, description="Token budget per batch (batch token mode); overrides batch_size"
    )
    num_workers: int = Field(
        0, ge=0, description="Data-loading worker processes; 0: load batches in the training process"
    )
    reference_sequence: str | None = Field(
        None,
        description="Reference (wild-type) sequence that zero-shot scores compare variants with "
        "(truncated like the data); None: the most common training sequence, else the per-position "
        "consensus of the training sequences",
    )

    @field_validator("reference_sequence")
    @classmethod
    def _reference_residues(cls, sequence: str | None) -> str | None:
        if sequence is None:
            return None
        sequence = sequence.strip().upper()
        unknown = sorted(set(sequence) - set(REFERENCE_RESIDUES))
        if not sequence or unknown:
            raise ValueError(
                f"data.reference_sequence must be residue letters ({REFERENCE_RESIDUES}); "
                f"found {''.join(unknown) or 'nothing'}"
            )
        return sequence

    @model_validator(mode="after")
    def _labels_consistent(self) -> DataConfig:
        names, count = self.label_names, self.num_labels
        if names is not None and count is not None and len(names) != count:
            raise ValueError(f"data.label_names has {len(names)} names but data.num_labels is {count}")
        if self.problem_type == "regression" and (self.num_labels not in (None, 1)):
            raise ValueError("data.num_labels must be 1 or omitted for regression")
        return self


class HeadConfig(_Section):
    type: str = Field("mlp", description="Head architecture (a registered head): mlp")
    hidden_dims: list[int] = Field(
        default_factory=lambda: [256], description="Hidden layer sizes; [] = linear"
    )
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Dropout probability after each hidden layer of the head (0: off)"
    )
    norm: Literal["none", "layernorm", "batchnorm"] = Field(
        "none", description="Normalisation after each hidden layer's linear map: none, layernorm, batchnorm"
    )
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field(
        "gelu", description="Activation after each hidden layer"
    )
    init: Literal["xavier", "kaiming", "normal"] = Field(
        "xavier",
        description="Initialisation of the head's linear weights: xavier (uniform), kaiming (uniform), "
        "normal (std 0.02); biases start at 0",
    )

    @field_validator("type")
    @classmethod
    def _known_head(cls, name: str) -> str:
        return _registered(HEADS, name)


class LoraConfig(_Section):
    """Settings of the PEFT methods (lora, dora, adalora, ia3, qlora); see docs/methods.md."""

    r: int = Field(8, ge=1, description="lora/dora/qlora: adapter rank")
    alpha: int = Field(16, ge=1, description="lora/dora/adalora/qlora: scaling numerator (scale = alpha / r)")
    dropout: float = Field(
        0.05, ge=0.0, lt=1.0, description="lora/dora/adalora/qlora: dropout on the adapter input"
    )
    target_modules: list[str] | None = Field(
        None,
        description="Linear layers that get adapters (names or dotted suffixes); None: the family's default",
    )
    feedforward_modules: list[str] | None = Field(
        None,
        description="ia3: target modules scaled on their input (feed-forward); None: the family's default "
        "when target_modules is None, else none",
    )
    adalora_init_r: int = Field(12, ge=1, description="adalora: starting rank of every adapted matrix")
    adalora_target_r: int = Field(
        8, ge=1, description="adalora: average rank per matrix left after rank allocation"
    )
    adalora_tinit_ratio: float = Field(
        0.1, ge=0.0, lt=1.0, description="adalora: share of optimizer steps at full rank before pruning"
    )
    adalora_tfinal_ratio: float = Field(
        0.2, ge=0.0, lt=1.0, description="adalora: share of final optimizer steps with the ranks fixed"
    )
    adalora_orth_reg_weight: float = Field(
        0.5, ge=0.0, description="adalora: weight of the orthogonality regulariser on A and B (0: off)"
    )
    qlora_bits: Literal[4, 8] = Field(
        4, description="qlora: bits of the frozen base weights (4: NF4 + double quantization, 8: LLM.int8)"
    )

    @model_validator(mode="after")
    def _adalora_schedule(self) -> LoraConfig:
        if self.adalora_target_r >= self.adalora_init_r:
            raise ValueError(
                f"adalora_target_r ({self.adalora_target_r}) must be below adalora_init_r "
                f"({self.adalora_init_r}): AdaLoRA prunes ranks from init_r down to target_r"
            )
        if self.adalora_tinit_ratio + self.adalora_tfinal_ratio >= 1.0:
            raise ValueError(
                "adalora_tinit_ratio + adalora_tfinal_ratio must be below 1, leaving steps for rank allocation"
            )
        return self


class SesConfig(_Section):
    """The structure-aware adapter (model.method=ses_adapter); ignored by the other methods."""

    structure_inputs: list[Literal["foldseek", "ss8"]] = Field(
        default_factory=lambda: ["foldseek", "ss8"],
        min_length=1,
        description="Structure strings the adapter reads: foldseek (3Di, data.foldseek_column), ss8 (DSSP)",
    )
    embedding_dim: int = Field(128, ge=1, description="Structure token embedding and attention size")
    num_heads: int = Field(4, ge=1, description="Cross-attention heads; must divide embedding_dim")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on attention weights and output")

    @model_validator(mode="after")
    def _consistent(self) -> SesConfig:
        if len(set(self.structure_inputs)) != len(self.structure_inputs):
            raise ValueError(f"model.ses.structure_inputs lists an input twice: {self.structure_inputs}")
        if self.embedding_dim % self.num_heads:
            raise ValueError(
                f"model.ses.embedding_dim={self.embedding_dim} is not divisible by "
                f"model.ses.num_heads={self.num_heads}"
            )
        if (self.embedding_dim // self.num_heads) % 2:
            raise ValueError(
                "model.ses.embedding_dim / model.ses.num_heads must be even (rotary positions rotate pairs)"
            )
        return self


class ModelConfig(_Section):
    name: str = Field(description="Hugging Face hub id, local model folder, or alias (antiberty, onehot)")
    family: str = Field(
        "auto", description="auto: detected from the model's config.json; or esm, bert, t5, onehot"
    )
    method: str = Field(
        "freeze",
        description="Training method: freeze, full, lora, dora, adalora, ia3, qlora (docs/methods.md)",
    )
    pooler: str = Field("mean", description="mean, attention1d, light_attention, cls, flatten")
    pooler_dropout: float = Field(0.25, ge=0.0, lt=1.0, description="Dropout inside attention poolers")
    embedding_cache: bool = Field(
        True,
        description="Frozen backbone (method freeze): compute its outputs once, store them on disk "
        "(PROTFIT_CACHE/embeddings) and train the pooler and head on them; false: run the backbone every batch",
    )
    extra_features: list[str] = Field(
        default_factory=list,
        description="Per-sequence features concatenated (standardised on train) to the pooled vector "
        "before the head: zero_shot (the masked-LM score against data.reference_sequence; one-hot + "
        "zero_shot is Hsu et al. 2022's augmented model), onehot (the position-wise one-hot of the "
        "sequence up to data.max_seq_len, not standardised: residue identities beside a frozen "
        "model's pooled vector)",
    )
    zero_shot_model: str | None = Field(
        None,
        description="Masked language model (ESM or BERT family, e.g. antiberty) that computes zero-shot "
        "scores for model.extra_features and the zero_shot baseline; None: the run's own model.name",
    )
    head: HeadConfig = Field(default_factory=HeadConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    ses: SesConfig = Field(default_factory=SesConfig)

    @field_validator("family")
    @classmethod
    def _known_family(cls, name: str) -> str:
        return name if name == "auto" else _registered(FAMILIES, name)

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        return _registered(METHODS, name)

    @field_validator("pooler")
    @classmethod
    def _known_pooler(cls, name: str) -> str:
        return _registered(POOLERS, name)

    @field_validator("extra_features")
    @classmethod
    def _known_features(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"model.extra_features names a feature twice: {names}")
        return [_registered(FEATURES, name) for name in names]

    @property
    def zero_shot_scorer(self) -> str:
        """The masked language model that computes zero-shot scores."""
        return self.zero_shot_model or self.name

    @property
    def structure_inputs(self) -> list[str]:
        """Structure strings the batches must carry: the ses_adapter's selection, none for other methods."""
        return list(self.ses.structure_inputs) if self.method == "ses_adapter" else []


class SchedulerConfig(_Section):
    name: str = Field(
        "linear",
        description="none, constant, linear, cosine, cosine_with_restarts, polynomial, step (docs: `protfit models`)",
    )
    warmup_steps: int = Field(0, ge=0, description="Warm-up optimizer steps (or use warmup_ratio)")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Warm-up as a share of all optimizer steps")
    num_cycles: int = Field(1, ge=1, description="cosine_with_restarts: number of hard restarts")
    power: float = Field(1.0, gt=0.0, description="polynomial: decay power")
    lr_end: float = Field(0.0, ge=0.0, description="polynomial: final learning rate")
    step_size: int = Field(100, ge=1, description="step: optimizer steps between decays")
    gamma: float = Field(0.5, gt=0.0, le=1.0, description="step: decay factor")

    @field_validator("name")
    @classmethod
    def _known_scheduler(cls, name: str) -> str:
        return _registered(SCHEDULERS, name)

    @model_validator(mode="after")
    def _one_warmup(self) -> SchedulerConfig:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("give train.scheduler.warmup_steps or train.scheduler.warmup_ratio, not both")
        return self


class EarlyStoppingConfig(_Section):
    monitor: str | None = Field(
        None, description="Validation metric or 'loss'; None: the problem type's default"
    )
    patience: int | None = Field(
        5, ge=1, description="Epochs without improvement before stopping; None: never stop"
    )
    min_delta: float = Field(
        0.0, ge=0.0, description="Smallest change of the monitored value that counts as an improvement"
    )


class TrainConfig(_Section):
    epochs: int = Field(
        10, ge=1, description="Passes over the training split (the most; early stopping may end sooner)"
    )
    learning_rate: Annotated[float, Field(gt=0.0)] | Literal["auto"] = Field(
        1e-3,
        description="Peak learning rate; auto: run the learning-rate range test first and use its "
        "suggestion (recorded in config.yaml and summary.json, see docs/sweeps.md)",
    )
    weight_decay: float = Field(
        0.01, ge=0.0, description="AdamW decoupled weight decay of weight matrices (biases and norms get 0)"
    )
    gradient_accumulation_steps: int = Field(
        1,
        ge=1,
        description="Batches whose gradients are summed into one optimizer step (a larger effective batch)",
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0.0, description="Clip the global gradient norm to this before each step; None: no clipping"
    )
    seed: int = Field(
        42, description="Random seed of weight initialisation, batch order and the run's random subsets"
    )
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(
        "no", description="Opt-in; bf16 matmuls are far slower than fp32 on CPUs without AMX"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: a CUDA GPU when one is visible, else the CPU; cuda fails without a GPU"
    )
    progress: bool = Field(True, description="Show progress bars")


class BootstrapConfig(_Section):
    resamples: int = Field(
        1000,
        ge=10,
        description="Bootstrap resamples of the test set behind each metric's confidence interval",
    )
    confidence: float = Field(
        0.95, gt=0.0, lt=1.0, description="Coverage of the percentile intervals (0.95: 2.5th to 97.5th)"
    )
    seed: int = Field(0, description="Seed of the resampling, so intervals are reproducible")


class BaselineConfig(_Section):
    enabled: bool = Field(
        True,
        description="Score trivial baselines (constant prediction, a linear model on one-hot or "
        "composition) on the test set next to the model",
    )
    shuffled_labels: bool = Field(False, description="Also train this model on shuffled labels (costs a run)")
    zero_shot: Literal["auto", True, False] = Field(
        "auto",
        description="Zero-shot masked-LM score of the test sequences as a baseline (and one-hot + score "
        "ridge): auto: when every sequence has the reference's length and a masked LM is at hand; "
        "true: also for other lengths (pseudo-log-likelihood, one forward pass per residue); false: off",
    )


class EvaluationConfig(_Section):
    metrics: list[str] | None = Field(None, description="None: the problem type's defaults")
    multi_label_threshold: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="multi-label: a class is predicted when its probability is at least this",
    )
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    baselines: BaselineConfig = Field(default_factory=BaselineConfig)


class CheckpointConfig(_Section):
    keep_last: bool = Field(
        False,
        description="Keep checkpoints/last (the weights plus optimizer, scheduler and RNG state: about 3x "
        "the trained weights with AdamW) after the run has finished, so that `--resume` can train it for "
        "more epochs; by default a finished run keeps only checkpoints/best and such a resume is refused. "
        "An interrupted run always keeps it",
    )
    last_every_epochs: int | None = Field(
        1,
        ge=1,
        description="Write checkpoints/last (what `--resume` continues from) at the end of every this many "
        "epochs; null: only by last_every_minutes, or never when that is null too (the run then cannot "
        "be resumed; sweep trials run this way, a killed trial is run again from its start)",
    )
    last_every_minutes: float | None = Field(
        None,
        gt=0,
        description="Also write checkpoints/last at the end of an epoch once this many minutes have passed "
        "since it was last written (needs last_every_epochs null or above 1)",
    )

    @model_validator(mode="after")
    def _minutes_matter(self) -> CheckpointConfig:
        if self.last_every_minutes is not None and self.last_every_epochs == 1:
            raise ValueError(
                "output.checkpoints.last_every_minutes does nothing while last_every_epochs is 1 (every "
                "epoch already writes it): set last_every_epochs to null or above 1"
            )
        return self


class OutputConfig(_Section):
    dir: str = Field("runs", description="Parent folder of run folders")
    name: str | None = Field(None, description="Run folder name; None: <model>-<method>-<timestamp>")
    overwrite: bool = Field(
        False, description="Replace an existing run folder: the old one is deleted, nothing of it is kept"
    )
    trackers: list[str] = Field(
        default_factory=list,
        description="Experiment trackers to log to: any of tensorboard, wandb, mlflow (docs/compare.md)",
    )
    checkpoints: CheckpointConfig = Field(
        default_factory=CheckpointConfig,
        description="How often checkpoints/last is written and whether a finished run keeps it (docs/runs.md)",
    )

    @field_validator("name")
    @classmethod
    def _stays_inside_dir(cls, name: str | None) -> str | None:
        # The run folder must be a direct child of output.dir: overwrite deletes it, so a name that
        # climbs out (`../x`, `/abs`) could delete or mix into folders that are not runs.
        if name is None:
            return name
        if name in ("", ".", "..") or "/" in name or "\\" in name or Path(name).is_absolute():
            raise ValueError(
                f"output.name '{name}' must be a plain folder name inside output.dir (no '/', '\\', "
                "'.' or '..'); put the parent folders in output.dir"
            )
        return name

    @field_validator("trackers")
    @classmethod
    def _known_trackers(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"output.trackers names a tracker twice: {names}")
        return [_registered(TRACKERS, name) for name in names]


# The `regularization:` section holds one sub-section per registered regularizer (built-in or from a
# user plug-in module); RunConfig is rebuilt when a plug-in module registers one later (below).
_Regularization = assemble_regularization_config()


class RunConfig(_Section):
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    regularization: _Regularization = Field(  # type: ignore[valid-type]
        default_factory=_Regularization,
        description="Regularizers and overfitting diagnostics (docs/regularization.md)",
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        from protfit.metrics import metrics_for  # the metric registry (imports torchmetrics)

        problem = self.data.problem_type
        allowed = metrics_for(problem)
        for metric in self.evaluation.metrics or []:
            if metric not in allowed:
                raise ValueError(
                    f"evaluation.metrics: '{metric}' is not a {problem} metric; choose from {allowed}"
                )
        monitor = self.train.early_stopping.monitor
        if monitor is not None and monitor != "loss" and monitor not in allowed:
            raise ValueError(
                f"train.early_stopping.monitor: '{monitor}' is not a {problem} metric; "
                f"choose 'loss' or one of {allowed}"
            )
        check_regularization(self)
        self._check_extra_features()
        return self

    def _check_extra_features(self) -> None:
        wanted = [
            key
            for key, on in (
                ("model.extra_features=[zero_shot]", "zero_shot" in self.model.extra_features),
                ("evaluation.baselines.zero_shot=true", self.evaluation.baselines.zero_shot is True),
            )
            if on
        ]
        if "onehot" in self.model.extra_features and self.data.max_seq_len is None:
            raise ValueError(
                "model.extra_features=[onehot] needs data.max_seq_len: the one-hot block has "
                "max_seq_len x 21 columns (set it to the variants' length)"
            )
        if wanted and self.model.zero_shot_scorer.lower() == "onehot":
            raise ValueError(
                f"{wanted[0]} needs a masked language model to score with, and model.name is onehot; "
                "set model.zero_shot_model (e.g. antiberty)"
            )
        if (
            self.evaluation.baselines.zero_shot is True
            and self.data.problem_type == "multi_label_classification"
        ):
            raise ValueError(
                "evaluation.baselines.zero_shot=true: one score per sequence cannot rank several labels "
                "(regression or two-class classification only)"
            )

    @property
    def metric_names(self) -> list[str]:
        """The metrics computed on validation and test: ``evaluation.metrics`` (or the problem type's
        defaults) plus the monitored metric, so early stopping never looks for one not computed."""
        names = list(self.evaluation.metrics or DEFAULT_METRICS[self.data.problem_type])
        if self.monitor != "loss" and self.monitor not in names:
            names.append(self.monitor)
        return names

    @property
    def monitor(self) -> str:
        return self.train.early_stopping.monitor or DEFAULT_MONITOR[self.data.problem_type]

    @property
    def monitor_mode(self) -> Literal["min", "max"]:
        from protfit.metrics import metric_mode

        return metric_mode(self.monitor)


def refresh_regularization_schema() -> None:
    """Rebuild the `regularization:` section from the regularizers registered now: called when a user
    plug-in module registers one after the built-ins, so the config validates it and the web UI shows it."""
    field = RunConfig.model_fields["regularization"]
    field.annotation = field.default_factory = assemble_regularization_config()
    RunConfig.model_rebuild(force=True)


def _on_new_plugin(entry: Entry[Any]) -> None:
    if "section" in entry.options:  # a regularizer (trackers have no section)
        refresh_regularization_schema()


PLUGINS.subscribe(_on_new_plugin)


def with_learning_rate(cfg: RunConfig, learning_rate: float) -> RunConfig:
    """A new config equal to ``cfg`` but for ``train.learning_rate`` (how ``auto`` is resolved: the
    validated config is never changed in place)."""
    if not learning_rate > 0:
        raise ValueError(f"train.learning_rate must be above 0 (got {learning_rate})")
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"learning_rate": learning_rate})})


def _parse_value(text: str) -> Any:
    """`key=value` values are YAML scalars/lists, so `a=3`, `a=null`, `a=[x,y]` mean what they look like."""
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. train.epochs=3)")
        dotted, value = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{key}' holds a value, not a section")
            node = child
        node[keys[-1]] = _parse_value(value)
    return raw


def _allowed_keys(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    for part in location[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return sorted(model.model_fields)


def format_validation_error(
    error: ValidationError,
    title: str,
    allowed_keys: Callable[[tuple[Any, ...]], list[str]],
    messages: dict[str, str] | None = None,
    model: type[BaseModel] | None = None,
) -> str:
    """One line per key: unknown keys with the keys allowed there, missing keys, bad values with
    what is allowed (:mod:`protfit.config_messages`). Shared by the run config and the sweep file."""
    problems = validation_problems(error, allowed_keys, messages, model)
    return "\n".join([f"{title}:", *(f"  - {problem.line()}" for problem in problems)])


def build_config(raw: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        title = f"invalid configuration ({source})"
        allowed = lambda location: _allowed_keys(RunConfig, location)  # noqa: E731
        raise ConfigError(
            format_validation_error(error, title, allowed, model=RunConfig),
            tuple(validation_problems(error, allowed, model=RunConfig)),
        ) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    raw: dict[str, Any] = {}
    source = "overrides"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of sections (data, model, train, ...)")
        source = str(path)
    raw = apply_overrides(raw, overrides or [])
    return build_config(raw, source)


def rerun_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A run folder's resolved config, ready to train again in a new run folder: output.name unset, no
    overwrite, and `last` written on the default schedule (a sweep trial's config writes none: a killed
    trial is run again, never resumed; a run of its own should be resumable)."""
    config = copy.deepcopy(raw)
    output = config.setdefault("output", {})
    output.update(name=None, overwrite=False)
    for key in ("last_every_epochs", "last_every_minutes"):
        output.get("checkpoints", {}).pop(key, None)
    return config


def save_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def ignored_settings(cfg: RunConfig) -> list[tuple[str, str]]:
    """(key, reason) for each setting the user gave that the chosen method, pooler or scheduler ignores.

    A key counts when it was given and differs from its default: a config written out in full (a
    run folder's ``config.yaml``, the stages of ``protfit tune``, a saved web UI form) repeats every
    default, and those change nothing. Each registry entry lists in its ``uses`` option the keys of
    its section it reads.
    """
    found: list[tuple[str, str]] = []
    model = cfg.model
    method_uses = set(METHODS.entry(model.method).options.get("uses", ()))
    for section in ("lora", "ses"):
        for key in changed_fields(getattr(model, section)):
            if f"{section}.{key}" not in method_uses:
                found.append((f"model.{section}.{key}", f"model.method={model.method} does not use it"))
    model_changed = changed_fields(model)
    if "embedding_cache" in model_changed and "embedding_cache" not in method_uses:
        found.append(("model.embedding_cache", f"model.method={model.method} trains through the backbone"))
    if "pooler_dropout" in model_changed and "pooler_dropout" not in POOLERS.entry(model.pooler).options.get(
        "uses", ()
    ):
        found.append(("model.pooler_dropout", f"model.pooler={model.pooler} has no dropout"))
    schedule = cfg.train.scheduler
    scheduler_uses = set(SCHEDULERS.entry(schedule.name).options.get("uses", ()))
    for key in changed_fields(schedule) - {"name", "warmup_steps", "warmup_ratio"} - scheduler_uses:
        found.append((f"train.scheduler.{key}", f"train.scheduler.name={schedule.name} does not use it"))
    for name in cfg.regularization.techniques():
        section = getattr(cfg.regularization, name)
        if not section.enabled:
            for key in changed_fields(section) - {"enabled"}:
                found.append((f"regularization.{name}.{key}", f"regularization.{name}.enabled is false"))
    return sorted(found)


def changed_fields(section: BaseModel) -> set[str]:
    """Fields of ``section`` that were given a value other than their default."""
    fields = type(section).model_fields
    return {
        key
        for key in section.model_fields_set
        if key in fields and getattr(section, key) != fields[key].get_default(call_default_factory=True)
    }
