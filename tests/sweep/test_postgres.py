"""Worker processes share one study in PostgreSQL: exactly n_trials trials, none run twice, and a
killed worker's trial is run again by a live one.

Needs a server: `export PROTFIT_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"` (CI does this).
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

URL = os.environ.get("PROTFIT_TEST_POSTGRES_URL")
SRC = str(Path(__file__).resolve().parents[2] / "src")

pytestmark = pytest.mark.skipif(
    not URL, reason="PROTFIT_TEST_POSTGRES_URL is not set (start a server with `bash .ci/postgres.sh`)"
)


def test_two_workers_share_one_study_and_run_exactly_n_trials(tmp_path, sweep_raw, base_config):
    pytest.importorskip("psycopg", reason='pip install "psycopg[binary]"')
    study_name = f"protfit-test-{uuid.uuid4().hex[:8]}"
    n_trials = 6
    raw = sweep_raw(
        tmp_path,
        base=base_config(epochs=2),
        n_trials=n_trials,
        pruner={"name": "median", "n_startup_trials": 2},
    )
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "protfit.cli",
        "sweep",
        str(sweep_file),
        "--storage",
        URL,
        "--study",
        study_name,
    ]
    workers = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    try:
        for worker, output in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, output
        # both workers ran trials (the study was shared, not created twice)
        ran = [sum(line.startswith("trial ") for line in output.splitlines()) for output in outputs]
        assert sum(ran) == n_trials and min(ran) >= 1, outputs

        study = optuna.load_study(study_name=study_name, storage=URL)
        trials = study.get_trials()
        assert len(trials) == n_trials
        assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials)
        assert len({tuple(sorted(trial.params.items())) for trial in trials}) == n_trials
        run_dirs = [trial.user_attrs["run_dir"] for trial in trials]
        assert len(set(run_dirs)) == n_trials and all(Path(run_dir).is_dir() for run_dir in run_dirs)
    finally:
        optuna.delete_study(study_name=study_name, storage=URL)


def test_a_killed_workers_trial_is_run_again_by_a_live_worker(tmp_path, sweep_raw, base_config):
    pytest.importorskip("psycopg", reason='pip install "psycopg[binary]"')
    study_name = f"protfit-test-{uuid.uuid4().hex[:8]}"
    n_trials = 2
    grace = 15
    raw = sweep_raw(
        tmp_path,
        base=base_config(epochs=15),
        n_trials=n_trials,
        # short heartbeats so that the killed trial is stale after seconds, not a minute
        study={"heartbeat_interval": 1, "grace_period": grace},
    )
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "protfit.cli", "sweep", str(sweep_file), "--storage", URL]
    command += ["--study", study_name]

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # The order is forced, not raced (two workers started together raced: on a loaded machine one ran
    # every trial before the other had imported torch). The doomed worker claims a slot, draws its
    # parameters and is SIGKILLed in training: no handler, no cleanup, the trial stays RUNNING with a
    # heartbeat. Only then does the live worker start: it runs the other slot and, with no slot left,
    # waits while the killed trial is RUNNING until it goes stale (`grace` s), then runs it again.
    doomed = start()
    live = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            with contextlib.suppress(KeyError):  # the study is not created yet
                study = optuna.load_study(study_name=study_name, storage=URL)
                # in training: its parameters are drawn (a kill before that leaves none to run again)
                if any(trial.state == TrialState.RUNNING and trial.params for trial in study.get_trials()):
                    break
            assert doomed.poll() is None, doomed.communicate()[0]
            time.sleep(0.1)
        else:
            pytest.fail("the first worker never started a trial")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        live = start()
        output = live.communicate(timeout=600)[0]
        assert live.returncode == 0, output
        assert f"{n_trials}/{n_trials} trials finished" in output, output
        assert "Warning" not in output, output  # Optuna's deprecated RetryFailedTrialCallback printed one

        study = optuna.load_study(study_name=study_name, storage=URL)
        trials = study.get_trials()
        failed = [trial for trial in trials if trial.state == TrialState.FAIL]
        assert len(failed) == 1 and len(trials) == n_trials + 1, [(t.number, t.state) for t in trials]
        finished = [trial for trial in trials if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == n_trials
        # the killed trial's parameters ran again, in a new trial that records which one it retries
        (retry,) = [trial for trial in finished if trial.system_attrs.get("failed_trial") == failed[0].number]
        assert retry.params == failed[0].params
        notes = (tmp_path / "sweep" / "trials.csv").read_text()
        assert "worker died (no heartbeat)" in notes
    finally:
        for worker in (live, doomed):
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait()
        optuna.delete_study(study_name=study_name, storage=URL)
