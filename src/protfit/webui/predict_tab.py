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
from protfit.webui.workspace import PREDICTIONS, RUNS, SWEEPS, TUNES, Workspace, WorkspaceError

USER_ERRORS = (ConfigError, DataError, WorkspaceError, FileNotFoundError, ValueError, RuntimeError)


# sweeps/S/trials/trial-0007[/seed-1], tunes/T/{untuned, sweep/trials/trial-0007, confirm/NAME/seed-1}
_MAX_DEPTH = 6


def trained_runs(workspace: Workspace) -> list[str]:
    """Every run folder with a best checkpoint in runs/, sweeps/ and tunes/ (trials, a tune's untuned
    and confirmation runs), newest first."""
    found = []
    for parent in (RUNS, SWEEPS, TUNES):
        for best in (workspace.root / parent).glob("**/checkpoints/best"):
            folder = best.parent.parent
            if (
                len(folder.relative_to(workspace.root).parts) > _MAX_DEPTH
                or not (folder / "config.yaml").is_file()
            ):
                continue
            try:
                found.append((folder.stat().st_mtime, workspace.relative(folder)))
            except WorkspaceError:  # a symlink pointing out of the workspace
                continue
    return [name for _, name in sorted(found, reverse=True)]


def domain_message(table: Any) -> str:
    """The out-of-domain count under the table (the reasons are in its domain_note column)."""
    if "domain_note" not in table:
        return "\n\nThis run records no training-data statistics (trained before protfit noted them): no out-of-domain check."
    outside = int((table["domain_note"] != "").sum())
    if not outside:
        return "\n\nEvery sequence lies within the training data's lengths and residue composition."
    return (
        f"\n\n⚠ **{outside} of {len(table)} sequences lie outside the training data** (see `domain_note`): "
        "their predictions are extrapolations."
    )


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
        message += domain_message(table)
        return [message, table.round(4), gr.update(value=str(output), visible=True)]

    def choices(self) -> dict[str, Any]:
        return gr.update(choices=trained_runs(self.workspace))

    def render(self) -> None:
        with gr.Row():
            run = gr.Dropdown(
                choices=trained_runs(self.workspace),
                label="run",
                info="a trained run folder in the workspace: runs, sweep trials, a tune's runs (UI and CLI)",
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
        refresh.click(self.choices, None, run, queue=False)
        button.click(self.predict, [run, text, upload], [message, table, download])
        self.run_picker = run
