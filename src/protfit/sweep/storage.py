"""The Optuna side of a sweep: storage, sampler, pruner, the study and its trial slots.

`open_study` creates the study with ``n_trials`` waiting slots (enqueued trials) or joins it; a worker
takes one with `claim_slot` (serialised by a file lock on SQLite, which has no row locks). On a shared
storage Optuna's heartbeat keeps a claimed trial alive, and `fail_stale_trials` lets
any worker fail a dead worker's trial and queue its parameters again; on a local one
`requeue_interrupted` / `top_up` do that on `--resume`, and refill the slots.
Nothing here runs a trial: that is `protfit.sweep.study`'s worker loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from protfit.config import ConfigError
from protfit.sweep.space import enqueued_params, iter_grid

if TYPE_CHECKING:
    from protfit.sweep.study import Sweep

CLAIM_LOCK_FILE = ".claim.lock"
# a trial whose worker dies is queued again at most this often (a trial that kills its worker every
# time, e.g. out of memory, must not keep the study from ending)
MAX_RETRIES = 2

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# ---- Optuna objects ------------------------------------------------------------------------------


def make_storage(sweep: Sweep) -> optuna.storages.RDBStorage:
    engine_kwargs = {"connect_args": {"timeout": 60}} if sweep.storage_url.startswith("sqlite") else None
    if not sweep.shared:
        return optuna.storages.RDBStorage(sweep.storage_url, engine_kwargs=engine_kwargs)
    # workers starting together on an empty database race to create Optuna's tables: retry
    for attempt in range(5):
        try:
            # a worker that dies stops its heartbeat; after the grace period any worker marks the trial
            # failed (`fail_stale_trials`) and this callback queues its parameters again as a new slot
            return optuna.storages.RDBStorage(
                sweep.storage_url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=sweep.config.study.heartbeat_interval,
                grace_period=sweep.config.study.grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRIES
                ),
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
        fixed = sweep.config.enqueue[: sweep.config.n_trials]
        for params in fixed:  # e.g. the starting config as trial 0 (`protfit tune`)
            study.enqueue_trial(enqueued_params(params), user_attrs={"enqueued": True})
        fill_slots(study, sweep, sweep.config.n_trials - len(fixed))
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
            if trial.state != TrialState.FAIL or trial.user_attrs.get("collapsed")
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
    """Trials per state; a trial that failed because its model collapsed (user attr ``collapsed``)
    counts as ``collapsed``, not ``fail``: it ran to the end and is an answer, so it uses up its
    slot of the budget and is not queued again."""
    result = {state.name.lower(): 0 for state in TrialState} | {"collapsed": 0}
    for trial in study.get_trials(deepcopy=False):
        collapsed = trial.state == TrialState.FAIL and trial.user_attrs.get("collapsed")
        result["collapsed" if collapsed else trial.state.name.lower()] += 1
    return result


def finished(state: dict[str, int]) -> int:
    """Trials that used up a slot of the budget: complete, pruned or collapsed."""
    return state["complete"] + state["pruned"] + state["collapsed"]


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
    missing = sweep.config.n_trials - finished(state) - state["waiting"] - state["running"]
    fill_slots(study, sweep, missing)
    return max(missing, 0)


# ---- claiming slots: locks and heartbeats for the worker loop ------------------------------------


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
            if sweep.shared:
                # beat before the claim: Optuna never finds a RUNNING trial without a heartbeat stale, so
                # a worker killed between claim and its first beat would leave a trial that never ends
                storage.record_heartbeat(trial_id)
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
