"""The sweep: an Optuna study whose trials are ordinary protfit runs.

SWEEP_DIR/
  sweep.yaml        the resolved sweep (base config inlined, storage and study name filled in):
                    `protfit sweep --resume SWEEP_DIR` needs nothing else
  study.db          the Optuna study (SQLite) unless `--storage` names a shared database
  folds/            cross-validation folds (objective.cv), written once, shared by every trial
  trials/           trial-0007/ (a run folder, or one run folder per seed/fold inside), trial-0007.log
  trials.csv        one row per trial: state, value, spread, epochs, parameters
  best.json         the best trial, its parameters, run folder and test metrics
  optimization_history.png, param_importances.png

Exactly ``n_trials`` trials finish, however many workers share the study: the study is created with
``n_trials`` waiting *slots* (enqueued trials), and a worker only ever claims a waiting slot, never
creates a trial. A trial that was running when its worker died is marked failed and its parameters
are queued again (on `--resume` for a local sweep; for a shared storage by any live worker, through
Optuna's heartbeat: a worker whose slots are used up waits while trials run elsewhere, so it can take
over a dead worker's trial).
The storage and slot machinery is in `storage.py`, the reports (trials.csv, best.json, plots) in
`report.py`.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState

from protfit.config import ConfigError, RunConfig
from protfit.registry import load_plugin_modules, plugin_modules
from protfit.report.run_dir import atomic_write
from protfit.sweep.config import SweepConfig, base_run_raw, build_sweep_config, trial_run_config
from protfit.sweep.report import report_trial, write_report
from protfit.sweep.retention import remove_weights
from protfit.sweep.space import Param, check_enqueued, check_space, grid_size, resolve_space, suggest_params
from protfit.sweep.storage import (
    claim_slot,
    counts,
    file_lock,
    finished,
    load_study,
    make_sampler,
    make_storage,
    open_study,
    requeue_interrupted,
    started_trials,
    top_up,
)

SWEEP_FILE = "sweep.yaml"
DB_FILE = "study.db"
LOCK_FILE = ".sweep.lock"
MAX_CONSECUTIVE_FAILURES = 3


@dataclass
class Sweep:
    """A validated sweep: its config, base run config, resolved space and where everything lives."""

    config: SweepConfig
    source: str
    folder: Path
    base_raw: dict[str, Any]
    base: RunConfig
    space: dict[str, Param]
    storage_url: str
    study_name: str
    shared: bool  # storage given by the user (several workers / machines), else the folder's SQLite

    @property
    def trials_dir(self) -> Path:
        return self.folder / "trials"

    @property
    def folds_dir(self) -> Path:
        return self.folder / "folds"

    @property
    def direction(self) -> str:
        return "maximize" if self.base.monitor_mode == "max" else "minimize"

    def run_config(self, overrides: dict[str, Any]) -> RunConfig:
        return trial_run_config(self.base_raw, overrides, f"{self.source} (trial config)")


# ---- preparing a sweep: every check before any work ------------------------------------------------


def prepare_sweep(config: SweepConfig, source: str, folder: Path | None = None) -> Sweep:
    """Resolve and check everything a trial needs, so that a bad option fails now, not in trial 7."""
    base_raw = base_run_raw(config, source)
    base = trial_run_config(base_raw, {}, f"{source}, field 'base'")
    space = resolve_space(config.space, config.preset, base)
    check_space(space, base_raw, source)
    check_enqueued(config.enqueue, space, source)
    check_options(config, base, space, source)
    if folder is None:
        name = config.output.name or config.study.name or f"sweep-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        folder = Path(config.output.dir) / name
    folder = folder.resolve()
    shared = config.study.storage is not None
    storage_url = config.study.storage or f"sqlite:///{folder / DB_FILE}"
    return Sweep(
        config=config,
        source=source,
        folder=folder,
        base_raw=base_raw,
        base=base,
        space=space,
        storage_url=storage_url,
        study_name=config.study.name or folder.name,
        shared=shared,
    )


def check_options(config: SweepConfig, base: RunConfig, space: dict[str, Param], source: str) -> None:
    sampler, pruner, objective = config.sampler, config.pruner, config.objective
    if sampler.name == "grid":
        if config.enqueue:
            raise ConfigError(f"{source}, field 'enqueue': the grid sampler runs every combination already")
        size = grid_size(space)
        if config.n_trials > size:
            raise ConfigError(
                f"{source}, field 'n_trials': the grid has {size} combinations, fewer than n_trials="
                f"{config.n_trials}; lower n_trials or widen the grid"
            )
    if sampler.name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError(f"{source}, field 'sampler.name': cmaes needs `pip install cmaes`") from None
    if pruner.name in ("successive_halving", "hyperband") and base.train.epochs <= pruner.min_resource:
        raise ConfigError(
            f"{source}, field 'pruner.min_resource': {pruner.name} needs train.epochs "
            f"({base.train.epochs}) above min_resource ({pruner.min_resource})"
        )
    if objective.cv is not None:
        data_keys = [
            key for key in space if key.startswith("data.") and key.split(".")[1] in _DATA_SOURCE_KEYS
        ]
        if data_keys:
            raise ConfigError(
                f"{source}, field 'objective.cv': the folds are built once from the base data; "
                f"the space cannot change {', '.join(data_keys)}"
            )
    if objective.seeds is not None and "train.seed" in space:
        raise ConfigError(f"{source}, field 'objective.seeds': the space also sets train.seed")
    if config.study.storage is not None and not config.study.storage.startswith(
        ("sqlite:", "postgresql", "mysql")
    ):
        raise ConfigError(
            f"{source}, field 'study.storage': give an SQLAlchemy URL such as postgresql://user@host/db "
            f"or sqlite:///path.db (got {config.study.storage!r})"
        )


_DATA_SOURCE_KEYS = {"path", "train_file", "validation_file", "test_file", "max_seq_len", "truncation"}


def write_sweep_file(sweep: Sweep) -> None:
    """The resolved sweep: base inlined, storage and study name fixed, so the folder is self-contained."""
    payload = sweep.config.model_dump(mode="json", exclude_none=False)
    payload["base"] = copy.deepcopy(sweep.base_raw)
    payload["overrides"] = []
    payload["study"] |= {"name": sweep.study_name, "storage": sweep.config.study.storage}
    payload["output"] = {"dir": str(sweep.folder.parent), "name": sweep.folder.name}
    atomic_write(
        sweep.folder / SWEEP_FILE, lambda path: path.write_text(yaml.safe_dump(payload, sort_keys=False))
    )


def open_sweep_folder(folder: str | Path, overrides: list[str] | None = None) -> Sweep:
    """A sweep folder's own sweep.yaml (for --resume and for worker processes)."""
    folder = Path(folder)
    path = folder / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a sweep folder (no {SWEEP_FILE})")
    raw = yaml.safe_load(path.read_text())
    allowed = {"n_trials", "timeout", "n_jobs"}
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if key not in allowed:
            raise ConfigError(
                f"--resume accepts only {', '.join(sorted(allowed))} as overrides (got '{key}'); "
                "other changes would make the study's trials incomparable: start a new sweep"
            )
        raw[key] = yaml.safe_load(item.split("=", 1)[1]) if "=" in item else None
    config = build_sweep_config(raw, str(path))
    return prepare_sweep(config, str(path), folder)


# ---- the worker loop ----------------------------------------------------------------------------


def worker_loop(sweep: Sweep, worker: int = 0, deadline: float | None = None) -> None:
    """Claim slots and run trials until none is left, the deadline passes, or trials keep failing."""
    from protfit.sweep.objective import TrialCollapsed, run_plan, run_trial

    storage = make_storage(sweep)
    fold_dirs = sorted(sweep.folds_dir.glob("fold-*")) if sweep.config.objective.cv else None
    test_file = sweep.folds_dir / "test.csv"
    plan = run_plan(sweep.config.objective.seeds, fold_dirs, test_file if test_file.is_file() else None)
    sweep.trials_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    # one sampler per worker for its whole life: its random state moves on from trial to trial
    sampler = make_sampler(sweep, worker, started_trials(storage, sweep))
    waiting = False
    while deadline is None or time.time() < deadline:
        study = load_study(sweep, storage, sampler)
        if sweep.shared:
            # a trial without a heartbeat for study.grace_period: failed, its parameters a new slot
            optuna.storages.fail_stale_trials(study)
        remove_weights(sweep, study)  # of the trials that finished since (here or on other workers)
        trial_id = claim_slot(sweep, study, storage)
        if trial_id is None:
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            # on a shared storage a trial running elsewhere may belong to a dead worker: stay until it
            # ends or goes stale and is queued again (locally nothing beats, and `--resume` requeues)
            if not (sweep.shared and running):
                return
            if not waiting:
                print(
                    f"no slot left; waiting while {running} trial(s) run on other workers (one whose worker "
                    f"died is queued again after {sweep.config.study.grace_period}s without heartbeat)",
                    flush=True,
                )
                waiting = True
            time.sleep(sweep.config.study.heartbeat_interval)
            continue
        waiting = False
        study.get_trials(deepcopy=False)  # the study's storage cache learns the claimed trial's id
        trial = optuna.Trial(study, trial_id)
        started = time.perf_counter()
        # Optuna's own heartbeat thread, the one `study.optimize` runs (this ask-and-tell loop gets none
        # by itself); a no-op on a storage without heartbeat (a local sweep)
        with get_heartbeat_thread(trial_id, storage):
            try:
                params = suggest_params(trial, sweep.space, sweep.base)
                value = run_trial(trial, params, sweep.run_config, sweep.trials_dir, plan)
            except optuna.TrialPruned as pruned:
                study.tell(trial, state=TrialState.PRUNED)
                report_trial(sweep, study, trial.number, "pruned", str(pruned), started)
                failures = 0
                continue
            except TrialCollapsed as collapsed:
                # an answer, not a crash: it uses up its slot, is never ranked, and is not retried
                trial.set_user_attr("collapsed", str(collapsed))
                study.tell(trial, state=TrialState.FAIL)
                report_trial(sweep, study, trial.number, "collapsed", str(collapsed), started)
                failures = 0
                continue
            except KeyboardInterrupt:
                # queued again with the same parameters; its run folder stays
                trial.set_user_attr("interrupted", True)
                study.tell(trial, state=TrialState.FAIL)
                study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
                raise
            except Exception as error:  # a trial's crash is recorded; the sweep goes on
                trial.set_user_attr("error", f"{type(error).__name__}: {error}")
                study.tell(trial, state=TrialState.FAIL)
                report_trial(
                    sweep, study, trial.number, "failed", f"{type(error).__name__}: {error}", started
                )
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise RuntimeError(
                        f"{failures} trials in a row failed, the last with {type(error).__name__}: {error} "
                        f"(see {sweep.trials_dir}/trial-*.log); fix the cause and `protfit sweep --resume "
                        f"{sweep.folder}`"
                    ) from error
                continue
        study.tell(trial, value)
        failures = 0
        report_trial(sweep, study, trial.number, "complete", None, started)


# ---- parallel workers ----------------------------------------------------------------------------


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the sweep process dies, so a killed sweep leaves no orphans."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_process(
    folder: str, worker: int, threads: int, gpu: str | None, deadline: float | None, plugins: list[str]
) -> None:
    _die_with_parent()
    load_plugin_modules(plugins, "the sweep's --plugins")  # a spawned process starts with none imported
    # before torch is imported: every library's thread pool gets this worker's share of the cores
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(KeyboardInterrupt):  # the parent reports the interruption
        worker_loop(open_sweep_folder(folder), worker, deadline)


def worker_devices(n_jobs: int) -> list[str | None]:
    """One GPU per worker, round robin over the visible GPUs; None on CPU."""
    import torch

    if not torch.cuda.is_available():
        return [None] * n_jobs
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(index) for index in range(torch.cuda.device_count())]
    return [ids[index % len(ids)] for index in range(n_jobs)]


def run_workers(sweep: Sweep, deadline: float | None) -> None:
    n_jobs = sweep.config.n_jobs
    if n_jobs == 1:
        worker_loop(sweep, 0, deadline)
        return
    cores = available_cores()
    threads = max(1, cores // n_jobs)
    if n_jobs > cores:
        print(f"warning: n_jobs={n_jobs} on {cores} cores: every trial gets 1 thread and they compete")
    print(f"{n_jobs} worker processes, {threads} CPU thread(s) each ({cores} cores)")
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=worker_process, args=(str(sweep.folder), index, threads, gpu, deadline, plugin_modules())
        )
        for index, gpu in enumerate(worker_devices(n_jobs))
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.join(timeout=30)
        raise
    failed = [index for index, process in enumerate(processes) if process.exitcode not in (0, None)]
    if failed:
        raise RuntimeError(f"sweep worker(s) {failed} stopped with an error (see the output above)")


# ---- the whole sweep ----------------------------------------------------------------------------


@dataclass
class SweepResult:
    folder: Path
    study: optuna.Study
    best: dict[str, Any] | None
    counts: dict[str, int]


def run_sweep(sweep: Sweep, *, resume: bool = False) -> SweepResult:
    """Create (or resume / join) the study, run the trials, write the table and best.json."""
    started = time.time()
    folder = sweep.folder
    if not resume and not sweep.shared and folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"sweep folder {folder} already exists; continue it with `protfit sweep --resume {folder}` "
            "or choose another output.name"
        )
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / SWEEP_FILE).is_file():
        write_sweep_file(sweep)
    lock = contextlib.nullcontext(True) if sweep.shared else file_lock(folder / LOCK_FILE, blocking=False)
    with lock as acquired:
        if not acquired:
            raise RuntimeError(f"another `protfit sweep` is running on {folder}")
        storage = make_storage(sweep)
        study = open_study(sweep, storage)
        if sweep.config.objective.cv and not (sweep.folds_dir / "fold-0").is_dir():
            from protfit.sweep.objective import write_folds

            write_folds(sweep.base, sweep.config.objective.cv, sweep.folds_dir)
        if not sweep.shared:
            # nothing else runs on this folder (we hold its lock): a RUNNING trial is a killed one
            requeued = requeue_interrupted(study, storage)
            if requeued:
                print(f"trials {requeued} were interrupted: marked failed, their parameters queued again")
            top_up(study, sweep)
        else:
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial counts as one to run
        state = counts(study)
        elsewhere = (
            f", {state['running']} running on other workers" if sweep.shared and state["running"] else ""
        )
        print(
            f"sweep {folder}: study '{sweep.study_name}' ({sweep.direction} {sweep.base.monitor}), "
            f"{finished(state)}/{sweep.config.n_trials} trials finished, "
            f"{state['waiting']} to run{elsewhere}"
        )
        deadline = started + sweep.config.timeout if sweep.config.timeout else None
        try:
            run_workers(sweep, deadline)
        except KeyboardInterrupt:
            print(f"\ninterrupted: finished trials are kept; continue with `protfit sweep --resume {folder}`")
            raise
        study = optuna.load_study(study_name=sweep.study_name, storage=storage)
        kept = remove_weights(sweep, study)
        best = write_report(sweep, study, time.time() - started)
        if sweep.config.output.keep_best_weights is not None:
            print(
                f"weights kept (checkpoints/): trial(s) {', '.join(map(str, sorted(kept))) or 'none'}; "
                "every trial keeps its metrics, history and predictions (output.keep_best_weights)"
            )
    return SweepResult(folder=folder, study=study, best=best, counts=counts(study))
