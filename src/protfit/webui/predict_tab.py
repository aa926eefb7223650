"""The Predict tab: a run from the workspace, pasted sequences or an uploaded FASTA/CSV, a table and a
CSV. Inputs go through the CLI's reader (:func:`protfit.data.loading.read_sequences`), so a bad residue
gets the message `protfit predict` prints."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from protfit.config import ConfigError
from protfit.data.errors import DataError
from protfit.webui.workspace import PREDICTIONS, Workspace, WorkspaceError

USER_ERRORS = (ConfigError, DataError, WorkspaceError, FileNotFoundError, ValueError, RuntimeError)


def pasted_to_fasta(text: str) -> str:
    """FASTA as pasted, or one sequence per line named seq1, seq2, ..."""
    text = text.strip()
    if text.startswith(">"):
        return text + "\n"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "".join(f">seq{index}\n{line}\n" for index, line in enumerate(lines, start=1))


class PredictTab:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._models: dict[tuple[str, float], Any] = {}
        self._lock = threading.Lock()

    def _model(self, run_dir: Path) -> Any:
        from protfit.inference import load

        key = (str(run_dir), (run_dir / "checkpoints").stat().st_mtime)
        with self._lock:
            if key not in self._models:
                self._models = {key: load(run_dir)}  # keep one: models can be large
            return self._models[key]

    def predict(self, run: str | None, text: str | None, upload: str | None) -> list[Any]:
        from protfit.data.loading import read_sequences

        hidden = gr.update(visible=False)
        try:
            if not run:
                raise WorkspaceError("choose a run")
            run_dir = self.workspace.resolve(run, must_exist=True)
            if not (run_dir / "config.yaml").is_file():
                raise WorkspaceError(f"'{run}' is not a run folder (no config.yaml)")
            folder = self.workspace.new_folder(PREDICTIONS, run_dir.name)
            if upload:
                source = folder / Path(upload).name
                shutil.copyfile(upload, source)
            elif text and text.strip():
                source = folder / "pasted.fasta"
                source.write_text(pasted_to_fasta(text))
            else:
                raise WorkspaceError("paste sequences or upload a FASTA/CSV file")
            model = self._model(run_dir)
            frame = read_sequences(source, model.config.data, num_labels=model.num_labels)
            output = folder / "predictions.csv"
            table = model.predict(frame, output_csv=output)
        except USER_ERRORS as error:
            return [f"✗ protfit predict: error: {error}", None, hidden]
        message = f"✓ {len(table)} predictions from `{self.workspace.relative(run_dir)}`, written to `{self.workspace.relative(output)}`"
        return [message, table.round(4), gr.update(value=str(output), visible=True)]

    def render(self) -> None:
        with gr.Row():
            run = gr.Dropdown(
                choices=self.workspace.runs(finished=True),
                label="run",
                info="a trained run folder in the workspace (UI and CLI runs)",
                allow_custom_value=True,
                scale=3,
            )
            refresh = gr.Button("↻", scale=0, min_width=40)
        with gr.Row():
            text = gr.Textbox(
                label="sequences",
                lines=6,
                placeholder="one sequence per line, or FASTA (>name, then the sequence)",
                scale=2,
            )
            upload = gr.File(label="or upload FASTA / CSV / TSV / JSON / parquet", type="filepath", scale=1)
        button = gr.Button("Predict", variant="primary")
        message = gr.Markdown()
        table = gr.Dataframe(label="predictions", interactive=False)
        download = gr.DownloadButton("Download predictions CSV", visible=False)
        refresh.click(lambda: gr.update(choices=self.workspace.runs(finished=True)), None, run, queue=False)
        button.click(self.predict, [run, text, upload], [message, table, download])
        self.run_picker = run
