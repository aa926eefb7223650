"""The workspace's job registry: a job belongs to the workspace, not to a browser tab or a UI process."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from protfit.data.synthetic import write_synthetic_dataset
from protfit.webui import jobs as jobs_module
from protfit.webui import schema
from protfit.webui.app import shutdown_notice
from protfit.webui.jobs import JobBusy, JobRegistry
from protfit.webui.predict_tab import trained_runs
from protfit.webui.train_tab import TrainTab
from protfit.webui.tune_tab import TuneTab
from protfit.webui.workspace import Workspace


@pytest.fixture
def slow_protfit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`python -m protfit ...` replaced by a process that prints a progress bar and sleeps: what the
    registry does with a process, without a training's minutes."""
    script = tmp_path / "fake-python"
    script.write_text(
        "#!/bin/sh\n"
        "printf 'epoch 1/3 train:  50%%|#####     | 1/2 [00:01<00:01,  1.00it/s, loss=0.5]\\r'\n"
        'exec sleep "${PROTFIT_FAKE_SECONDS:-30}"\n'
    )
    script.chmod(0o755)
    monkeypatch.setattr(jobs_module.sys, "executable", str(script))
    return script


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    space = Workspace(tmp_path / "ws")
    write_synthetic_dataset(space.root / "datasets" / "syn", "single_label_classification", 20, 10, 10)
    return space


def _start(registry: JobRegistry, workspace: Workspace, name: str, command: str = "train"):
    return registry.start(
        name,
        [command, f"configs/{name}.yaml"],
        workspace.root / "configs" / f"{name}.log",
        workspace.root / "runs" / name,
    )


def _form_values() -> list[object]:
    values = {spec.key: spec.default for spec in schema.field_specs()}
    values.update({"data.problem_type": "single_label_classification", "model.name": "onehot"})
    return list(values.values())


def test_the_record_is_in_the_workspace_and_another_ui_can_abort_the_job(workspace, slow_protfit) -> None:
    first = JobRegistry(workspace.root)
    job = _start(first, workspace, "webui-a")
    record = json.loads((workspace.root / "jobs" / "webui-a.json").read_text())
    assert record["pid"] == job.process.pid and record["status"] == "running"
    assert record["argv"] == ["train", "configs/webui-a.yaml"] and record["run_dir"] == "runs/webui-a"
    for _ in range(50):  # the progress bar comes from the log file the process writes
        if job.progress.stage != "starting":
            break
        time.sleep(0.1)
    assert job.progress.stage == "epoch 1/3 train" and job.progress.percent == 50

    restarted = JobRegistry(workspace.root)  # a restarted UI: no process handle, only the record
    [found] = restarted.running("train")
    assert found.id == "webui-a" and found.process is None
    assert found.abort()
    job.wait(10)
    assert job.status == "aborted"
    assert json.loads((workspace.root / "jobs" / "webui-a.json").read_text())["status"] == "aborted"
    assert restarted.running() == []


def test_a_second_job_of_the_same_kind_is_refused_while_one_runs(workspace, slow_protfit) -> None:
    registry = JobRegistry(workspace.root)
    first = _start(registry, workspace, "webui-a")
    with pytest.raises(JobBusy) as refused:
        _start(registry, workspace, "webui-b")
    assert refused.value.job.id == "webui-a"
    assert not (workspace.root / "jobs" / "webui-b.json").exists()
    _start(registry, workspace, "lr-a", command="lr-find")  # another slot runs beside it
    # a stopping UI leaves its jobs running and says how to follow them
    notice = shutdown_notice(registry)
    assert "train webui-a" in notice and "lr-find lr-a" in notice and "protfit webui" in notice
    assert first.running
    registry.stop_all()
    first.wait(10)
    assert shutdown_notice(JobRegistry(workspace.root)) is None


def test_a_job_whose_process_is_gone_is_judged_from_its_folder(workspace) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    registry = JobRegistry(workspace.root)
    for name, done in (("webui-died", False), ("webui-done", True)):
        run_dir = workspace.root / "runs" / name
        run_dir.mkdir()
        if done:
            (run_dir / "summary.json").write_text("{}")
        record = {
            "id": name,
            "argv": ["train", f"configs/{name}.yaml"],
            "pid": gone.pid,
            "pid_start": "1",
            "run_dir": f"runs/{name}",
            "log": f"configs/{name}.log",
            "status": "running",
            "started": time.time() - 5,
        }
        (workspace.root / "jobs" / f"{name}.json").write_text(json.dumps(record))
    assert registry.running() == []
    assert registry.get("../jobs/webui-died") is None  # a crafted name from the browser
    assert registry.get("webui-died").status == "died"
    assert registry.get("webui-done").status == "finished"


def test_each_tick_rereads_only_the_running_jobs(workspace, slow_protfit, monkeypatch) -> None:
    registry = JobRegistry(workspace.root)
    job = _start(registry, workspace, "webui-running")
    gone = subprocess.Popen(["true"])
    gone.wait()
    for name in ("webui-old-1", "webui-old-2"):
        record = {"id": name, "argv": ["train", "c.yaml"], "pid": gone.pid, "pid_start": "1"}
        record |= {"run_dir": "runs/x", "log": "x.log", "status": "finished", "started": time.time() - 9}
        (workspace.root / "jobs" / f"{name}.json").write_text(json.dumps(record))
    other = JobRegistry(workspace.root)  # a second UI process: it reads every record once
    assert [found.id for found in other.running()] == ["webui-running"]
    reads: list[str] = []
    original = Path.read_text
    monkeypatch.setattr(
        Path, "read_text", lambda path, *a, **k: reads.append(path.name) or original(path, *a, **k)
    )
    for _ in range(3):
        assert [found.id for found in other.running()] == ["webui-running"]
    records = {name for name in reads if name.endswith(".json")}
    assert records == {"webui-running.json"}  # the ended ones are not read again
    job.abort()
    assert other.running() == [] and other.get("webui-running").status == "aborted"
    (workspace.root / "jobs" / "webui-old-1.json").unlink()  # a record removed is gone from the list
    assert "webui-old-1" not in [found.id for found in other.all()]


def test_a_double_click_starts_one_run_and_both_clicks_follow_it(workspace, slow_protfit) -> None:
    tab = TrainTab(workspace, JobRegistry(workspace.root))
    answers: list[list[object]] = []
    threads = [
        threading.Thread(target=lambda: answers.append(tab.start("datasets/syn", *_form_values())))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list((workspace.root / "jobs").glob("*.json"))) == 1
    assert len(list((workspace.root / "configs").glob("*.yaml"))) == 1  # none left by the refused one
    assert answers[0][0] == answers[1][0]  # the refused click follows the started run
    assert sorted(str(answer[1]).split()[0] for answer in answers) == ["`protfit", "started"]
    assert any("is already running" in str(answer[1]) for answer in answers)
    started = next(answer for answer in answers if str(answer[1]).startswith("started"))
    name = started[0]
    assert f"protfit train configs/{name}.yaml" in started[3]  # the command pane: the config started
    assert f"name: {name}" in started[4]  # the YAML pane
    assert started[5]["interactive"] is False

    write_synthetic_dataset(workspace.root / "datasets" / "later", "regression", 10, 5, 5)
    reloaded = tab.attach()  # a reloaded page, a second tab
    assert reloaded[0] == name and reloaded[3]["interactive"] is False and reloaded[2].active
    assert "datasets/later" in reloaded[4]["choices"]  # the pickers list what is there now
    assert tab.abort(name).startswith("stopping")
    tab.jobs.get(name).wait(10)
    ticked = tab.tick(name, None)
    assert ticked[0].startswith("■ stopped") and ticked[-2]["interactive"] is True
    assert ticked[-1]["choices"] == tab.workspace.runs()  # the run picker, once the run has ended
    assert tab.attach()[0] is None


def test_a_reloaded_tune_tab_follows_the_running_sweep(workspace, slow_protfit) -> None:
    registry = JobRegistry(workspace.root)
    tune = TuneTab(workspace, registry, TrainTab(workspace, registry))
    assert tune.attach()[0::2] == [None, None]
    job = _start(registry, workspace, "tune-a", command="sweep")
    lr_job, lr_timer, sweep_job, sweep_timer = tune.attach()
    assert (lr_job, sweep_job) == (None, "tune-a") and sweep_timer.active and not lr_timer.active
    assert tune.abort("tune-a") == "stopping…"
    job.wait(10)


def test_predict_lists_runs_sweep_trials_and_tune_runs(workspace) -> None:
    folders = [
        "runs/webui-1",
        "sweeps/s1/trials/trial-0002",
        "tunes/t1/untuned",
        "tunes/t1/sweep/trials/trial-0001",
        "tunes/t1/confirm/trial-0001/seed-1",
    ]
    for folder in [*folders, "sweeps/s1/trials/trial-0003"]:
        (workspace.root / folder).mkdir(parents=True)
        (workspace.root / folder / "config.yaml").write_text("model: {name: onehot}\n")
    for folder in folders:
        (workspace.root / folder / "checkpoints" / "best").mkdir(parents=True)
    assert sorted(trained_runs(workspace)) == sorted(folders)  # trial-0003 has no weights
