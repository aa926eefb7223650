"""Jobs started from the UI: `python -m protfit ...` subprocesses, recorded in the workspace.

The UI never trains in its own process: Start writes the YAML and runs the same command a user would
type, so a UI run is a CLI run (same folder layout, resumable with ``protfit train --resume``).

Every job has a record, ``jobs/<id>.json`` in the workspace (command, pid, run folder, log, status,
start time; written atomically), so the job belongs to the workspace, not to a browser tab: a reload, a
second tab or a restarted UI finds it, shows its progress and can abort it. The subprocess writes its
output straight into its log file (not through a pipe to the UI), so it outlives the UI process, and
live progress (the progress bars: stage, percent, elapsed, ETA, loss, step) is read back from the log.
A job whose process is gone without its record saying how it ended (the UI died with it) is judged
from its folder: finished when the command's closing file is there, otherwise died.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protfit.registry import plugin_modules
from protfit.report.run_dir import atomic_write

JOBS = "jobs"
# the file each command writes last: its presence means the job's work is complete
DONE_FILES = {"train": "summary.json", "lr-find": "lr_find.json", "sweep": "best.json", "tune": "tune.md"}
# commands that share one "slot": the UI runs one job per slot at a time (one GPU; a double click on
# Start must not launch a second run)
SLOTS = {"train": "train", "lr-find": "lr-find", "sweep": "sweep", "tune": "sweep"}
_JOB_ID = re.compile(r"[A-Za-z0-9][\w-]*")  # unique_name(): prefix-timestamp-random
_LOG_TAIL = 65536  # bytes of the log read for progress: the last bar and ~200 lines fit

# A tqdm line: "epoch 1/2 train:  33%|███▎      | 1/3 [00:01<00:02,  3.56it/s, loss=1.0641, lr=3.00e-03, step=1]"
_PROGRESS = re.compile(
    r"(?P<stage>[^\r\n]*?):\s+(?P<percent>\d+)%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)(?P<rest>[^\]]*)\]"
)
_EPOCH = re.compile(r"epoch (\d+)/(\d+)")
_POSTFIX = re.compile(r"(\w+)=([^,\s\]]+)")


class JobBusy(ValueError):
    """A job of the same slot is already running in the workspace (``job``: that one)."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"`protfit {' '.join(job.argv)}` is already running (`{job.record['run_dir']}`): "
            "abort it or wait until it ends"
        )
        self.job = job


@dataclass
class Progress:
    stage: str = "starting"
    percent: int = 0
    elapsed: str = ""
    eta: str = ""
    postfix: dict[str, str] = field(default_factory=dict)

    @property
    def overall_percent(self) -> float | None:
        """Share of the whole run when the stage names its epoch ("epoch 3/10 train")."""
        match = _EPOCH.search(self.stage)
        if not match:
            return None
        epoch, epochs = int(match.group(1)), int(match.group(2))
        within = self.percent / 100 if "train" in self.stage else 1.0
        return 100 * (epoch - 1 + within) / epochs


def parse_progress(line: str) -> Progress | None:
    match = _PROGRESS.search(line)
    if match is None:
        return None
    return Progress(
        stage=match.group("stage").strip(),
        percent=int(match.group("percent")),
        elapsed=match.group("elapsed"),
        eta=match.group("eta"),
        postfix=dict(_POSTFIX.findall(match.group("rest"))),
    )


def plugins_option() -> list[str]:
    """``--plugins a,b`` for the user plug-in modules this process imported, or nothing."""
    modules = plugin_modules()
    return ["--plugins", ",".join(modules)] if modules else []


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux /proc), which tells a reused pid from ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has finished


def _alive(pid: int, ticks: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not the job's
        return False
    if Path("/proc").is_dir():
        return ticks is not None and _start_ticks(pid) == ticks
    return True


class Job:
    """One `python -m protfit ARGV` job: its record, and its process when this UI started it."""

    def __init__(self, record: dict[str, Any], root: Path, process: subprocess.Popen | None = None) -> None:
        self.record = record
        self.root = root
        self.process = process
        self._lock = threading.Lock()

    # ---- the record --------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def argv(self) -> list[str]:
        return self.record["argv"]

    @property
    def command(self) -> str:
        return self.argv[0]

    @property
    def run_dir(self) -> Path:
        return self.root / self.record["run_dir"]

    @property
    def log_path(self) -> Path:
        return self.root / self.record["log"]

    @property
    def aborted(self) -> bool:
        return bool(self.record.get("aborted"))

    @property
    def started(self) -> float:
        return self.record["started"]

    @property
    def _path(self) -> Path:
        return self.root / JOBS / f"{self.id}.json"

    def _on_disk(self) -> dict[str, Any]:
        try:
            return json.loads(self._path.read_text())
        except (OSError, ValueError):
            return {}

    def save(self) -> None:
        atomic_write(self._path, lambda tmp: tmp.write_text(json.dumps(self.record, indent=1)))

    # ---- the process -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        if self.record["status"] != "running":
            return False
        return _alive(self.record["pid"], self.record.get("pid_start"))

    def settle(self) -> None:
        """Write how the job ended into its record once its process is gone (by whoever sees it first)."""
        with self._lock:
            if self.record["status"] != "running" or self.running:
                return
            # a process found gone later ended no later than its last output
            last_output = (
                self.log_path.stat().st_mtime if self.process is None and self.log_path.is_file() else None
            )
            self.record["finished"] = self.record.get("finished") or last_output or time.time()
            # an Abort pressed in another UI process is only in the file
            self.record["aborted"] = self.aborted or bool(self._on_disk().get("aborted"))
            if self.process is not None:
                code = self.process.returncode
                self.record["returncode"] = code
                status = "finished" if code == 0 else "failed"
            else:  # started by a UI that is gone: only the folder tells how it ended
                done = (self.run_dir / DONE_FILES[self.command]).is_file()
                status = "finished" if done else "died"
            self.record["status"] = "aborted" if self.aborted and status != "finished" else status
            self.save()

    @property
    def status(self) -> str:
        """running, finished, failed (non-zero exit), aborted, or died (its process vanished)."""
        self.settle()
        return self.record["status"]

    @property
    def returncode(self) -> int | None:
        self.settle()
        return self.record.get("returncode")

    @property
    def elapsed(self) -> float:
        return (self.record.get("finished") or time.time()) - self.started

    def abort(self) -> bool:
        """SIGTERM: protfit ends the run like Ctrl-C; completed epochs stay saved and resumable.
        False when the job is not running."""
        with self._lock:
            if not self.running:
                return False
            self.record["aborted"] = True
            self.save()
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
        else:
            os.kill(self.record["pid"], signal.SIGTERM)
        return True

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.time() + timeout
        while self.running:
            if deadline is not None and time.time() > deadline:
                raise subprocess.TimeoutExpired(self.argv, timeout or 0)
            time.sleep(0.1)
        self.settle()

    # ---- what it printed ---------------------------------------------------------------------

    def _tail(self) -> list[str]:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_TAIL))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        return re.split(r"[\r\n]", text)

    @property
    def progress(self) -> Progress:
        """The last progress bar of the log (tqdm redraws it with carriage returns)."""
        for piece in reversed(self._tail()):
            progress = parse_progress(piece)
            if progress is not None:
                return progress
        return Progress()

    @property
    def lines(self) -> list[str]:
        """The log's last lines that are not progress bars."""
        return [p.rstrip() for p in self._tail() if p.strip() and parse_progress(p) is None][-200:]


class JobRegistry:
    """The workspace's jobs: one record per job in ``ROOT/jobs/``, shared by every tab and UI process."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        (self.root / JOBS).mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, Job] = {}  # the jobs this process started (they hold the process)
        # ended jobs read from disk: an ended record never changes, so every page's 1 s tick re-reads
        # only the running ones
        self._ended: dict[str, Job] = {}
        self._lock = threading.RLock()  # start() looks the running jobs up while it holds it

    def start(self, job_id: str, argv: list[str], log: Path, run_dir: Path) -> Job:
        """Run ``protfit ARGV`` in the workspace, unless a job of the same slot is running (JobBusy)."""
        with self._lock:
            busy = self.running(SLOTS[argv[0]])
            if busy:
                raise JobBusy(busy[0])
            with open(log, "a", encoding="utf-8") as output:
                process = subprocess.Popen(
                    # the UI's own plug-in modules (its --plugins) are the run's too
                    [sys.executable, "-m", "protfit", *argv, *plugins_option()],
                    cwd=self.root,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    start_new_session=True,  # a Ctrl-C in the UI's terminal does not reach the run
                )
            record = {
                "id": job_id,
                "argv": argv,
                "pid": process.pid,
                "pid_start": _start_ticks(process.pid),
                "run_dir": run_dir.resolve().relative_to(self.root).as_posix(),
                "log": log.resolve().relative_to(self.root).as_posix(),
                "status": "running",
                "started": time.time(),
            }
            job = Job(record, self.root, process)
            job.save()
            self._jobs[job_id] = job
        # reap the process and record its end even when no page is watching
        threading.Thread(target=lambda: (process.wait(), job.settle()), daemon=True).start()
        return job

    def get(self, job_id: str | None) -> Job | None:
        if not job_id or not _JOB_ID.fullmatch(job_id):  # a name from the browser never leaves jobs/
            return None
        with self._lock:
            if job_id in self._jobs:
                return self._jobs[job_id]
        path = self.root / JOBS / f"{job_id}.json"
        if job_id in self._ended and path.is_file():
            return self._ended[job_id]
        try:
            job = Job(json.loads(path.read_text()), self.root)
        except (OSError, ValueError):
            return None
        if job.status != "running":  # settles one whose process is gone
            self._ended[job_id] = job
        return job

    def all(self) -> list[Job]:
        """Every recorded job, newest first."""
        records = [path for path in (self.root / JOBS).glob("*.json") if not path.name.startswith(".")]
        jobs = [self.get(path.stem) for path in records]
        return sorted((job for job in jobs if job is not None), key=lambda job: job.started, reverse=True)

    def running(self, slot: str | None = None) -> list[Job]:
        """Running jobs (of one slot: train, lr-find, sweep), newest first; settles the ended ones."""
        return [
            job
            for job in self.all()
            if job.status == "running" and (slot is None or SLOTS[job.command] == slot)
        ]

    def stop_all(self) -> None:
        """Abort the jobs this registry started (a test's or an embedding application's cleanup; the
        `protfit webui` command leaves its jobs running when it stops: see ``app.shutdown_notice``)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.abort()
