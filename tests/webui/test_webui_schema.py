"""Option widgets come from the RunConfig schema; the UI refuses what build_config refuses."""

from __future__ import annotations

import pytest
from pydantic import Field

from protfit import config as config_module
from protfit.config import ConfigError, build_config
from protfit.registry import METHODS, POOLERS, SCHEDULERS
from protfit.webui import schema


def specs_by_key() -> dict[str, schema.FieldSpec]:
    return {spec.key: spec for spec in schema.field_specs()}


def test_widgets_follow_field_types_defaults_limits_and_choices() -> None:
    specs = specs_by_key()
    assert specs["data.problem_type"].kind == "dropdown" and specs["data.problem_type"].required
    assert specs["data.problem_type"].choices == (
        "single_label_classification",
        "multi_label_classification",
        "regression",
    )
    assert specs["model.method"].choices == tuple(METHODS.names())
    assert specs["model.pooler"].choices == tuple(POOLERS.names())
    assert specs["train.scheduler.name"].choices == tuple(SCHEDULERS.names())
    assert specs["model.family"].choices[0] == "auto"
    assert specs["model.name"].allow_custom and "tiny-esm2" in specs["model.name"].choices
    assert specs["evaluation.metrics"].kind == "multiselect"
    assert specs["model.ses.structure_inputs"].choices == ("foldseek", "ss8")
    epochs = specs["train.epochs"]
    assert (epochs.kind, epochs.integer, epochs.default, epochs.minimum) == ("number", True, 10, 1)
    assert "(allowed: ≥ 0.0)" in specs["train.weight_decay"].info
    assert "(allowed: > 0.0)" in specs["train.max_grad_norm"].info
    assert specs["train.progress"].kind == "checkbox"
    assert specs["model.head.dropout"].default == 0.1
    assert schema.yaml_text(0.001) == "0.001" and schema.yaml_text([64, 32]) == "[64, 32]"
    assert (
        specs["model.head.hidden_dims"].kind == "yaml" and specs["model.head.hidden_dims"].default == "[256]"
    )
    assert specs["model.embedding_cache"].info.startswith("Frozen backbone")
    assert not {"data.path", "output.dir", "output.name", "output.overwrite"} & set(specs)
    extra = specs["model.extra_features"]
    assert (extra.kind, extra.choices, extra.default) == ("multiselect", ("onehot", "zero_shot"), [])
    zero_shot = specs["evaluation.baselines.zero_shot"]
    assert (zero_shot.kind, zero_shot.choices, zero_shot.default) == (
        "dropdown",
        ("auto", True, False),
        "auto",
    )
    assert specs["model.zero_shot_model"].kind == "text" and specs["data.reference_sequence"].kind == "text"


def test_options_show_only_for_the_choices_that_use_them() -> None:
    values = {"model.method": "freeze", "model.pooler": "mean", "train.scheduler.name": "linear"}
    assert not schema.is_visible("model.lora.r", values)
    assert schema.is_visible("model.embedding_cache", values)
    assert schema.is_visible("model.lora.r", {**values, "model.method": "lora"})
    assert not schema.is_visible("model.lora.adalora_init_r", {**values, "model.method": "lora"})
    assert schema.is_visible("model.lora.adalora_init_r", {**values, "model.method": "adalora"})
    assert schema.is_visible("model.ses.num_heads", {**values, "model.method": "ses_adapter"})
    assert not schema.is_visible("model.ses.num_heads", values)
    assert not schema.is_visible("model.pooler_dropout", values)
    assert schema.is_visible("model.pooler_dropout", {**values, "model.pooler": "attention1d"})
    assert not schema.is_visible("train.scheduler.gamma", values)
    assert schema.is_visible("train.scheduler.gamma", {**values, "train.scheduler.name": "step"})
    assert schema.is_visible("train.scheduler.warmup_ratio", values)
    assert schema.is_visible("train.epochs", values)


def form_values(**changes: object) -> list[object]:
    specs = schema.field_specs()
    values = {spec.key: spec.default for spec in specs}
    values.update({"data.problem_type": "regression", "model.name": "tiny-esm2"})
    values.update({key.replace("__", "."): value for key, value in changes.items()})
    return [values[spec.key] for spec in specs]


def test_values_become_a_short_config_without_hidden_options() -> None:
    specs = schema.field_specs()
    raw = schema.values_to_raw(
        specs,
        form_values(
            train__epochs=3.0,
            model__lora__r=32,
            model__head__hidden_dims="[64, 32]",
            train__early_stopping__patience="",
        ),
    )
    # lora.r is hidden with method freeze, so it is left out (never silently carried along)
    assert raw == {
        "data": {"problem_type": "regression"},
        "model": {"name": "tiny-esm2", "head": {"hidden_dims": [64, 32]}},
        "train": {"epochs": 3, "early_stopping": {"patience": None}},
    }
    raw["data"]["path"] = "x"
    config = schema.build(raw)
    assert config.train.epochs == 3 and config.train.early_stopping.patience is None
    assert schema.raw_to_values(specs, raw) == form_values(
        train__epochs=3, model__head__hidden_dims="[64, 32]", train__early_stopping__patience=None
    )


def test_the_augmented_model_and_the_zero_shot_switch_come_from_the_form() -> None:
    specs = schema.field_specs()
    values = form_values(
        model__name="onehot",
        model__pooler="flatten",
        model__extra_features=["zero_shot"],
        model__zero_shot_model="antiberty",
        evaluation__baselines__zero_shot=False,
    )
    raw = schema.values_to_raw(specs, values)
    raw["data"]["path"] = "x"
    config = schema.build(raw)
    assert config.model.extra_features == ["zero_shot"] and config.model.zero_shot_scorer == "antiberty"
    assert config.evaluation.baselines.zero_shot is False


@pytest.mark.parametrize(
    "changes",
    [
        {"train__epochs": 0},
        {"model__head__dropout": 1.5},
        {"train__scheduler__name": "step", "train__scheduler__gamma": 2.0},
        {"train__early_stopping__patience": "soon"},
        {"model__method": "ses_adapter", "model__ses__num_heads": 3},
        {"model__name": "onehot", "model__extra_features": ["zero_shot"]},
    ],
)
def test_refused_with_the_message_of_build_config(changes: dict[str, object]) -> None:
    raw = schema.values_to_raw(schema.field_specs(), form_values(**changes))
    raw["data"]["path"] = "x"
    with pytest.raises(ConfigError) as from_ui:
        schema.build(raw)
    with pytest.raises(ConfigError) as from_cli:
        build_config(raw, "web UI")
    assert str(from_ui.value) == str(from_cli.value)
    assert "invalid configuration (web UI)" in str(from_ui.value)


def test_unparsable_list_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="'model.head.hidden_dims': not a YAML value"):
        schema.values_to_raw(schema.field_specs(), form_values(model__head__hidden_dims="[64,"))


def test_a_field_added_to_the_config_appears_in_the_train_tab(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """No UI code names config fields: a new one gets its widget, help text, limits and validation."""
    pytest.importorskip("gradio")
    from protfit.webui.app import build_app
    from protfit.webui.workspace import Workspace

    class TrainWithSmoothing(config_module.TrainConfig):
        label_smoothing: float = Field(
            0.0, ge=0.0, le=0.5, description="Share of the target mass spread over all classes"
        )

    class RunWithSmoothing(config_module.RunConfig):
        train: TrainWithSmoothing = Field(default_factory=TrainWithSmoothing)

    monkeypatch.setattr(config_module, "RunConfig", RunWithSmoothing)
    app = build_app(Workspace(tmp_path))
    widgets = app.protfit_train.form.widgets
    assert "train.label_smoothing" in widgets
    widget = widgets["train.label_smoothing"]
    assert (widget.label, widget.minimum, widget.maximum) == ("Label smoothing", 0.0, 0.5)
    assert widget.info.startswith("train.label_smoothing: Share of the target mass")
    raw = schema.values_to_raw(app.protfit_train.specs, form_values(train__label_smoothing=0.9))
    raw["data"]["path"] = "x"
    with pytest.raises(ConfigError, match="'train.label_smoothing': must be at least 0 and at most 0.5"):
        schema.build(raw)


def test_a_regularizers_settings_show_only_while_it_is_on() -> None:
    specs = {spec.key for spec in schema.field_specs()}
    assert {"regularization.ema.enabled", "regularization.ema.decay"} <= specs
    assert "regularization.ema.enabled" in schema.controlling_keys(schema.field_specs())
    assert schema.is_visible("regularization.ema.enabled", {"regularization.ema.enabled": False})
    assert not schema.is_visible("regularization.ema.decay", {"regularization.ema.enabled": False})
    assert schema.is_visible("regularization.ema.decay", {"regularization.ema.enabled": True})
    # a technique that is off writes none of its settings into the YAML
    raw = schema.values_to_raw(schema.field_specs(), form_values(regularization__ema__decay=0.5))
    assert "ema" not in raw.get("regularization", {})
    raw = schema.values_to_raw(
        schema.field_specs(), form_values(regularization__ema__enabled=True, regularization__ema__decay=0.5)
    )
    assert raw["regularization"]["ema"] == {"enabled": True, "decay": 0.5}


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("train.learning_rate", "Learning rate"),
        ("model.embedding_cache", "Embedding cache"),
        ("train.scheduler.name", "Scheduler name"),
        ("data.max_seq_len", "Max sequence length"),
        ("regularization.ema.enabled", "EMA enabled"),
    ],
)
def test_labels_are_words_and_the_key_is_in_the_help(key: str, label: str) -> None:
    spec = specs_by_key()[key]
    assert spec.label == label
    assert spec.help.startswith(f"{key}: ")
