"""The run directory: what a finished (or interrupted) run leaves behind.

RUN_DIR/
  run.json               run id, config hash, creation time, pid and host of the creating process, and
                         its environment (Python and library versions, protfit's git commit, threads,
                         device)
  run.lock               present while a process writes the run (pid + host; see RunLock)
  config.yaml            resolved config; `protfit train RUN_DIR/config.yaml` re-runs it
  model_meta.json        what prediction needs: labels, target scaling, backbone family, and the
                         train split's lengths and composition (training_domain: out-of-domain notes)
  model_stats.json       parameter counts (total / trainable / per component)
  data_report.json       truncation, residues mapped to X, sequences shared between splits
  history.csv/.jsonl     one row per epoch (train loss, val loss, val metrics, lr, time)
  checkpoints/best/      weights of the best validation epoch (safetensors)
  checkpoints/last/      weights + optimizer/scheduler/RNG/early-stopping state, for --resume
  test_results.csv       test metrics with bootstrap intervals, model and sanity baselines
  test_predictions.csv   per-sequence predictions on the test split
  loss.png, metrics.png  learning curves
  summary.json           best epoch, best val metric, test metrics, baselines, verdict, wall time

A run folder is created atomically (`os.mkdir` of the final name: of two processes starting the
same name, exactly one wins) and locked while a process writes it; `output.overwrite=true` moves
the old folder aside in one rename and deletes it, so nothing of the previous run survives.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from protfit.config import RunConfig, save_config
from protfit.registry import load_plugin_modules

CONFIG_FILE = "config.yaml"
RUN_INFO_FILE = "run.json"
LOCK_FILE = "run.lock"
# More runs than this started in the same second with the same generated name is not a real case.
_MAX_NAME_SUFFIX = 100


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a temporary file of this process and thread beside ``path``, then rename it
    onto ``path``: a kill mid-write leaves the previous file whole (a plain write left a 0-byte
    history.csv), and processes or threads writing the same file (sweep workers; a web UI job's
    reaper thread and a page settling the same record) never interleave or take each other's file."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    """Write atomically (`atomic_write`), so a crash never leaves a truncated JSON."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
        if isinstance(value, dict):
            return {str(key): clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    text = json.dumps(clean(payload), indent=2)
    atomic_write(path, lambda temporary: temporary.write_text(text))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def load_run_plugins(run_dir: Path) -> None:
    """Import the user plug-in modules a run was trained with (``model_meta.json``'s
    ``plugin_modules``), before its config is read: its pooler, head or regularizer is theirs."""
    meta = run_dir / "model_meta.json"
    if meta.is_file():
        load_plugin_modules(read_json(meta).get("plugin_modules", []), f"recorded in {meta}")


def default_run_name(cfg: RunConfig) -> str:
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(cfg.model.name.rstrip("/")).name)
    return f"{model}-{cfg.model.method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


class RunLockedError(RuntimeError):
    """The run folder is being written by another live process."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:  # an exited but not yet reaped child is a zombie: it holds nothing any more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """A lock file (`RUN_DIR/run.lock`, created with O_CREAT|O_EXCL) naming the pid and host of the
    process that writes the run; a second writer gets :class:`RunLockedError` naming them.

    A lock left by a killed process is detected (same host, pid no longer running) and taken over.
    The lock is per process: the process that holds it may acquire it again (``create_run_dir``
    takes it, and the recipe may wrap the run in ``with RunLock(run_dir):`` to release it at the end).
    A lock from another host is always respected: its process cannot be checked from here.
    Other folders take the same kind of lock under another file name (``eval.lock`` for an eval
    output folder, which is written while the run's own lock may be held by its training).
    """

    def __init__(self, run_dir: str | Path, lock_file: str = LOCK_FILE, what: str = "run folder") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / lock_file
        self.what = what

    def _owner(self) -> dict[str, Any] | None:
        try:
            owner = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def _mine(self, owner: dict[str, Any]) -> bool:
        return owner.get("pid") == os.getpid() and owner.get("hostname") == socket.gethostname()

    def _stale(self, owner: dict[str, Any] | None) -> bool:
        if owner is None:  # unreadable: a writer between O_EXCL and its first write, or a crash right there
            try:
                return time.time() - self.path.stat().st_mtime > 2.0
            except FileNotFoundError:
                return False
        return owner.get("hostname") == socket.gethostname() and not _process_alive(int(owner.get("pid", -1)))

    def _take_over_stale(self, owner: dict[str, Any] | None) -> None:
        # Renaming is atomic: of two processes that both saw the stale lock, one gets it. If the lock
        # was replaced by a live one between our read and the rename, it is linked back in place.
        stolen = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, stolen)
        except FileNotFoundError:
            return
        try:
            current = json.loads(stolen.read_text())
        except (OSError, ValueError):
            current = None
        if current != owner:
            with contextlib.suppress(OSError):  # a newer lock already took the place
                os.link(stolen, self.path)
        stolen.unlink(missing_ok=True)

    def acquire(self) -> RunLock:
        payload = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "created": datetime.now().isoformat(),
        }
        for _ in range(50):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner == {}:  # released between our open and our read
                    continue
                if owner is not None and self._mine(owner):
                    return self
                if self._stale(owner):
                    self._take_over_stale(owner)
                    continue
                if owner is None:
                    time.sleep(0.05)
                    continue
                raise RunLockedError(
                    f"{self.what} {self.run_dir} is in use by process {owner.get('pid')} on "
                    f"{owner.get('hostname')} (since {owner.get('created')}); wait for it to finish, or "
                    f"delete {self.path} if that process is gone"
                ) from None
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(payload))
            return self
        raise RunLockedError(f"could not lock {self.what} {self.run_dir}: {self.path} keeps changing")

    def release(self) -> None:
        owner = self._owner()
        if owner and self._mine(owner):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


_HELD_LOCKS: dict[Path, RunLock] = {}


@atexit.register
def _release_held_locks() -> None:
    for lock in _HELD_LOCKS.values():
        lock.release()


def can_create_files_in(folder: Path) -> bool:
    """Whether a file can really be created in ``folder``, by creating (and removing) one.

    ``os.access`` reads permission bits only: it says yes to root everywhere, and for /proc or a
    read-only mount, where creating a file fails (`predict -o /proc/x.csv` failed after predicting).
    """
    try:
        descriptor, probe = tempfile.mkstemp(dir=folder, prefix=".protfit-write-test-")
    except OSError:
        return False
    os.close(descriptor)
    os.unlink(probe)
    return True


def ensure_writable(folder: str | Path, what: str = "output folder") -> Path:
    """Fail before any work when ``folder`` (or, if it does not exist yet, the nearest existing
    folder above it, where it would be created) cannot be written."""
    path = Path(folder).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{what} {path}: {existing} is a file, not a folder")
    if not can_create_files_in(existing):
        where = "" if existing == path else f" (it would be created in {existing})"
        raise PermissionError(f"{what} {path} is not writable{where}; choose a folder you can write to")
    return path


def ensure_output_file(path: str | Path, what: str = "output file") -> Path:
    """Fail before any work when ``path`` cannot be written as a file: a folder, a missing parent
    folder, or no write permission (prediction runs for minutes before it writes)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(
            f"{what} {path} is a folder; give a file name, e.g. {path / 'predictions.csv'}"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{what} {path}: folder {path.parent} does not exist; create it first")
    if not can_create_files_in(path.parent) or (path.exists() and not os.access(path, os.W_OK)):
        raise PermissionError(f"{what} {path} is not writable; choose a file in a folder you can write to")
    return path


def ensure_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """Like :func:`ensure_writable`, and ``path`` must not be an existing file."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"{what} {path} is a file; results are written into a folder, give a folder path"
        )
    return ensure_writable(path, what)


# The libraries whose versions move a run's numbers (constraints.txt pins them for the documented
# numbers: a newer transformers moved the quickstart from 0.811 to 0.837).
ENVIRONMENT_PACKAGES = (
    "protfit",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "optuna",
    "numpy",
    "scikit-learn",
)


def environment(device: str, torch_threads: int, processes: int) -> dict[str, Any]:
    """What a run's numbers depend on besides its config: Python and library versions (None: not
    installed), protfit's git commit when it runs from a checkout, torch's threads and the device."""
    packages: dict[str, str | None] = {}
    for name in ENVIRONMENT_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "packages": packages,
        "protfit_git_commit": _git_commit(Path(__file__).resolve().parents[3]),
        "torch_threads": torch_threads,
        "device": device,
        "processes": processes,
    }


def _git_commit(root: Path) -> str | None:
    """HEAD of the checkout protfit's source is in (``-dirty`` with uncommitted changes to tracked
    files); None for an installed wheel or without git."""
    if not (root / ".git").exists():
        return None
    try:
        commit, changes = (
            subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            for args in (["rev-parse", "HEAD"], ["status", "--porcelain", "--untracked-files=no"])
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if changes else "")


def config_hash(cfg: RunConfig) -> str:
    """A short fingerprint of the resolved config (what ran, not how it was spelled)."""
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """`run.json` of a run folder; None for runs created before it existed."""
    path = Path(run_dir) / RUN_INFO_FILE
    return read_json(path) if path.is_file() else None


def run_id_of(run_dir: str | Path) -> str | None:
    info = read_run_info(run_dir)
    return None if info is None else info.get("run_id")


def _claim_named(run_dir: Path, overwrite: bool) -> RunLock:
    """Create and lock ``run_dir``, or take over an existing one when allowed; one process wins."""
    try:
        run_dir.mkdir()
        return RunLock(run_dir).acquire()
    except FileExistsError:
        if not run_dir.is_dir():
            raise FileExistsError(
                f"{run_dir} exists and is not a folder; choose another output.name"
            ) from None
    lock = RunLock(run_dir).acquire()  # a live writer (another run, or a racing start) stops us here
    if not overwrite:
        if any(path.name != LOCK_FILE for path in run_dir.iterdir()):
            lock.release()
            raise FileExistsError(
                f"run folder {run_dir} already exists and is not empty; choose another output.name, "
                "set output.overwrite=true, or continue it with `protfit train --resume "
                f"{run_dir}`"
            )
        return lock
    # Overwrite: one rename moves every file of the old run out of the way, so no checkpoint or result
    # of it can mix into the new run; it is deleted after the new folder exists.
    aside = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(run_dir, aside)
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise RunLockedError(
            f"run folder {run_dir} was created by another process while this one replaced it"
        ) from None
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return RunLock(run_dir).acquire()


def create_run_dir(cfg: RunConfig, run_environment: dict[str, Any]) -> Path:
    """Create the run folder atomically and lock it for this process; write run.json (with
    ``run_environment``, see `environment`) and config.yaml.

    An explicit ``output.name`` that exists is refused (or replaced, with ``output.overwrite``; or
    reused when empty); a generated name that another run took in the same second gets a ``-2``,
    ``-3``... suffix. The lock is held until the process exits or :class:`RunLock` releases it.
    """
    parent = ensure_writable(cfg.output.dir, "output.dir")
    parent.mkdir(parents=True, exist_ok=True)
    if cfg.output.name:
        run_dir = parent / cfg.output.name
        lock = _claim_named(run_dir, cfg.output.overwrite)
    else:
        base = default_run_name(cfg)
        for attempt in range(1, _MAX_NAME_SUFFIX + 1):
            run_dir = parent / (base if attempt == 1 else f"{base}-{attempt}")
            try:
                run_dir.mkdir()
            except FileExistsError:
                continue
            lock = RunLock(run_dir).acquire()
            break
        else:
            raise FileExistsError(f"{parent} already holds runs {base} to {base}-{_MAX_NAME_SUFFIX}")
    _HELD_LOCKS[run_dir] = lock
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    save_config(cfg, run_dir / CONFIG_FILE)
    write_json(
        run_dir / RUN_INFO_FILE,
        {
            "run_id": uuid.uuid4().hex,
            "config_hash": config_hash(cfg),
            "created": datetime.now().isoformat(timespec="seconds"),
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "environment": run_environment,
        },
    )
    return run_dir


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary.json (written atomically when the run finished), or None before that."""
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _plain(value: Any) -> Any:
    """A CSV cell as JSON would have held it: nan as None, numpy scalars as Python numbers."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The run's per-epoch records: history.jsonl (blank lines skipped; reading stops at a line that
    does not parse, one a pre-atomic-write version was writing when it was read), else history.csv
    (runs of older versions), else none. The one reader of a run's history (web UI, compare, resume,
    sweep pruning)."""
    jsonl = run_dir / "history.jsonl"
    if jsonl.is_file():
        records = []
        for line in jsonl.read_text().splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records
    csv = run_dir / "history.csv"
    if csv.is_file():
        import pandas as pd

        frame = pd.read_csv(csv)
        return [{key: _plain(value) for key, value in row.items()} for row in frame.to_dict("records")]
    return []


class History:
    """Per-epoch records, rewritten in full (and atomically) after every epoch (CSV and JSON lines)."""

    def __init__(self, run_dir: Path, records: list[dict[str, Any]] | None = None) -> None:
        self.run_dir = run_dir
        self.records = list(records or [])

    @classmethod
    def load(cls, run_dir: Path) -> History:
        return cls(run_dir, read_history(run_dir))

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.records = [row for row in self.records if row["epoch"] <= record["epoch"]]
        lines = "".join(json.dumps(row) + "\n" for row in self.records)
        atomic_write(self.run_dir / "history.jsonl", lambda temporary: temporary.write_text(lines))
        # Imported here: `protfit train` checks the output folder through this module before any
        # heavy import, so that a config error answers at once.
        import pandas as pd

        table = pd.DataFrame(self.records)
        atomic_write(self.run_dir / "history.csv", lambda temporary: table.to_csv(temporary, index=False))

    def truncate(self, last_epoch: int) -> None:
        self.records = [row for row in self.records if row["epoch"] <= last_epoch]
