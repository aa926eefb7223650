"""The Compare tab: `protfit compare` over runs or a sweep (docs/compare.md); the UI shows the files
it writes (compare.md/.csv/.html, recommended.yaml) and can load the recommended config into the
Train tab."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import yaml

from protfit.webui.train_tab import TrainTab
from protfit.webui.workspace import COMPARISONS, Workspace, WorkspaceError

_PLOT = re.compile(r'<img src="(data:image/png;base64,[A-Za-z0-9+/=]+)"')


def plots_html(html_file: Path) -> str:
    """The figures of compare.html (inline PNGs only: nothing is fetched from anywhere)."""
    if not html_file.is_file():
        return ""
    images = _PLOT.findall(html_file.read_text())
    return "".join(
        f'<img src="{src}" style="max-width:48%;margin:1%" alt="comparison plot">' for src in images
    )


class CompareTab:
    def __init__(self, workspace: Workspace, train: TrainTab) -> None:
        self.workspace = workspace
        self.train = train

    def choices(self) -> list[str]:
        return [*self.workspace.sweeps(), *self.workspace.runs()]

    def compare(self, selected: list[str] | None) -> list[Any]:
        hidden = gr.update(visible=False)
        try:
            if not selected:
                raise WorkspaceError("choose runs or a sweep to compare")
            paths = [
                self.workspace.relative(self.workspace.resolve(item, must_exist=True)) for item in selected
            ]
        except WorkspaceError as error:
            return [f"✗ {error}", None, None, "", hidden, hidden, hidden, None]
        out = self.workspace.new_folder(COMPARISONS, "compare")
        relative = self.workspace.relative(out)
        argv = [sys.executable, "-m", "protfit", "compare", *paths, "-o", relative, "--recommend"]
        done = subprocess.run(argv, cwd=self.workspace.root, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return [
                f"✗ {done.stderr.strip() or done.stdout.strip()}",
                None,
                None,
                "",
                hidden,
                hidden,
                hidden,
                None,
            ]
        downloads = [
            gr.update(value=str(out / name), visible=True) if (out / name).is_file() else hidden
            for name in ("compare.md", "compare.csv", "compare.html")
        ]
        markdown = (out / "compare.md").read_text() if (out / "compare.md").is_file() else done.stdout
        table = pd.read_csv(out / "compare.csv") if (out / "compare.csv").is_file() else None
        recommended = out / "recommended.yaml"
        message = f"✓ `protfit compare {' '.join(paths)} -o {relative}`"
        plots = plots_html(out / "compare.html")
        return [
            message,
            markdown,
            table,
            plots,
            *downloads,
            str(recommended) if recommended.is_file() else None,
        ]

    def train_recommended(self, recommended: str | None) -> list[Any]:
        try:
            path = self.workspace.resolve(self.workspace.relative(Path(recommended or "")), must_exist=True)
            raw = yaml.safe_load(path.read_text()) or {}
        except (WorkspaceError, yaml.YAMLError) as error:
            return [gr.Tabs(), gr.update(), f"✗ {error}", *[gr.update()] * len(self.train.form.outputs)]
        # recommended.yaml may wrap the config with the reason; the run config is the mapping with `model`
        config = raw.get("config", raw) if isinstance(raw, dict) else {}
        return [gr.Tabs(selected="train"), *self.train.settings_from(config, self.workspace.relative(path))]

    def render(self, tabs: gr.Tabs, dataset: Any, message: Any) -> gr.Dropdown:
        with gr.Row():
            picker = gr.Dropdown(
                choices=self.choices(),
                multiselect=True,
                label="runs or a sweep",
                info="run folders (UI and CLI), sweep and tune folders in the workspace",
                scale=4,
            )
            refresh = gr.Button("↻", scale=0, min_width=40)
        button = gr.Button("Compare", variant="primary")
        status = gr.Markdown()
        table_md = gr.Markdown(label="comparison")
        with gr.Accordion("raw numbers (compare.csv)", open=False):
            table = gr.Dataframe(interactive=False)
        plots = gr.HTML()
        with gr.Row():
            downloads = [
                gr.DownloadButton("Markdown", visible=False),
                gr.DownloadButton("CSV", visible=False),
                gr.DownloadButton("HTML (plots)", visible=False),
            ]
        recommended = gr.State(None)
        train_button = gr.Button("Train the recommended config")
        refresh.click(lambda: gr.update(choices=self.choices()), None, picker, queue=False)
        button.click(self.compare, picker, [status, table_md, table, plots, *downloads, recommended])
        train_button.click(
            self.train_recommended, recommended, [tabs, dataset, message, *self.train.form.outputs]
        )
        return picker
