"""`protfit tune` can be trusted: collapsed trials never rank, the start is trial 0 and is kept unless
beaten by more than the seed spread, the diagnosis decides what is searched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from collapse_helpers import ZeroWeights
from optuna.trial import TrialState

from protfit.config import build_config
from protfit.report.compare import compare_runs, short_baseline_verdict
from protfit.sweep import objective
from protfit.sweep.storage import counts
from protfit.sweep.study import run_sweep
from protfit.sweep.tune import START, Candidate, choose
from protfit.sweep.tune_space import Diagnosis, search_space

RANGE_TEST = {"suggested_lr": 0.1, "trusted": True, "end_lr": 1.0}


def test_a_collapsed_trial_fails_with_its_reason_and_is_never_best(tmp_path, make_sweep, monkeypatch):
    real_train = objective.train

    def train(cfg, plugins=()):  # trials with dropout above 0.25 collapse to a constant predictor
        extra = [ZeroWeights()] if cfg.model.head.dropout > 0.25 else []
        return real_train(cfg, plugins=[*plugins, *extra])

    monkeypatch.setattr(objective, "train", train)
    sweep = make_sweep(
        tmp_path,
        n_trials=3,
        enqueue=[{"model.head.dropout": 0.4}, {"model.head.dropout": 0.1}, {"model.head.dropout": 0.45}],
    )
    result = run_sweep(sweep)
    trials = result.study.get_trials()
    assert [trial.state for trial in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL]
    assert "the same validation probabilities" in trials[0].user_attrs["collapsed"]
    assert counts(result.study)["collapsed"] == 2  # they used up their slots: the budget stays exact
    assert result.study.best_trial.number == 1
    comparison = compare_runs([result.folder])
    assert comparison.recommended.name == "trial-0001"
    assert [row.verdict for row in comparison.rows][1:] == ["collapsed", "collapsed"]
    verdicts = [short_baseline_verdict(row.baseline_verdict) for row in comparison.rows]
    assert verdicts[1:] == ["collapsed", "collapsed"]  # the "vs baselines" column of compare.md
    table = (result.folder / "trials.csv").read_text()
    assert table.count(",collapsed,") == 2 and "collapsed: trial-0000" in table


def test_enqueued_values_must_lie_in_the_space(tmp_path, make_sweep):
    from protfit.config import ConfigError

    with pytest.raises(ConfigError, match=r"enqueue\[0\]\.train\.learning_rate.*outside"):
        make_sweep(tmp_path, enqueue=[{"train.learning_rate": 5.0}])
    with pytest.raises(ConfigError, match="not a parameter of the search space"):
        make_sweep(tmp_path, enqueue=[{"train.epochs": 5}])


def test_list_choices_reach_the_trial_config(tmp_path, make_sweep):
    sweep = make_sweep(
        tmp_path,
        n_trials=2,
        space={"model.head.hidden_dims": {"type": "categorical", "choices": [[16], []]}},
        enqueue=[{"model.head.hidden_dims": []}],
    )
    result = run_sweep(sweep)
    first = result.study.get_trials()[0]
    config = json.loads(json.dumps(build_config_of(first.user_attrs["run_dir"])))
    assert first.params["model.head.hidden_dims"] == "[]" and config["model"]["head"]["hidden_dims"] == []


def build_config_of(run_dir: str) -> dict:
    import yaml

    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text())


def base(tmp_path, **model):
    raw = {
        "data": {"path": str(tmp_path), "problem_type": "regression", "batch_size": 64, "max_seq_len": 64},
        "model": {
            "name": "onehot",
            "method": "full",
            "pooler": "flatten",
            "head": {"hidden_dims": [128]},
            **model,
        },
        "train": {"epochs": 30, "learning_rate": 1e-3, "early_stopping": {"patience": 5}},
    }
    return build_config(raw)


def test_the_lr_range_holds_the_start_and_a_decade_below_the_suggestion(tmp_path):
    space = search_space(base(tmp_path), 1e-3, RANGE_TEST, Diagnosis("none", train_rows=6000))
    lr = space.params["train.learning_rate"]
    assert lr["low"] <= 1e-3 <= lr["high"] and lr["low"] <= 0.1 / 10
    assert space.start["train.learning_rate"] == 1e-3
    # an untrusted (flat-curve) suggestion is an upper bound: nothing above it or the start
    flat = search_space(base(tmp_path), 1e-3, {**RANGE_TEST, "trusted": False}, Diagnosis("none"))
    assert flat.params["train.learning_rate"]["high"] == pytest.approx(0.1)
    # never above the highest rate the range test tried
    capped = search_space(base(tmp_path), 1e-3, {**RANGE_TEST, "end_lr": 0.15}, Diagnosis("none"))
    assert capped.params["train.learning_rate"]["high"] == pytest.approx(0.15)


def no_early_stopping(tmp_path):
    raw = base(tmp_path).model_dump(mode="json")
    raw["train"]["early_stopping"]["patience"] = None
    return build_config(raw)


def test_the_undertrained_diagnosis_widens_epochs_patience_and_schedule(tmp_path):
    space = search_space(base(tmp_path), 1e-3, RANGE_TEST, Diagnosis("none", undertrained=True))
    assert space.params["train.epochs"]["choices"] == [30, 60, 150]
    assert space.params["train.early_stopping.patience"]["choices"] == [5, 20]
    assert space.params["train.scheduler.name"]["choices"] == ["linear", "constant"]
    assert space.start["train.epochs"] == 30  # trial 0 is the start


def test_with_early_stopping_more_epochs_are_searched_but_not_patience_or_schedule(tmp_path):
    # a start that early stopping ended: trials with more regularization learn slower, and early
    # stopping ends each one that stops improving, so longer limits cost only where they help
    stopped = search_space(base(tmp_path), 1e-3, RANGE_TEST, Diagnosis("none", undertrained=False))
    assert stopped.params["train.epochs"]["choices"] == [30, 60, 150]
    assert "train.early_stopping.patience" not in stopped.params
    assert "train.scheduler.name" not in stopped.params
    # without early stopping every epoch is spent: the start's epochs only
    plain = search_space(no_early_stopping(tmp_path), 1e-3, RANGE_TEST, Diagnosis("none"))
    assert "train.epochs" not in plain.params


def test_pruning_waits_for_a_tenth_of_the_longest_training_searched(tmp_path):
    from protfit.sweep.tune import longest_training

    start = no_early_stopping(tmp_path)
    plain = search_space(start, 1e-3, RANGE_TEST, Diagnosis("none", undertrained=False))
    assert longest_training(plain, start) == 30
    # epochs x5 searched: a 150-epoch trial is not judged at epoch 3 against 30-epoch ones
    longer = search_space(start, 1e-3, RANGE_TEST, Diagnosis("none", undertrained=True))
    assert longest_training(longer, start) == 150


def test_a_run_that_early_stopping_did_not_end_counts_as_undertrained():
    from protfit.sweep.tune import late_best

    # patience 5: best epoch 27 of 30 means validation improved within the patience window
    # (GB1 three_vs_rest's start, which then gained from longer training)
    assert late_best({"best_epoch": 27, "epochs_run": 30, "stopped_early": False}, patience=5)
    assert not late_best({"best_epoch": 25, "epochs_run": 30, "stopped_early": False}, patience=5)
    assert not late_best({"best_epoch": 22, "epochs_run": 27, "stopped_early": True}, patience=5)
    # no early stopping: the best epoch in the last tenth
    assert late_best({"best_epoch": 29, "epochs_run": 30, "stopped_early": False}, patience=None)
    assert not late_best({"best_epoch": 27, "epochs_run": 30, "stopped_early": False}, patience=None)


def test_overfitting_adds_smaller_heads_and_a_frozen_backbone_searches_the_pooler(tmp_path):
    space = search_space(base(tmp_path), 1e-3, RANGE_TEST, Diagnosis("severe"))
    assert space.params["model.head.hidden_dims"]["choices"] == [[128], [64], []]
    frozen = base(tmp_path, name="tiny-esm2", method="freeze", pooler="mean")
    poolers = search_space(frozen, 1e-3, RANGE_TEST, Diagnosis("none", equal_lengths=False)).params[
        "model.pooler"
    ]
    assert poolers["choices"] == ["mean", "attention1d"]
    # and the head's norm: a frozen model's pooled states keep their scales
    frozen_space = search_space(frozen, 1e-3, RANGE_TEST, Diagnosis("none"))
    assert frozen_space.params["model.head.norm"]["choices"] == ["none", "layernorm"]
    assert "model.head.norm" not in search_space(base(tmp_path), 1e-3, RANGE_TEST, Diagnosis("none")).params
    equal = search_space(frozen, 1e-3, RANGE_TEST, Diagnosis("none", equal_lengths=True)).params[
        "model.pooler"
    ]
    assert "flatten" in equal["choices"]
    # where the one-hot residues fit beside the pooled vector, they replace flatten's 64 x H inputs
    fits = search_space(frozen, 1e-3, RANGE_TEST, Diagnosis("none", equal_lengths=True, length=64)).params
    assert fits["model.pooler"]["choices"] == ["mean", "attention1d"]
    assert ["onehot"] in fits["model.extra_features"]["choices"]


def test_batch_size_is_searched_only_where_the_data_allow(tmp_path):
    large = search_space(base(tmp_path), 1e-3, RANGE_TEST, Diagnosis("none", train_rows=6000))
    assert large.params["data.batch_size"]["choices"] == [64, 32, 128]
    small = search_space(base(tmp_path), 1e-3, RANGE_TEST, Diagnosis("none", train_rows=381))
    assert "data.batch_size" not in small.params  # 381 rows give 6 batches of 64 an epoch


def candidate(name: str, values: list[float], collapsed: bool = False) -> Candidate:
    summaries = {
        seed: {"best_val_metric": value, "diagnostics": {"collapsed": collapsed}}
        for seed, value in enumerate(values)
    }
    return Candidate(name, {"train": {}}, {seed: Path(name) for seed in summaries}, summaries)


def test_a_tune_whose_trials_are_not_clearly_better_recommends_the_start():
    start = candidate(START, [0.849, 0.851, 0.847])
    # the winner's curse: best of the sweep on its seed (0.86), not better on average beyond the spread
    lucky = candidate("trial-0007", [0.860, 0.842, 0.851])
    chosen, why = choose([start, lucky], "max")
    assert chosen is start and "seed spread" in why
    worse = candidate("trial-0003", [0.80, 0.81, 0.79])
    assert choose([start, worse], "max")[0] is start
    better = candidate("trial-0011", [0.90, 0.91, 0.905])
    assert choose([start, lucky, better], "max")[0] is better


def test_a_collapsed_candidate_is_never_chosen():
    start = candidate(START, [0.5, 0.5, 0.5])
    collapsed = candidate("trial-0002", [0.99, 0.99, 0.99], collapsed=True)
    assert choose([start, collapsed], "max")[0] is start
    assert choose([start, candidate("trial-0004", [0.2, 0.2, 0.2])], "min")[0].name == "trial-0004"


def test_a_recommended_trial_whose_weights_the_sweep_deleted_is_trained_again(tmp_path, base_config):
    from protfit.sweep.tune import with_weights

    raw = base_config(seed=42)
    raw["evaluation"]["bootstrap"] = {"resamples": 20}
    trial = tmp_path / "sweep" / "trials" / "trial-0003"  # its checkpoints deleted: only metrics left
    trial.mkdir(parents=True)
    chosen = Candidate("trial-0003", raw, {42: trial}, {42: {"best_val_metric": 0.5}})
    with_weights(chosen, tmp_path)
    rerun = tmp_path / "confirm" / "trial-0003" / "seed-42"
    assert chosen.runs[42] == rerun and (rerun / "checkpoints" / "best").is_dir()
    assert chosen.summaries[42]["best_val_metric"] is not None
