"""End-to-end sweeps on the one-hot encoder: trials are run folders, pruning, seeds, CV, resume."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from protfit.sweep.storage import claim_slot, counts, make_storage, open_study
from protfit.sweep.study import open_sweep_folder, run_sweep

SRC = str(Path(__file__).resolve().parents[2] / "src")


def summary(run_dir) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def test_six_trial_sweep_completes_and_every_trial_is_a_run_folder(tmp_path, make_sweep):
    result = run_sweep(make_sweep(tmp_path, n_trials=6, pruner={"name": "none"}))
    trials = result.study.get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 6
    assert len({tuple(trial.params.values()) for trial in trials}) == 6  # the sampler moved on
    for trial in trials:
        run = summary(trial.user_attrs["run_dir"])
        assert trial.value == pytest.approx(run["best_val_metric"])
        config = yaml.safe_load((Path(trial.user_attrs["run_dir"]) / "config.yaml").read_text())
        assert config["train"]["learning_rate"] == pytest.approx(trial.params["train.learning_rate"])
    folder = result.folder
    table = pd.read_csv(folder / "trials.csv")
    assert len(table) == 6 and set(table["state"]) == {"complete"}
    best = json.loads((folder / "best.json").read_text())
    assert best["best"]["trial"] == result.study.best_trial.number
    assert best["counts"]["complete"] == 6
    assert (folder / "optimization_history.png").is_file()


def test_an_aggressive_pruner_prunes_and_records_the_epoch(tmp_path, make_sweep, base_config):
    sweep = make_sweep(
        tmp_path,
        base=base_config(epochs=4),
        n_trials=6,
        pruner={"name": "median", "n_startup_trials": 1},
        space={"train.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}},
    )
    result = run_sweep(sweep)
    states = [trial.state for trial in result.study.get_trials()]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 6
    pruned = result.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "the median pruner with one start-up trial should stop a trial"
    for trial in pruned:
        epoch = trial.user_attrs["pruned_at_epoch"]
        assert 1 <= epoch < 4
        assert max(trial.intermediate_values) == epoch
        history = pd.read_csv(Path(trial.user_attrs["run_dir"]) / "history.csv")
        assert len(history) == epoch  # the run folder keeps the epochs it ran


def test_only_the_best_trials_keep_their_weights(tmp_path, make_sweep, base_config, monkeypatch):
    from protfit.inference import load
    from protfit.sweep import objective

    sweep = make_sweep(
        tmp_path,
        base=base_config(epochs=4),
        n_trials=5,
        pruner={"name": "median", "n_startup_trials": 1},
        objective={"seeds": [0, 1]},  # a trial's weights are in every seed's run folder
        output={"dir": str(tmp_path), "name": "sweep", "keep_best_weights": 2},
    )
    # while the sweep runs: when a trial starts, at most 2 of the trials before it still hold weights
    with_weights, train = [], objective.train

    def count_then_train(cfg, **kwargs):
        if cfg.output.name == "seed-0":
            earlier = sorted(sweep.trials_dir.glob("trial-*/seed-*/checkpoints/best"))
            with_weights.append(len({path.parents[2] for path in earlier}))
        return train(cfg, **kwargs)

    monkeypatch.setattr(objective, "train", count_then_train)
    result = run_sweep(sweep)
    assert max(with_weights) == 2 and len(with_weights) == 5

    trials = result.study.get_trials()
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = sorted(complete, key=lambda trial: -trial.value)[:2]
    assert any(trial.state == TrialState.PRUNED for trial in trials)
    for trial in trials:
        for seed in ("seed-0", "seed-1"):
            run = Path(trial.user_attrs["run_dir"]) / seed
            if not run.is_dir():  # a pruned trial stops after its first seed
                continue
            checkpoints = sorted(path.name for path in (run / "checkpoints").iterdir())
            assert (run / "history.csv").is_file()  # every trial keeps its history (and metrics)
            # trials never write `last` (a killed trial is run again, never resumed)
            assert checkpoints == (["best"] if trial in best else ["removed.txt"])
    removed = next(trial for trial in trials if trial not in best)
    with pytest.raises(FileNotFoundError, match="only its 2 best trial"):
        load(Path(removed.user_attrs["run_dir"]) / "seed-0")


def test_kept_trials_follow_the_direction_and_null_keeps_all(tmp_path, make_sweep):
    from protfit.sweep.retention import kept_trials

    def study_of(direction):
        study = optuna.create_study(direction=direction)
        for value in (0.5, 0.9, 0.7):
            study.add_trial(optuna.trial.create_trial(value=value))
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED))
        return study

    output = {"dir": str(tmp_path), "name": "s", "keep_best_weights": 2}
    sweep = make_sweep(tmp_path, output=output)
    assert sweep.direction == "maximize" and kept_trials(sweep, study_of("maximize")) == {1, 2}
    on_loss = make_sweep(tmp_path, output=output, overrides=["train.early_stopping.monitor=loss"])
    assert on_loss.direction == "minimize" and kept_trials(on_loss, study_of("minimize")) == {0, 2}
    every = make_sweep(
        tmp_path,
        output={**output, "keep_best_weights": None},
        overrides=["train.early_stopping.monitor=loss"],
    )
    assert kept_trials(every, study_of("minimize")) == {0, 1, 2, 3}


def test_seed_objective_is_the_mean_over_seeds_with_the_spread(tmp_path, make_sweep):
    result = run_sweep(make_sweep(tmp_path, n_trials=1, objective={"seeds": [0, 1]}))
    trial = result.study.get_trials()[0]
    runs = [Path(trial.user_attrs["run_dir"]) / f"seed-{seed}" for seed in (0, 1)]
    values = [summary(run)["best_val_metric"] for run in runs]
    assert [yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] for run in runs] == [0, 1]
    assert trial.user_attrs["values"] == pytest.approx(values)
    assert trial.value == pytest.approx(statistics.fmean(values))
    assert trial.user_attrs["sd"] == pytest.approx(statistics.stdev(values))


def test_cv_objective_uses_stratified_folds_of_train_and_validation(tmp_path, make_sweep):
    sweep = make_sweep(tmp_path, n_trials=1, objective={"cv": 3})
    result = run_sweep(sweep)
    folds = sorted((sweep.folds_dir).glob("fold-*"))
    assert len(folds) == 3
    validation = [pd.read_csv(fold / "validation.csv") for fold in folds]
    pool = pd.concat(
        [pd.read_csv(Path(sweep.base.data.path) / name) for name in ("train.csv", "validation.csv")]
    )
    # the validation folds partition train+validation, each with the pool's class shares
    assert sorted(pd.concat(validation)["aa_seq"]) == sorted(pool["aa_seq"])
    shares = pool["label"].value_counts(normalize=True)
    for frame in validation:
        assert (frame["label"].value_counts(normalize=True) - shares).abs().max() < 0.05
    trial = result.study.get_trials()[0]
    values = [summary(Path(trial.user_attrs["run_dir"]) / fold.name)["best_val_metric"] for fold in folds]
    assert trial.value == pytest.approx(statistics.fmean(values))
    assert trial.user_attrs["sd"] == pytest.approx(statistics.stdev(values))


def test_parallel_workers_split_the_cpu_threads(tmp_path, make_sweep):
    sweep = make_sweep(tmp_path, n_trials=2, n_jobs=2)
    result = run_sweep(sweep)
    assert counts(result.study)["complete"] == 2
    cores = len(os.sched_getaffinity(0))
    threads = {trial.user_attrs["torch_threads"] for trial in result.study.get_trials()}
    assert threads == {max(1, cores // 2)}


def test_a_sweep_killed_mid_trial_resumes_to_exactly_n_trials(tmp_path, sweep_raw, base_config):
    raw = sweep_raw(tmp_path, base=base_config(epochs=3), n_trials=4)
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "protfit.cli", "sweep", str(sweep_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = tmp_path / "sweep"
    # kill once the second trial has trained at least one epoch (it is then surely running)
    deadline = time.time() + 120
    while time.time() < deadline and not (folder / "trials" / "trial-0001" / "history.csv").is_file():
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (folder / "trials" / "trial-0001").is_dir()
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{folder / 'study.db'}")
    assert counts(study)["running"] == 1

    result = run_sweep(open_sweep_folder(folder), resume=True)
    state = counts(result.study)
    assert state["complete"] + state["pruned"] == 4
    assert state["waiting"] == state["running"] == 0
    failed = result.study.get_trials(states=(TrialState.FAIL,))
    assert [trial.number for trial in failed] == [1] and failed[0].user_attrs["interrupted"]
    retry = [trial for trial in result.study.get_trials() if trial.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == failed[0].params and retry[0].state == TrialState.COMPLETE
    assert (folder / "trials" / "trial-0001" / "history.csv").is_file()  # the killed trial's folder stays
    first = result.study.get_trials()[0]
    assert first.state == TrialState.COMPLETE and first.user_attrs["wall_time_s"]  # not re-run

    # resuming a finished sweep runs nothing more
    again = run_sweep(open_sweep_folder(folder), resume=True)
    assert len(again.study.get_trials()) == len(result.study.get_trials())


def test_a_worker_started_later_runs_a_dead_workers_trial_again(tmp_path, make_sweep, capsys):
    # a shared storage (here SQLite, so no server is needed) has Optuna's heartbeat on
    study = {"storage": f"sqlite:///{tmp_path / 'shared.db'}", "name": "s"}
    sweep = make_sweep(tmp_path, n_trials=2, study=study | {"heartbeat_interval": 1, "grace_period": 2})
    storage = make_storage(sweep)
    # a worker claims a slot and dies at once: its only heartbeat is the one recorded with the claim
    dead = claim_slot(sweep, open_study(sweep, storage), storage)
    time.sleep(3.5)  # SQLite's clock has whole seconds: more than the grace period by any rounding

    result = run_sweep(sweep)
    assert "0/2 trials finished, 2 to run\n" in capsys.readouterr().out  # the dead trial is one to run
    trials = result.study.get_trials()
    assert [trial.state for trial in trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert trials[0]._trial_id == dead and trials[2].system_attrs["failed_trial"] == 0
    # workers started by n_jobs read the folder's sweep.yaml: it keeps the heartbeat settings
    assert open_sweep_folder(sweep.folder).config.study == sweep.config.study


def test_a_new_sweep_into_an_existing_folder_is_refused(tmp_path, make_sweep):
    run_sweep(make_sweep(tmp_path, n_trials=1))
    with pytest.raises(FileExistsError, match="--resume"):
        run_sweep(make_sweep(tmp_path, n_trials=1))


def test_timeout_leaves_the_rest_for_resume(tmp_path, make_sweep):
    result = run_sweep(make_sweep(tmp_path, n_trials=2, timeout=0.001))
    assert counts(result.study)["waiting"] == 2 and counts(result.study)["complete"] == 0
    resumed = run_sweep(open_sweep_folder(result.folder, ["timeout=null"]), resume=True)
    assert counts(resumed.study)["complete"] == 2 and len(resumed.study.get_trials()) == 2
