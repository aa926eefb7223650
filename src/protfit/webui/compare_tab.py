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
import yaml

from protfit.webui import messages
from protfit.webui.tables import markdown_table
from protfit.webui.train_tab import TrainTab
from protfit.webui.workspace import COMPARISONS, Workspace, WorkspaceError

COMPARE_TIMEOUT_S = 600
_PLOT = re.compile(r'<img src="(data:image/png;base64,[A-Za-z0-9+/=]+)"')


def recommendation_text(recommended: Path, output: str) -> str:
    """The recommendation and its reason, from the comment lines `protfit compare` heads
    recommended.yaml with (:func:`protfit.report.compare.recommendation_yaml`); without one, the
    command's own last line (why there is nothing to recommend)."""
    if not recommended.is_file():
        lines = output.strip().splitlines()
        return f"**No recommendation**: {lines[-1] if lines else 'protfit compare recommended no run'}"
    comments = []
    for line in recommended.read_text().splitlines():
        if not line.startswith("#"):
            break
        comments.append(line.lstrip("# ").strip())
    if not comments:
        return ""
    what, reasons = comments[0], comments[1:]
    why = f"\n\n**Why**: {' '.join(reasons)}" if reasons else ""
    return f"### Recommendation\n{what[:1].upper() + what[1:]}{why}"


def plots_html(html_file: Path) -> str:
    """The figures of compare.html (inline PNGs only: nothing is fetched from anywhere)."""
    if not html_file.is_file():
        return ""
    images = _PLOT.findall(html_file.read_text())
    return "".join(
        f'<img src="{src}" style="max-width:48%;margin:1%" alt="comparison plot">' for src in images
    )


def comparison_table(label: str) -> gr.Dataframe:
    """compare.md's table, hidden until filled: one line per run, scrolled sideways with rank, stars
    and run pinned (wrapped into the page's width, the 19 columns of a sweep broke their words)."""
    return gr.Dataframe(
        label=label, visible=False, interactive=False, wrap=False, pinned_columns=3, max_height=420
    )


class CompareTab:
    def __init__(self, workspace: Workspace, train: TrainTab) -> None:
        self.workspace = workspace
        self.train = train

    def choices(self) -> list[str]:
        return [*self.workspace.sweeps(), *self.workspace.runs()]

    def compare(self, selected: list[str] | None) -> list[Any]:
        """[status, recommendation, table, notes, plots, 3 downloads, recommended.yaml]"""
        hidden = gr.update(visible=False)
        try:
            if not selected:
                raise WorkspaceError("choose runs or a sweep to compare")
            paths = [
                self.workspace.relative(self.workspace.resolve(item, must_exist=True)) for item in selected
            ]
            out = self.workspace.new_folder(COMPARISONS, "compare")
            relative = self.workspace.relative(out)
            argv = [sys.executable, "-m", "protfit", "compare", *paths, "-o", relative, "--recommend"]
            done = subprocess.run(
                argv, cwd=self.workspace.root, capture_output=True, text=True, timeout=COMPARE_TIMEOUT_S
            )
            if done.returncode != 0:
                raise WorkspaceError(done.stderr.strip() or done.stdout.strip())
        except subprocess.TimeoutExpired:
            error = WorkspaceError(f"protfit compare did not finish within {COMPARE_TIMEOUT_S} s")
            return [messages.describe_error(error), "", hidden, "", "", hidden, hidden, hidden, None]
        except WorkspaceError as error:
            return [messages.describe_error(error), "", hidden, "", "", hidden, hidden, hidden, None]
        downloads = [
            gr.update(value=str(out / name), visible=True) if (out / name).is_file() else hidden
            for name in ("compare.md", "compare.csv", "compare.html")
        ]
        markdown = (out / "compare.md").read_text() if (out / "compare.md").is_file() else ""
        table, notes = markdown_table(markdown)
        recommended = out / "recommended.yaml"
        return [
            f"✓ `protfit compare {' '.join(paths)} -o {relative} --recommend`",
            recommendation_text(recommended, done.stdout),
            gr.update(value=table, visible=table is not None),
            notes,
            plots_html(out / "compare.html"),
            *downloads,
            str(recommended) if recommended.is_file() else None,
        ]

    def train_recommended(self, recommended: str | None) -> list[Any]:
        try:
            if not recommended:
                raise WorkspaceError("compare runs first: their recommended config is what gets loaded")
            path = self.workspace.resolve(self.workspace.relative(Path(recommended)), must_exist=True)
            raw = yaml.safe_load(path.read_text()) or {}
        except (WorkspaceError, yaml.YAMLError, OSError) as error:
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
        recommendation = gr.Markdown()
        table = comparison_table("comparison (compare.md)")
        notes = gr.Markdown()
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
        button.click(
            self.compare, picker, [status, recommendation, table, notes, plots, *downloads, recommended]
        )
        train_button.click(
            self.train_recommended, recommended, [tabs, dataset, message, *self.train.form.outputs]
        )
        return picker
