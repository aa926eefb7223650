"""The run folder: atomic creation, a lock a second writer respects, overwrite from an empty folder."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from protfit.config import build_config
from protfit.report import run_dir as run_dir_module
from protfit.report.run_dir import (
    LOCK_FILE,
    History,
    RunLock,
    RunLockedError,
    create_run_dir,
    ensure_writable,
    environment,
    read_run_info,
    run_id_of,
)

FORK = multiprocessing.get_context("fork")
ENV = environment("cpu", 1, 1)


def make_config(output_dir: Path, **output):
    return build_config(
        {
            "data": {"path": "unused", "problem_type": "regression"},
            "model": {"name": "tiny-esm2"},
            "output": {"dir": str(output_dir), **output},
        }
    )


def _create_in_child(cfg, start, results) -> None:
    start.wait()
    try:
        results.put(("ok", str(create_run_dir(cfg, ENV))))
    except Exception as error:  # the parent checks which kind
        results.put((type(error).__name__, str(error)))


def race(cfg, processes: int = 2) -> list[tuple[str, str]]:
    start, results = FORK.Event(), FORK.Queue()
    children = [FORK.Process(target=_create_in_child, args=(cfg, start, results)) for _ in range(processes)]
    for child in children:
        child.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    return outcomes


def test_run_json_records_id_hash_time_and_pid(tmp_path):
    run_dir = create_run_dir(make_config(tmp_path, name="run"), ENV)
    info = read_run_info(run_dir)
    assert set(info) == {"run_id", "config_hash", "created", "pid", "hostname", "environment"}
    assert info["pid"] == os.getpid() and run_id_of(run_dir) == info["run_id"]
    assert (run_dir / LOCK_FILE).is_file()  # held by this process until it exits or releases


def test_the_environment_names_versions_commit_threads_and_device():
    import platform
    import subprocess

    import numpy
    import torch
    import transformers

    env = environment("cuda:0 (NVIDIA H100)", 3, 2)
    assert env["python"] == platform.python_version()
    assert env["packages"]["torch"] == torch.__version__ and env["packages"]["numpy"] == numpy.__version__
    assert env["packages"]["transformers"] == transformers.__version__
    assert set(env["packages"]) >= {"protfit", "peft", "accelerate", "optuna", "scikit-learn"}
    root = Path(run_dir_module.__file__).resolve().parents[3]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert env["protfit_git_commit"].removesuffix("-dirty") == head.stdout.strip()
    assert (env["torch_threads"], env["device"], env["processes"]) == (3, "cuda:0 (NVIDIA H100)", 2)


def test_two_processes_with_one_name_exactly_one_wins(tmp_path):
    outcomes = race(make_config(tmp_path, name="shared"))
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds[1] == "ok" and kinds[0] in ("FileExistsError", "RunLockedError"), outcomes
    loser = next(message for kind, message in outcomes if kind != "ok")
    assert "shared" in loser


def test_two_processes_without_a_name_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir_module, "default_run_name", lambda cfg: "tiny-esm2-freeze-20250101-000000")
    outcomes = race(make_config(tmp_path), processes=3)
    assert [kind for kind, _ in outcomes] == ["ok"] * 3
    folders = sorted(Path(message).name for _, message in outcomes)
    base = "tiny-esm2-freeze-20250101-000000"
    assert folders == [base, f"{base}-2", f"{base}-3"]


def _hold_run(cfg, ready, finish) -> None:
    create_run_dir(cfg, ENV)
    ready.set()
    finish.wait(60)
    os._exit(0)  # like a killed process: no clean-up, the lock file stays behind


def test_a_live_run_blocks_overwrite_and_a_dead_ones_lock_is_stale(tmp_path):
    cfg = make_config(tmp_path, name="busy", overwrite=True)
    ready, finish = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_run, args=(cfg, ready, finish))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid}"):
            create_run_dir(cfg, ENV)
        with pytest.raises(RunLockedError):
            RunLock(tmp_path / "busy").acquire()  # what --resume takes
    finally:
        finish.set()
        holder.join(60)
    stale = json.loads((tmp_path / "busy" / LOCK_FILE).read_text())
    assert stale["pid"] == holder.pid  # the killed process left its lock
    create_run_dir(cfg, ENV)  # ...which is recognised as stale
    assert read_run_info(tmp_path / "busy")["pid"] == os.getpid()


def test_overwrite_starts_from_an_empty_folder(tmp_path):
    cfg = make_config(tmp_path, name="again", overwrite=True)
    old = create_run_dir(cfg, ENV)
    old_id = run_id_of(old)
    (old / "checkpoints" / "last").mkdir()
    (old / "summary.json").write_text("{}")
    (old / "eval").mkdir()
    new = create_run_dir(cfg, ENV)
    assert new == old and run_id_of(new) != old_id
    assert sorted(path.name for path in new.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "run.json",
        LOCK_FILE,
    ]
    assert list((new / "checkpoints").iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["again"]  # the old folder is gone


def test_existing_run_without_overwrite_is_refused_and_empty_folder_reused(tmp_path):
    (tmp_path / "empty").mkdir()
    assert create_run_dir(make_config(tmp_path, name="empty"), ENV) == tmp_path / "empty"
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        create_run_dir(make_config(tmp_path, name="empty"), ENV)


def test_lock_is_released_by_the_context_manager(tmp_path):
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_FILE).is_file()
    assert not (tmp_path / LOCK_FILE).exists()


def test_unwritable_output_dir_fails_before_anything_is_created(tmp_path, monkeypatch):
    target = tmp_path / "runs" / "deeper"
    real_probe = run_dir_module.can_create_files_in
    monkeypatch.setattr(
        run_dir_module, "can_create_files_in", lambda path: Path(path) != tmp_path and real_probe(path)
    )
    with pytest.raises(PermissionError, match=f"output.dir {target} is not writable"):
        create_run_dir(make_config(target, name="x"), ENV)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        ensure_writable(tmp_path / "file" / "runs")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_dir_is_reported(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            ensure_writable(tmp_path / "runs")
    finally:
        tmp_path.chmod(0o755)


def test_a_kill_while_history_is_written_keeps_the_previous_history(tmp_path, monkeypatch):
    # history.csv was written in place: a kill mid-write left it at 0 bytes
    import pandas as pd

    history = History(tmp_path)
    history.append({"epoch": 1, "train_loss": 0.5})

    def killed_mid_write(self, path, **options):
        Path(path).write_text("epo")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        history.append({"epoch": 2, "train_loss": 0.4})
    monkeypatch.undo()
    assert pd.read_csv(tmp_path / "history.csv").to_dict("records") == [{"epoch": 1, "train_loss": 0.5}]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["history.csv", "history.jsonl"]


def test_two_threads_writing_one_file_at_once_each_replace_it_whole(tmp_path) -> None:
    import threading

    from protfit.report.run_dir import atomic_write

    target = tmp_path / "record.json"
    both_written = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def save(text: str) -> None:
        def write(temporary) -> None:
            temporary.write_text(text)
            both_written.wait()  # both temporaries exist before either is renamed

        try:
            atomic_write(target, write)
        except BaseException as error:  # one temporary for both threads: the second rename failed
            errors.append(error)

    threads = [threading.Thread(target=save, args=(text,)) for text in ("a" * 100, "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and target.read_text() in ("a" * 100, "b")
    assert [path.name for path in tmp_path.iterdir()] == ["record.json"]  # no temporary left
