import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from protfit.config import (
    ConfigError,
    RunConfig,
    build_config,
    ignored_settings,
    load_config,
    rerun_config,
    save_config,
    with_learning_rate,
)
from protfit.sweep.config import SweepConfig

BASE = {
    "data": {"path": "some/folder", "problem_type": "single_label_classification"},
    "model": {"name": "tiny-esm2"},
}


def write(tmp_path: Path, payload: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(payload))
    return path


def test_yaml_plus_overrides_are_typed(tmp_path):
    cfg = load_config(
        write(tmp_path, BASE),
        ["train.epochs=3", "model.head.hidden_dims=[64,32]", "train.max_grad_norm=null"],
    )
    assert cfg.train.epochs == 3
    assert cfg.model.head.hidden_dims == [64, 32]
    assert cfg.train.max_grad_norm is None


def test_unknown_key_names_key_and_allowed_keys(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, BASE), ["train.epoch=3"])
    message = str(error.value)
    assert "unknown key 'train.epoch'" in message
    assert "epochs" in message and "learning_rate" in message


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(
        ConfigError,
        match="unknown key 'trian'.*allowed here: data, evaluation, model, output, regularization, train",
    ):
        load_config(write(tmp_path, {**BASE, "trian": {}}))


def test_bad_literal_value_lists_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, BASE), ["train.scheduler.name=cosin"])
    assert "train.scheduler.name" in str(error.value) and "cosine_with_restarts" in str(error.value)


def test_missing_required_key(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'data.problem_type'"):
        load_config(write(tmp_path, {"data": {"path": "x"}, "model": {"name": "m"}}))


def test_metric_and_monitor_checked_against_problem_type(tmp_path):
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError, match="'spearman' is not a single_label_classification metric"):
        load_config(path, ["evaluation.metrics=[accuracy,spearman]"])
    with pytest.raises(ConfigError, match="monitor"):
        load_config(path, ["train.early_stopping.monitor=r2"])
    assert load_config(path, ["train.early_stopping.monitor=loss"]).monitor_mode == "min"


def test_defaults_per_problem_type(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.monitor == "mcc" and cfg.monitor_mode == "max"
    assert "auroc" in cfg.metric_names
    regression = load_config(write(tmp_path, BASE), ["data.problem_type=regression"])
    assert regression.monitor == "spearman"
    assert (
        load_config(
            write(tmp_path, BASE), ["data.problem_type=regression", "train.early_stopping.monitor=mse"]
        ).monitor_mode
        == "min"
    )


def test_override_syntax_errors(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(write(tmp_path, BASE), ["train.epochs"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_warmup_steps_and_ratio_are_exclusive(tmp_path):
    with pytest.raises(ConfigError, match="warmup_steps or .*warmup_ratio"):
        load_config(
            write(tmp_path, BASE), ["train.scheduler.warmup_steps=5", "train.scheduler.warmup_ratio=0.1"]
        )


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.epochs=7", "model.method=full"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg


def _sections(model: BaseModel) -> Iterator[BaseModel]:
    yield model
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _sections(value)


def test_a_validated_config_cannot_be_changed_only_replaced(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.learning_rate=auto"])
    for section in _sections(cfg):  # every section, the regularization techniques included
        name = next(iter(type(section).model_fields))
        with pytest.raises(ValidationError, match="frozen"):
            setattr(section, name, getattr(section, name))
    resolved = with_learning_rate(cfg, 3e-4)
    assert resolved.train.learning_rate == 3e-4 and cfg.train.learning_rate == "auto"
    assert resolved.model_dump(exclude={"train"}) == cfg.model_dump(exclude={"train"})
    with pytest.raises(ValueError, match="above 0"):
        with_learning_rate(cfg, 0.0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.pooler=maen",
            "'model.pooler': unknown pooler 'maen' \\(did you mean 'mean'\\?\\); choose from",
        ),
        (
            "model.method=lorra",
            "'model.method': unknown training method 'lorra' \\(did you mean 'lora'\\?\\)",
        ),
        ("model.head.type=mlpp", "'model.head.type': unknown head 'mlpp'"),
        ("train.scheduler.name=cosin", "'train.scheduler.name': unknown scheduler 'cosin'"),
        ("model.family=esn", "'model.family': unknown model family 'esn'"),
        ("model.extra_features=[zeroshot]", "'model.extra_features': unknown extra feature 'zeroshot'"),
    ],
)
def test_registry_names_are_checked_at_the_edge(tmp_path, override, message):
    # a config error, raised before any data or backbone is touched (the data path does not exist)
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, BASE), [override])


def test_the_monitored_metric_is_always_computed(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["evaluation.metrics=[accuracy]"])
    assert cfg.monitor == "mcc" and cfg.metric_names == ["accuracy", "mcc"]
    cfg = load_config(
        write(tmp_path, BASE), ["evaluation.metrics=[accuracy]", "train.early_stopping.monitor=loss"]
    )
    assert cfg.metric_names == ["accuracy"]
    with pytest.raises(ConfigError, match="'spearman' is not a single_label_classification metric"):
        load_config(write(tmp_path, BASE), ["train.early_stopping.monitor=spearman"])


def test_settings_the_choice_ignores_are_listed_by_key(tmp_path):
    cfg = load_config(
        write(tmp_path, BASE),
        [
            "model.method=freeze",
            "model.lora.r=16",
            "model.pooler=mean",
            "model.pooler_dropout=0.5",
            "train.scheduler.name=linear",
            "train.scheduler.gamma=0.3",
            "model.ses.num_heads=2",
        ],
    )
    assert dict(ignored_settings(cfg)) == {
        "model.lora.r": "model.method=freeze does not use it",
        "model.ses.num_heads": "model.method=freeze does not use it",
        "model.pooler_dropout": "model.pooler=mean has no dropout",
        "train.scheduler.gamma": "train.scheduler.name=linear does not use it",
    }
    used = load_config(
        write(tmp_path, BASE),
        ["model.method=lora", "model.lora.r=16", "model.pooler=attention1d", "model.pooler_dropout=0.5"],
    )
    assert ignored_settings(used) == []


def test_a_config_written_out_in_full_warns_only_about_what_differs_from_the_defaults(tmp_path):
    # protfit tune, run folders and the web UI save every key; the defaults among them change nothing
    cfg = load_config(write(tmp_path, BASE), ["model.method=full", "model.lora.r=16"])
    full = tmp_path / "full.yaml"
    save_config(cfg, full)
    assert dict(ignored_settings(load_config(full))) == {"model.lora.r": "model.method=full does not use it"}


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "..", ".", "a\\b"])
def test_output_name_cannot_leave_output_dir(tmp_path, name):
    with pytest.raises(ConfigError, match="must be a plain folder name inside output.dir"):
        load_config(write(tmp_path, {**BASE, "output": {"name": name}}))
    assert load_config(write(tmp_path, {**BASE, "output": {"name": "run-1.v2"}})).output.name == "run-1.v2"


def test_a_metric_error_does_not_print_the_whole_config(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, BASE), ["evaluation.metrics=[spearman]"])
    message = str(error.value)
    assert "'spearman' is not a single_label_classification metric" in message
    assert "some/folder" not in message and "got {" not in message  # no dump of the config dict
    with pytest.raises(ConfigError, match=r"\(got 0\)"):  # a scalar input is still shown
        load_config(write(tmp_path, BASE), ["train.epochs=0"])


def _section_models(annotation: object) -> Iterator[type[BaseModel]]:
    """The pydantic models inside an annotation (``X``, ``X | None``, ``dict[str, A | B]``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _section_models(argument)


def test_every_config_field_has_a_description():
    # The web UI's help text and the docs come from these descriptions; a field without one shows
    # as a bare key.
    undescribed: list[str] = []
    seen: set[type[BaseModel]] = set()
    pending: list[tuple[type[BaseModel], str]] = [(RunConfig, ""), (SweepConfig, "sweep: ")]
    while pending:
        model, prefix = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            sections = list(_section_models(field.annotation))
            pending += [(section, f"{prefix}{name}.") for section in sections]
            if not sections and not (field.description or "").strip():
                undescribed.append(f"{prefix}{name} ({model.__name__})")
    assert len(seen) > 30  # the walk reached the nested sections (regularization, sweep parameters)
    assert not undescribed, f"config fields without a description: {', '.join(sorted(undescribed))}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.reference_sequence=MKT1"], "data.reference_sequence must be residue letters.*found 1"),
        (["model.name=onehot", "model.extra_features=[zero_shot]"], "needs a masked language model"),
        (["evaluation.baselines.zero_shot=true", "model.name=onehot"], "set model.zero_shot_model"),
        (
            ["evaluation.baselines.zero_shot=true", "data.problem_type=multi_label_classification"],
            "cannot rank several labels",
        ),
        (["evaluation.baselines.zero_shot=maybe"], "evaluation.baselines.zero_shot"),
    ],
)
def test_zero_shot_settings_are_checked_at_the_edge(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, BASE), overrides)


def test_zero_shot_settings_parse(tmp_path):
    cfg = load_config(
        write(tmp_path, BASE),
        [
            "data.reference_sequence=mktay",
            "model.name=onehot",
            "model.zero_shot_model=antiberty",
            "model.extra_features=[zero_shot]",
            "evaluation.baselines.zero_shot=false",
        ],
    )
    assert cfg.data.reference_sequence == "MKTAY"
    assert cfg.model.zero_shot_scorer == "antiberty" and cfg.model.extra_features == ["zero_shot"]
    assert cfg.evaluation.baselines.zero_shot is False
    assert load_config(write(tmp_path, BASE)).model.zero_shot_scorer == "tiny-esm2"


def test_a_rerun_of_a_sweep_trials_config_is_resumable_again():
    # a sweep trial writes no `last` (it is re-run, never resumed); its config as a run of its own
    # (`compare --recommend`, `tune`'s recommended.yaml and confirmation runs) should write it again
    trial = {
        "data": {"path": "x", "problem_type": "regression"},
        "model": {"name": "onehot"},
        "output": {
            "dir": "sweeps/s/trials",
            "name": "trial-0007",
            "overwrite": True,
            "checkpoints": {"last_every_epochs": None, "last_every_minutes": None, "keep_last": True},
        },
    }
    output = build_config(rerun_config(trial)).output
    assert (output.name, output.overwrite) == (None, False)
    assert output.checkpoints.last_every_epochs == 1 and output.checkpoints.last_every_minutes is None
    assert output.checkpoints.keep_last  # the base's own choice stays
    assert trial["output"]["name"] == "trial-0007"  # the trial's config is not changed


@pytest.mark.parametrize(
    ("override", "line"),
    [
        # a union field: one line for the key, not one per member pydantic tried
        ("train.learning_rate=-1", "'train.learning_rate': must be greater than 0, or 'auto' (got -1)"),
        ("train.learning_rate=abc", "'train.learning_rate': must be a number, or 'auto' (got 'abc')"),
        ("train.epochs=0", "'train.epochs': must be at least 1 (got 0)"),
        ("train.epochs=2.5", "'train.epochs': must be a whole number, at least 1 (got 2.5)"),
        ("model.head.dropout=1.5", "'model.head.dropout': must be at least 0 and less than 1 (got 1.5)"),
    ],
)
def test_validation_errors_are_in_words(tmp_path, override, line):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, BASE), [override])
    message = str(error.value)
    assert f"  - {line}" in message.splitlines()
    for internal in ("constrained-float", "literal[", "Input should", "Value error"):
        assert internal not in message
    (problem,) = error.value.problems
    assert problem.line() == line
