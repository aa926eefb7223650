"""The Jobs tab: every job of the workspace's registry (runs, sweeps, tunes, LR range tests), whichever
tab, browser or UI process started it, with an Abort for the running ones."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import gradio as gr
import pandas as pd

from protfit.webui.jobs import JobRegistry

_SHOWN = 50  # the newest jobs; older records stay in jobs/


class JobsPanel:
    def __init__(self, jobs: JobRegistry) -> None:
        self.jobs = jobs

    def table(self) -> pd.DataFrame:
        rows = []
        for job in self.jobs.all()[:_SHOWN]:
            rows.append(
                {
                    "command": "protfit " + " ".join(job.argv),
                    "folder": job.record["run_dir"],
                    "status": job.status,
                    "started": _dt.datetime.fromtimestamp(job.started).strftime("%Y-%m-%d %H:%M:%S"),
                    "elapsed (s)": round(job.elapsed),
                }
            )
        return pd.DataFrame(rows, columns=["command", "folder", "status", "started", "elapsed (s)"])

    def refresh(self) -> list[Any]:
        """[table, running-job picker]."""
        running = [job.id for job in self.jobs.running()]
        return [self.table(), gr.update(choices=running, value=running[0] if running else None)]

    def abort(self, job_id: str | None) -> list[Any]:
        job = self.jobs.get(job_id)
        if job is None or not job.abort():
            return ["no such running job", *self.refresh()]
        return [f"stopping `{job.id}` (finished work stays saved and resumable)", *self.refresh()]

    def render(self) -> list[Any]:
        """The outputs of :meth:`refresh` (for the app's load and tab-select events)."""
        gr.Markdown(
            "Jobs started from this UI (also from another tab or an earlier UI session on this workspace); "
            "records in `jobs/`."
        )
        table = gr.Dataframe(label="jobs (newest first)", interactive=False)
        with gr.Row():
            running = gr.Dropdown(label="running job", choices=[], scale=3)
            refresh = gr.Button("↻", scale=0, min_width=40)
            abort = gr.Button("Abort job", variant="stop", scale=1)
        message = gr.Markdown()
        refresh.click(self.refresh, None, [table, running])
        abort.click(self.abort, running, [message, table, running])
        return [table, running]
