"""Two worker processes share one study in PostgreSQL: exactly n_trials trials, none run twice.

Needs a server: `export PROTFIT_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"` (CI does this).
"""

import os
import subprocess
import sys
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
