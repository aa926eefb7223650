"""Training runs started from the UI: `python -m protfit ...` subprocesses in the workspace.

The UI never trains in its own process: Start writes the YAML and runs the same command a user would
type, so a UI run is a CLI run (same folder layout, resumable with ``protfit train --resume``). Live
progress comes from the subprocess's output (the progress bars: stage, percent, elapsed, ETA, loss,
step) and from the run folder's ``history.jsonl``.
"""

from __future__ import annotations

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

# A tqdm line: "epoch 1/2 train:  33%|███▎      | 1/3 [00:01<00:02,  3.56it/s, loss=1.0641, lr=3.00e-03, step=1]"
_PROGRESS = re.compile(
    r"(?P<stage>[^\r\n]*?):\s+(?P<percent>\d+)%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)(?P<rest>[^\]]*)\]"
)
_EPOCH = re.compile(r"epoch (\d+)/(\d+)")
_POSTFIX = re.compile(r"(\w+)=([^,\s\]]+)")


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


class Job:
    """One `python -m protfit ARGS` subprocess with its output teed into ``log_path``."""

    def __init__(self, argv: list[str], cwd: Path, log_path: Path, run_dir: Path | None = None) -> None:
        self.argv = argv
        self.run_dir = run_dir
        self.log_path = log_path
        self.started = time.time()
        self.finished: float | None = None
        self.aborted = False
        self.progress = Progress()
        self.lines: list[str] = []
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            # the UI's own plug-in modules (its --plugins) are the run's too
            [sys.executable, "-m", "protfit", *argv, *plugins_option()],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C in the UI's terminal does not reach the run
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        pending = ""
        with open(self.log_path, "a", encoding="utf-8") as log:
            while chunk := os.read(self.process.stdout.fileno(), 65536):
                text = chunk.decode("utf-8", errors="replace")
                log.write(text)
                log.flush()
                pending += text
                *complete, pending = re.split(r"[\r\n]", pending)
                for piece in complete:
                    self._take(piece)
            if pending:
                self._take(pending)
        self.process.wait()
        self.finished = time.time()

    def _take(self, piece: str) -> None:
        progress = parse_progress(piece)
        if progress is not None:
            self.progress = progress
        elif piece.strip():
            self.lines.append(piece.rstrip())
            del self.lines[:-200]
            if self.run_dir is None and piece.startswith("INFO protfit: run folder: "):
                self.run_dir = Path(piece.split(": ", 2)[2].strip())

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def returncode(self) -> int | None:
        return None if self.running else self.process.returncode

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def abort(self) -> None:
        """SIGTERM: protfit ends the run like Ctrl-C; completed epochs stay saved and resumable."""
        if self.process.poll() is None:
            self.aborted = True
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> None:
        self.process.wait(timeout)
        self._reader.join(timeout)

    def status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "returncode": self.returncode,
            "aborted": self.aborted,
            "elapsed": self.elapsed,
            "progress": self.progress,
            "last_lines": list(self.lines[-15:]),
        }


class JobRegistry:
    """The UI's jobs by id; a browser session holds the id of its job in a gr.State."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def add(self, job_id: str, job: Job) -> None:
        with self._lock:
            self._jobs[job_id] = job

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id or "")

    def stop_all(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.abort()
