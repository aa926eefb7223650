"""The sweep file: strict keys, space keys checked against the run config, options checked up front."""

import pytest
import yaml

from protfit.config import ConfigError
from protfit.sweep.config import build_sweep_config, load_sweep_config
from protfit.sweep.space import check_space, resolve_space, suggest_params
from protfit.sweep.study import prepare_sweep


def prepare(raw):
    return prepare_sweep(build_sweep_config(raw, "s.yaml"), "s.yaml")


def test_unknown_keys_name_the_file_and_the_allowed_keys(tmp_path, sweep_raw):
    path = tmp_path / "s.yaml"
    raw = sweep_raw(tmp_path, n_trial=3)
    raw["pruner"] = {"name": "median", "patience": 2}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_sweep_config(path)
    message = str(error.value)
    assert str(path) in message
    assert "unknown key 'n_trial'" in message and "n_trials" in message
    assert "unknown key 'pruner.patience'" in message and "reduction_factor" in message


def test_param_keys_and_types_are_checked(tmp_path, sweep_raw):
    raw = sweep_raw(tmp_path)
    raw["space"]["train.learning_rat"] = {"type": "float", "low": 1e-4, "high": 1e-2}
    with pytest.raises(
        ConfigError, match=r"(?s)space\.train\.learning_rat.*unknown key 'train.learning_rat'"
    ):
        prepare(raw)
    raw = sweep_raw(tmp_path)
    raw["space"]["model.head.dropout"] = {"type": "float", "low": 0.0, "high": 1.0}  # dropout must be < 1
    with pytest.raises(ConfigError, match=r"space\.model\.head\.dropout' \(value 1\.0\)"):
        prepare(raw)
    raw["space"]["model.head.dropout"] = {"type": "uniform", "low": 0.0, "high": 0.5}
    with pytest.raises(ConfigError, match="float, int or categorical"):
        prepare(raw)
    raw["space"]["model.head.dropout"] = {"type": "float", "low": 0.0, "high": 0.5, "log": True}
    with pytest.raises(ConfigError, match="log=true needs low > 0"):
        prepare(raw)


def test_options_that_cannot_work_fail_before_any_work(tmp_path, sweep_raw):
    raw = sweep_raw(tmp_path, sampler={"name": "grid"}, n_trials=4)
    with pytest.raises(ConfigError, match="grid sampler needs a step"):
        prepare(raw)
    raw["space"] = {"model.head.dropout": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.1}}
    with pytest.raises(ConfigError, match="3 combinations, fewer than n_trials=4"):
        prepare(raw)
    raw = sweep_raw(tmp_path, pruner={"name": "hyperband", "min_resource": 2})
    with pytest.raises(ConfigError, match="train.epochs"):
        prepare(raw)
    with pytest.raises(ConfigError, match="not both"):
        prepare(sweep_raw(tmp_path, objective={"seeds": [0, 1], "cv": 3}))
    with pytest.raises(ConfigError, match="no search space"):
        prepare({**sweep_raw(tmp_path), "space": {}})
    raw = sweep_raw(tmp_path)
    raw["space"]["model.lora.r"] = {"type": "int", "low": 2, "high": 8, "when": {"model.methd": ["lora"]}}
    with pytest.raises(ConfigError, match="neither a search parameter nor a run-config key"):
        prepare(raw)
    with pytest.raises(ConfigError, match=r"grace_period \(10\) must exceed study.heartbeat_interval \(10\)"):
        prepare(sweep_raw(tmp_path, study={"heartbeat_interval": 10, "grace_period": 10}))


def test_conditional_parameters_follow_the_method(tmp_path, sweep_raw):
    import optuna

    raw = sweep_raw(tmp_path)
    raw["space"] = {
        "model.method": {"type": "categorical", "choices": ["full", "lora"]},
        "model.lora.r": {"type": "categorical", "choices": [4, 8], "when": {"model.method": ["lora"]}},
    }
    raw["base"]["model"]["name"] = "tiny-esm2"
    sweep = prepare(raw)
    full = suggest_params(optuna.trial.FixedTrial({"model.method": "full"}), sweep.space, sweep.base)
    assert full == {"model.method": "full"}
    lora = suggest_params(
        optuna.trial.FixedTrial({"model.method": "lora", "model.lora.r": 8}), sweep.space, sweep.base
    )
    assert lora == {"model.method": "lora", "model.lora.r": 8}
    # a condition on the base config: the base method is full, so r is never sampled
    raw["space"] = {
        "model.lora.r": raw["space"]["model.lora.r"],
        "train.learning_rate": raw["space"].get(
            "train.learning_rate", {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
        ),
    }
    sweep = prepare(raw)
    assert "model.lora.r" not in suggest_params(
        optuna.trial.FixedTrial({"train.learning_rate": 1e-3}), sweep.space, sweep.base
    )


@pytest.mark.parametrize("method", ["freeze", "full", "lora"])
def test_presets_give_a_valid_space_for_every_method(tmp_path, sweep_raw, method):
    raw = sweep_raw(tmp_path, preset="standard")
    raw["space"] = {}
    raw["base"]["model"]["method"] = method
    raw["base"]["model"]["name"] = "tiny-esm2"
    sweep = prepare(raw)
    assert {"train.learning_rate", "model.head.dropout", "train.weight_decay", "data.batch_size"} <= set(
        sweep.space
    )
    low = sweep.space["train.learning_rate"].low
    assert {"freeze": 1e-4, "full": 1e-6, "lora": 1e-5}[method] == low
    check_space(resolve_space({}, "standard", sweep.base), sweep.base_raw, "s.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose from quick, standard"):
        prepare({**raw, "preset": "fast"})


def test_trial_lines_name_parameters_unambiguously():
    from protfit.sweep.report import format_params

    line = format_params(
        {
            "train.learning_rate": 0.0159,
            "model.head.dropout": 0.313,
            "regularization.ema.enabled": True,
            "model.lora.dropout": 0.1,
            "train.scheduler.name": "constant",
        }
    )
    assert line == (
        "learning_rate=0.0159 head.dropout=0.313 ema.enabled=True lora.dropout=0.1 scheduler.name=constant"
    )
