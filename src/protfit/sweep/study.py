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
are queued again (on `--resume` for a local sweep; by Optuna's heartbeat for a shared storage).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import fcntl
import json
import math
import multiprocessing
import os
import random
import signal
import socket
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import TrialState

from protfit.config import ConfigError, RunConfig
from protfit.sweep.config import SweepConfig, base_run_raw, build_sweep_config, trial_run_config
from protfit.sweep.space import Param, check_space, grid_size, iter_grid, resolve_space, suggest_params

SWEEP_FILE = "sweep.yaml"
DB_FILE = "study.db"
LOCK_FILE = ".sweep.lock"
CLAIM_LOCK_FILE = ".claim.lock"
HEARTBEAT_S = 10
GRACE_S = 60
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_FAILURES = 3

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


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
    payload["study"] = {"name": sweep.study_name, "storage": sweep.config.study.storage}
    payload["output"] = {"dir": str(sweep.folder.parent), "name": sweep.folder.name}
    atomic_write(
        sweep.folder / SWEEP_FILE, lambda path: path.write_text(yaml.safe_dump(payload, sort_keys=False))
    )


def atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file of this process and rename: workers of one sweep write the same
    report files, and a reader never sees half a file."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    write(temporary)
    os.replace(temporary, path)


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


# ---- Optuna objects ------------------------------------------------------------------------------


def make_storage(sweep: Sweep) -> optuna.storages.RDBStorage:
    engine_kwargs = {"connect_args": {"timeout": 60}} if sweep.storage_url.startswith("sqlite") else None
    if not sweep.shared:
        return optuna.storages.RDBStorage(sweep.storage_url, engine_kwargs=engine_kwargs)
    # workers starting together on an empty database race to create Optuna's tables: retry
    for attempt in range(5):
        try:
            # a worker that dies stops its heartbeat; after the grace period any worker marks the trial
            # failed and queues its parameters again
            return optuna.storages.RDBStorage(
                sweep.storage_url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=2),
            )
        except ImportError:
            raise ConfigError(
                f"no database driver for {_without_password(sweep.storage_url)}: for PostgreSQL "
                '`pip install "psycopg[binary]"` (postgresql://...) or psycopg2-binary (postgresql+psycopg2://...)'
            ) from None
        except Exception as error:  # sqlalchemy errors of a concurrent CREATE TABLE
            if attempt == 4 or "could not connect" in str(error) or "Connection refused" in str(error):
                raise RuntimeError(
                    f"cannot open the study storage {_without_password(sweep.storage_url)}: {error}"
                ) from None
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def _without_password(url: str) -> str:
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':')[0]}@{tail}"


def make_sampler(sweep: Sweep, worker: int, offset: int) -> optuna.samplers.BaseSampler:
    cfg = sweep.config.sampler
    # distinct per worker and per restart, so parallel workers and a resumed sweep do not repeat draws;
    # on a shared storage, workers on other machines (or started at the same moment) are worker 0 with
    # the same offset too, so the process's host and pid join the seed
    seed = None if cfg.seed is None else cfg.seed + 1000 * worker + offset
    if seed is not None and sweep.shared:
        seed += zlib.crc32(f"{socket.gethostname()}-{os.getpid()}".encode()) % 1_000_000 * 1000
    if cfg.name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    if cfg.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    # grid: the combinations are enqueued as the trial slots (fixed parameters), see fill_slots
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    cfg = sweep.config.pruner
    if cfg.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps
        )
    if cfg.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=cfg.min_resource, reduction_factor=cfg.reduction_factor
        )
    if cfg.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=cfg.min_resource,
            max_resource=sweep.base.train.epochs,
            reduction_factor=cfg.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def load_study(sweep: Sweep, storage, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """A fresh study object per trial (samplers read the current history), with the worker's sampler."""
    return optuna.load_study(
        study_name=sweep.study_name, storage=storage, sampler=sampler, pruner=make_pruner(sweep)
    )


def started_trials(storage, sweep: Sweep) -> int:
    study_id = storage.get_study_id_from_name(sweep.study_name)
    return sum(
        trial.state != TrialState.WAITING for trial in storage.get_all_trials(study_id, deepcopy=False)
    )


def open_study(sweep: Sweep, storage) -> optuna.Study:
    """Create the study with its trial slots, or join it; refuse a study of another direction."""
    try:
        study = optuna.create_study(
            study_name=sweep.study_name, storage=storage, direction=sweep.direction, load_if_exists=False
        )
        fill_slots(study, sweep, sweep.config.n_trials)
        study.set_user_attr("protfit", {"n_trials": sweep.config.n_trials, "monitor": sweep.base.monitor})
        return study
    except optuna.exceptions.DuplicatedStudyError:
        pass
    study = optuna.load_study(study_name=sweep.study_name, storage=storage)
    if study.direction.name.lower() != sweep.direction:
        raise ConfigError(
            f"study '{sweep.study_name}' in {_without_password(sweep.storage_url)} is a "
            f"{study.direction.name.lower()} study, but this sweep's monitor {sweep.base.monitor} needs "
            f"{sweep.direction}; use another --study name"
        )
    # another worker created it: wait (briefly) until its slots are in
    for _ in range(240):
        if "protfit" in study.user_attrs:
            return study
        time.sleep(0.5)
    raise RuntimeError(
        f"study '{sweep.study_name}' exists but has no trial slots (not created by `protfit sweep`, or its "
        "creator was killed while creating it); use another --study name"
    )


def fill_slots(study: optuna.Study, sweep: Sweep, count: int) -> None:
    if count <= 0:
        return
    if sweep.config.sampler.name == "grid":
        seen = {
            tuple(sorted(trial.params.items()))
            for trial in study.get_trials(deepcopy=False)
            if trial.state != TrialState.FAIL
        }
        seen |= {
            tuple(sorted(trial.system_attrs.get("fixed_params", {}).items()))
            for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        }
        combinations = [combo for combo in iter_grid(sweep.space) if tuple(sorted(combo.items())) not in seen]
        for combination in combinations[:count]:
            study.enqueue_trial(combination)
        return
    for _ in range(count):
        study.enqueue_trial({})


def counts(study: optuna.Study) -> dict[str, int]:
    result = {state.name.lower(): 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        result[trial.state.name.lower()] += 1
    return result


def requeue_interrupted(study: optuna.Study, storage) -> list[int]:
    """Trials left RUNNING by a killed sweep: mark failed, queue their parameters again."""
    study_id = storage.get_study_id_from_name(study.study_name)
    requeued = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        fixed = trial.params or trial.system_attrs.get("fixed_params", {})
        study.enqueue_trial(dict(fixed), user_attrs={"retry_of": trial.number})
        requeued.append(trial.number)
    return requeued


def top_up(study: optuna.Study, sweep: Sweep) -> int:
    """Queue slots until finished + waiting trials reach n_trials (replaces failed trials on resume)."""
    state = counts(study)
    missing = (
        sweep.config.n_trials - state["complete"] - state["pruned"] - state["waiting"] - state["running"]
    )
    fill_slots(study, sweep, missing)
    return max(missing, 0)


# ---- the worker loop ----------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claim_slot(sweep: Sweep, study: optuna.Study, storage) -> int | None:
    """Atomically move one WAITING trial to RUNNING; None when no slot is left."""
    study_id = storage.get_study_id_from_name(sweep.study_name)
    # SQLite has no row locks: two processes could claim the same slot, so claims there are serialised
    lock = _claim_lock_path(sweep)
    with file_lock(lock) if lock else contextlib.nullcontext():
        for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return trial_id
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
    return None


def _claim_lock_path(sweep: Sweep) -> Path | None:
    if not sweep.storage_url.startswith("sqlite"):
        return None
    if not sweep.shared:
        return sweep.folder / CLAIM_LOCK_FILE
    return Path(sweep.storage_url.removeprefix("sqlite:///") + ".claim.lock")


@contextlib.contextmanager
def heartbeat(storage, trial_id: int, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            storage.record_heartbeat(trial_id)
            stop.wait(HEARTBEAT_S)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def worker_loop(sweep: Sweep, worker: int = 0, deadline: float | None = None) -> None:
    """Claim slots and run trials until none is left, the deadline passes, or trials keep failing."""
    from protfit.sweep.objective import run_plan, run_trial

    storage = make_storage(sweep)
    fold_dirs = sorted(sweep.folds_dir.glob("fold-*")) if sweep.config.objective.cv else None
    test_file = sweep.folds_dir / "test.csv"
    plan = run_plan(sweep.config.objective.seeds, fold_dirs, test_file if test_file.is_file() else None)
    sweep.trials_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    # one sampler per worker for its whole life: its random state moves on from trial to trial
    sampler = make_sampler(sweep, worker, started_trials(storage, sweep))
    while deadline is None or time.time() < deadline:
        study = load_study(sweep, storage, sampler)
        if sweep.shared:
            optuna.storages.fail_stale_trials(study)
        trial_id = claim_slot(sweep, study, storage)
        if trial_id is None:
            return
        study.get_trials(deepcopy=False)  # the study's storage cache learns the claimed trial's id
        trial = optuna.Trial(study, trial_id)
        started = time.perf_counter()
        with heartbeat(storage, trial_id, sweep.shared):
            try:
                params = suggest_params(trial, sweep.space, sweep.base)
                value = run_trial(trial, params, sweep.run_config, sweep.trials_dir, plan)
            except optuna.TrialPruned as pruned:
                study.tell(trial, state=TrialState.PRUNED)
                report_trial(sweep, study, trial.number, "pruned", str(pruned), started)
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


def format_value(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def format_params(params: dict[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        short = key.split(".")[-1]
        parts.append(f"{short}={value:.3g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def report_trial(
    sweep: Sweep, study: optuna.Study, number: int, state: str, note: str | None, started: float
) -> None:
    """The live line: trial k/N, its state and value, parameters, the best so far."""
    trial = study.get_trials(deepcopy=False)[number]
    done = counts(study)
    finished = done["complete"] + done["pruned"]
    value = trial.value if state == "complete" else None
    spread = trial.user_attrs.get("sd")
    shown = format_value(value) + (f" ± {spread:.4f}" if spread and value is not None else "")
    if state == "pruned":
        shown = f"at epoch {trial.user_attrs.get('pruned_at_epoch', '?')}"
    best = best_trial(study)
    best_text = f"best {format_value(best.value)} (#{best.number})" if best else "best -"
    line = (
        f"trial {finished}/{sweep.config.n_trials} #{number} {state} {sweep.base.monitor} {shown}  "
        f"{format_params(trial.params)}  | {best_text}  {time.perf_counter() - started:.1f}s"
    )
    if state == "failed" and note:
        line += f"\n  error: {note}"
    print(line, flush=True)


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


def worker_process(folder: str, worker: int, threads: int, gpu: str | None, deadline: float | None) -> None:
    _die_with_parent()
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
        context.Process(target=worker_process, args=(str(sweep.folder), index, threads, gpu, deadline))
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
        state = counts(study)
        print(
            f"sweep {folder}: study '{sweep.study_name}' ({sweep.direction} {sweep.base.monitor}), "
            f"{state['complete'] + state['pruned']}/{sweep.config.n_trials} trials finished, "
            f"{state['waiting']} to run"
        )
        deadline = started + sweep.config.timeout if sweep.config.timeout else None
        try:
            run_workers(sweep, deadline)
        except KeyboardInterrupt:
            print(f"\ninterrupted: finished trials are kept; continue with `protfit sweep --resume {folder}`")
            raise
        study = optuna.load_study(study_name=sweep.study_name, storage=storage)
        best = write_report(sweep, study, time.time() - started)
    return SweepResult(folder=folder, study=study, best=best, counts=counts(study))


def trials_table(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        epochs = attrs.get("pruned_at_epoch") if trial.state == TrialState.PRUNED else attrs.get("epochs_run")
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value if trial.state == TrialState.COMPLETE else None,
                "sd": attrs.get("sd"),
                "epochs": epochs,
                "wall_time_s": attrs.get("wall_time_s"),
                **trial.params,
                "run_dir": attrs.get("run_dir"),
                "note": attrs.get("error")
                or attrs.get("diverged")
                or ("interrupted" if attrs.get("interrupted") else None),
            }
        )
    return pd.DataFrame(rows)


def write_report(sweep: Sweep, study: optuna.Study, wall_time_s: float) -> dict[str, Any] | None:
    table = trials_table(study)
    atomic_write(sweep.folder / "trials.csv", lambda path: table.to_csv(path, index=False))
    state = counts(study)
    best = best_trial(study)
    summary: dict[str, Any] | None = None
    if best is not None:
        summary = {
            "trial": best.number,
            "monitor": sweep.base.monitor,
            "direction": sweep.direction,
            "value": best.value,
            "sd": best.user_attrs.get("sd"),
            "values": best.user_attrs.get("values"),
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
            "test_metrics": best.user_attrs.get("test_metrics"),
        }
    report = {
        "best": summary,
        "counts": state,
        "n_trials": sweep.config.n_trials,
        "wall_time_s": round(wall_time_s, 2),
    }
    atomic_write(
        sweep.folder / "best.json", lambda path: path.write_text(json.dumps(report, indent=2, default=str))
    )
    write_plots(study, sweep.folder)
    print()
    columns = [column for column in table.columns if column not in ("run_dir", "note")]
    print(table[columns].to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    finished = state["complete"] + state["pruned"]
    print(
        f"\n{finished}/{sweep.config.n_trials} trials finished ({state['complete']} complete, {state['pruned']} "
        f"pruned, {state['fail']} failed) in {wall_time_s:.1f}s"
    )
    if finished < sweep.config.n_trials:
        print(f"not all trials ran; continue with `protfit sweep --resume {sweep.folder}`")
    if summary:
        print(
            f"best: trial {summary['trial']}  {sweep.base.monitor} {summary['value']:.4f}  "
            f"{format_params(summary['params'])}\n  run folder: {summary['run_dir']}"
        )
    print(f"sweep folder: {sweep.folder}")
    return summary


def write_plots(study: optuna.Study, folder: Path) -> None:
    """Optuna's optimization history and parameter importances (skipped when there is too little data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots = {"optimization_history": optuna_plots.plot_optimization_history}
    if len(complete) >= 2 and any(len(trial.params) for trial in complete):
        plots["param_importances"] = optuna_plots.plot_param_importances
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" notices, equal-importance notes
                axis = plot(study)
            axis.figure.tight_layout()
            atomic_write(
                folder / f"{name}.png", lambda path, figure=axis.figure: figure.savefig(path, dpi=110)
            )
            plt.close(axis.figure)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. constant values
            print(f"({name} plot skipped: {error})")
