"""`protfit webui`: build the Gradio app and launch it, loopback-only unless asked otherwise."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from protfit.webui.compare_tab import CompareTab
from protfit.webui.jobs import JobRegistry
from protfit.webui.jobs_panel import JobsPanel
from protfit.webui.predict_tab import PredictTab
from protfit.webui.train_tab import TrainTab
from protfit.webui.tune_tab import TuneTab
from protfit.webui.workspace import Workspace

logger = logging.getLogger("protfit")
LOOPBACK = "127.0.0.1"


def build_app(workspace: Workspace, jobs: JobRegistry | None = None) -> gr.Blocks:
    jobs = jobs or JobRegistry(workspace.root)
    with gr.Blocks(title="protfit", analytics_enabled=False) as app:
        gr.Markdown(
            "# protfit\nFine-tune protein language models: every button runs the `protfit` command shown."
        )
        with gr.Tabs() as tabs:
            with gr.Tab("Train", id="train"):
                train = TrainTab(workspace, jobs)
                train.render()
            with gr.Tab("LR finder / Tune", id="tune"):
                tune = TuneTab(workspace, jobs, train)
                tune.render(train.inputs, train.form.widgets["train.learning_rate"])
            with gr.Tab("Compare", id="compare") as compare_tab:
                compare = CompareTab(workspace, train)
                compare_picker = compare.render(tabs, train.dataset, train.message)
            with gr.Tab("Predict", id="predict") as predict_tab:
                predict = PredictTab(workspace)
                predict.render()
            with gr.Tab("Jobs", id="jobs") as jobs_tab:
                panel = JobsPanel(jobs)
                jobs_outputs = panel.render()
        # pickers list what the workspace holds now (runs finished since, CLI runs), and a reloaded
        # page follows the running training
        predict_tab.select(predict.choices, None, predict.run_picker)
        compare_tab.select(lambda: gr.update(choices=compare.choices()), None, compare_picker)
        jobs_tab.select(panel.refresh, None, jobs_outputs)
        app.load(train.attach, None, train.attach_outputs)
        app.load(tune.attach, None, tune.attach_outputs)
        app.load(predict.choices, None, predict.run_picker)
        app.load(lambda: gr.update(choices=compare.choices()), None, compare_picker)
    app.protfit_train = train  # for tests: the generated option widgets
    app.protfit_jobs = jobs
    return app


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth must be USER:PASSWORD")
    return user, password


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, share: bool, auth: tuple[str, str] | None) -> str | None:
    """The warning to print when the UI can be reached from other machines without a password."""
    if auth is not None or (is_loopback(host) and not share):
        return None
    where = "a public Gradio share link" if share else f"host {host} (reachable from other machines)"
    return (
        f"WARNING: the web UI is served on {where} without --auth: anyone who reaches it can read and "
        "write the workspace and start runs. Add --auth USER:PASSWORD."
    )


def launch_options(
    workspace: Workspace,
    host: str = LOOPBACK,
    port: int | None = None,
    share: bool = False,
    auth: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: never opens a browser, never shares unless asked, and
    serves files only from the workspace."""
    return {
        "server_name": host,
        "server_port": port,
        "share": share,
        "auth": auth,
        "inbrowser": False,
        "allowed_paths": [str(workspace.root)],
        "ssr_mode": False,
        "show_error": True,
    }


def serve(
    workspace: str | Path = ".",
    host: str = LOOPBACK,
    port: int | None = None,
    share: bool = False,
    auth: str | None = None,
) -> None:
    credentials = parse_auth(auth)
    space = Workspace(workspace)
    warning = exposure_warning(host, share, credentials)
    if warning:
        print(warning)
    app = build_app(space)
    app.queue(default_concurrency_limit=8)
    print(f"protfit web UI: workspace {space.root}")
    try:
        app.launch(**launch_options(space, host, port, share, credentials))
    finally:
        notice = shutdown_notice(app.protfit_jobs)
        if notice:
            print(notice)


def shutdown_notice(jobs: JobRegistry) -> str | None:
    """What a stopping UI says about the jobs that go on without it: they are workspace jobs, not the
    UI's, so a restarted UI follows them (and can abort them) instead of the shutdown killing them."""
    running = jobs.running()
    if not running:
        return None
    names = ", ".join(f"{job.command} {job.id}" for job in running)
    return (
        f"still running (the UI's shutdown leaves them alone): {names}; "
        "`protfit webui` on this workspace again shows them and can abort them"
    )
