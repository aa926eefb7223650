"""The LR finder / Tune tab: `protfit lr-find`, `protfit sweep` and `protfit tune` on the Train tab's
configuration, run as subprocesses in the workspace; the UI reads their output files (docs/sweeps.md,
docs/tuning.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from protfit.report.compare import format_value
from protfit.report.run_dir import read_history, read_summary
from protfit.webui import messages
from protfit.webui.compare_tab import comparison_table
from protfit.webui.jobs import JobRegistry
from protfit.webui.tables import markdown_table, rounded
from protfit.webui.train_tab import USER_ERRORS, TrainTab
from protfit.webui.workspace import CONFIGS, LR_FIND, SWEEPS, TUNES, Workspace, unique_name

RULES = ["steepest", "min_div_10", "divergence_div_10"]
PRESETS = ["quick", "standard"]


def live_trials(sweep_dir: Path) -> pd.DataFrame | None:
    """One row per trial folder while the sweep runs: epochs so far, best validation value, state."""
    folders = sorted((sweep_dir / "trials").glob("trial-*/"))
    if not folders:
        return None
    rows = []
    for folder in folders:
        history = read_history(folder)
        row: dict[str, Any] = {"trial": folder.name, "epochs": len(history)}
        summary = read_summary(folder)
        if summary is not None:
            row.update(state="finished", monitor=summary.get("monitor"), best=summary.get("best_val_metric"))
        else:
            row.update(state="running or pruned", monitor=None, best=None)
        rows.append(row)
    return pd.DataFrame(rows)


def trials_table(sweep_dir: Path) -> pd.DataFrame | None:
    """trials.csv once the sweep has written it, else the live view of the trial folders."""
    path = sweep_dir / "trials.csv"
    if path.is_file():
        return rounded(pd.read_csv(path).drop(columns=["run_dir"], errors="ignore"))
    return rounded(live_trials(sweep_dir))


def best_text(sweep_dir: Path) -> str:
    path = sweep_dir / "best.json"
    if not path.is_file():
        return ""
    report = json.loads(path.read_text())
    counts = report.get("counts", {})
    lines = [
        f"**{counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, {counts.get('fail', 0)} "
        f"failed** of {report.get('n_trials')} trials in {report.get('wall_time_s')} s"
    ]
    best = report.get("best")
    if best:
        params = ", ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in best["params"].items()
        )
        lines.append(f"- best: trial {best['trial']}, {best['monitor']} {best['value']:.4f} — {params}")
    return "\n".join(lines)


def range_test_text(found: dict[str, Any]) -> str:
    """The LR finder's result from its lr_find.json, with the warning when the curve cannot be trusted."""
    text = (
        f"✓ suggested learning rate **{found['suggested_lr']:.3g}** ({found['rule']}: {found['rule_description']}); "
        f"{found['steps_run']} steps, {found['stopped']}"
    )
    if found.get("note"):
        text += f"\n\n⚠ {found['note']}"
    return text


def whole_number(value: float | None, label: str, minimum: int) -> int:
    """A count typed in this tab (an emptied number box sends None)."""
    if value is None or value < minimum or value != int(value):
        raise ValueError(f"{label}: must be a whole number, at least {minimum} (got {value})")
    return int(value)


def suggested_rate(found: dict[str, Any]) -> str:
    """The suggestion as it goes into train.learning_rate (4 significant digits, as it is shown)."""
    return format_value(float(found["suggested_lr"]))


def ask_to_use(found: dict[str, Any] | None, current: Any) -> list[Any]:
    """The confirmation shown before the Train tab's learning rate is replaced: old -> new, and the
    range test's warning when its curve could not be trusted (the rate then comes from a fallback rule)."""
    if found is None:
        return [gr.update(visible=False), "", "✗ no suggestion yet: run the LR finder first"]
    text = (
        f"Replace the Train tab's learning rate **{current or '(empty)'}** with **{suggested_rate(found)}** "
        f"({found['rule']})?"
    )
    if not found.get("trusted", True):
        text += f"\n\n⚠ The range test could not be trusted: {found.get('note') or 'see lr_find.json'}"
    return [gr.update(visible=True), text, gr.update()]


def use_suggestion(found: dict[str, Any] | None) -> list[Any]:
    if found is None:
        return [gr.update(), gr.update(visible=False), ""]
    return [suggested_rate(found), gr.update(visible=False), ""]


def tune_report(tune_dir: Path) -> tuple[str, pd.DataFrame | None]:
    """A tune's closing table (tune.md), then the comparison of its trials (compare/compare.md) as a
    table of its own (a Markdown table of 19 columns wrapped mid-word)."""
    closing = tune_dir / "tune.md"
    text = closing.read_text() if closing.is_file() else ""
    comparison = tune_dir / "compare" / "compare.md"
    if not comparison.is_file():
        return text, None
    table, notes = markdown_table(comparison.read_text())
    heading = "### Comparison of the trials (protfit compare)\n" + notes
    return "\n\n".join(part for part in (text, heading) if part), table


class TuneTab:
    def __init__(self, workspace: Workspace, jobs: JobRegistry, train: TrainTab) -> None:
        self.workspace = workspace
        self.jobs = jobs
        self.train = train

    def _base_config(self, dataset: str | None, values: list[Any]) -> str:
        """The Train tab's configuration written to configs/NAME.yaml; returns its relative path."""
        name = unique_name("tune")
        raw = self.train.raw_config(dataset, values, name)
        self.train.write_config(raw, name)
        return f"{CONFIGS}/{name}.yaml"

    # ---- LR finder ---------------------------------------------------------------------------

    def start_lr_find(
        self,
        start_lr: float | None,
        end_lr: float | None,
        steps: float | None,
        rule: str,
        dataset: str | None,
        *values: Any,
    ) -> list[Any]:
        try:
            if start_lr is None or end_lr is None or not 0 < start_lr < end_lr:
                raise ValueError(
                    f"Start LR and end LR: need 0 < start LR < end LR (got {start_lr} and {end_lr})"
                )
            count = whole_number(steps, "Steps", 2)
            config = self._base_config(dataset, list(values))
            folder = f"{LR_FIND}/{Path(config).stem}"
            argv = ["lr-find", config, "-o", folder, "--start-lr", str(start_lr), "--end-lr", str(end_lr)]
            argv += ["--num-steps", str(count), "--rule", rule]
            log = self.workspace.resolve(f"{CONFIGS}/{Path(config).stem}.log")
            job = self.jobs.start(Path(config).stem, argv, log, self.workspace.resolve(folder))
        except USER_ERRORS as error:  # a JobBusy too: one range test at a time
            return [None, messages.describe_error(error), gr.Timer(active=False)]
        return [job.id, f"started `protfit {' '.join(argv)}`", gr.Timer(active=True)]

    def lr_tick(self, job_id: str | None) -> list[Any]:
        job = self.jobs.get(job_id)
        if job is None:
            return ["", None, None, gr.Timer(active=False)]
        if job.running:
            progress = job.progress
            return [
                f"… running — {progress.stage} {progress.percent}% · elapsed {job.elapsed:.0f} s",
                None,
                None,
                gr.Timer(),
            ]
        folder = job.run_dir
        report = folder / "lr_find.json" if folder else None
        if job.returncode != 0 or report is None or not report.is_file():
            tail = "\n".join(job.lines[-8:])
            return [
                f"✗ failed (exit code {job.returncode}):\n```\n{tail}\n```",
                None,
                None,
                gr.Timer(active=False),
            ]
        found = json.loads(report.read_text())
        return [
            range_test_text(found),
            str(folder / "lr_find.png"),
            found,
            gr.Timer(active=False),
        ]

    # ---- sweep -------------------------------------------------------------------------------

    def start_sweep(
        self, preset: str, trials: float | None, timeout: float | None, dataset: str | None, *values: Any
    ) -> list[Any]:
        try:
            count = whole_number(trials, "Trials (budget)", 1)
            seconds = whole_number(timeout or 0, "Time budget", 0)
            config = self._base_config(dataset, list(values))
        except USER_ERRORS as error:
            return [None, messages.describe_error(error), gr.Timer(active=False)]
        name = Path(config).stem
        argv = ["sweep", "--preset", preset, "--base", config, f"n_trials={count}"]
        argv += [f"output.dir={SWEEPS}", f"output.name={name}"]
        if seconds:
            argv.append(f"timeout={seconds}")
        return self._launch(name, argv, f"{SWEEPS}/{name}")

    def start_tune(
        self, trials: float | None, steps: float | None, dataset: str | None, *values: Any
    ) -> list[Any]:
        try:
            count = whole_number(trials, "Trials (budget)", 1)
            lr_steps = whole_number(steps, "Steps (of the LR range test)", 2)
            config = self._base_config(dataset, list(values))
        except USER_ERRORS as error:
            return [None, messages.describe_error(error), gr.Timer(active=False)]
        name = Path(config).stem
        folder = f"{TUNES}/{name}"
        argv = ["tune", config, "--budget", str(count), "-o", folder, "--lr-steps", str(lr_steps)]
        return self._launch(name, argv, folder)

    def _launch(self, name: str, argv: list[str], folder: str) -> list[Any]:
        """Start ``protfit ARGV`` as a background job writing FOLDER, its log next to the config."""
        log = self.workspace.resolve(f"{CONFIGS}/{name}.log")
        try:
            self.jobs.start(name, argv, log, self.workspace.resolve(folder))
        except USER_ERRORS as error:  # a JobBusy: one sweep or tune at a time
            return [None, messages.describe_error(error), gr.Timer(active=False)]
        return [name, f"started `protfit {' '.join(argv)}`", gr.Timer(active=True)]

    def sweep_tick(self, job_id: str | None) -> list[Any]:
        job = self.jobs.get(job_id)
        if job is None or job.run_dir is None:
            return ["", None, "", "", gr.update(visible=False), gr.Timer(active=False)]
        command = job.argv[0]
        relative = self.workspace.relative(job.run_dir)
        # one look at the process: a run that ends between two looks would stop the timer on "running"
        running = job.running
        if running:
            status = f"… running — elapsed {job.elapsed:.0f} s · `{relative}`"
        elif job.aborted:
            status = f"■ stopped: finished work is kept; **Resume** continues (`protfit {command} --resume {relative}`)"
        elif job.returncode == 0:
            status = f"✓ finished in {job.elapsed:.0f} s: `{relative}`"
        else:
            tail = "\n".join(job.lines[-8:])
            status = f"✗ failed (exit code {job.returncode}):\n```\n{tail}\n```"
        if running and job.lines:
            status += f"\n\n`{job.lines[-1][:160]}`"
        sweep_dir = job.run_dir / "sweep" if command == "tune" else job.run_dir
        report, comparison = tune_report(job.run_dir) if command == "tune" else ("", None)
        return [
            status,
            trials_table(sweep_dir),
            best_text(sweep_dir),
            report,
            gr.update(value=comparison, visible=comparison is not None),
            gr.Timer(active=running),
        ]

    def attach(self) -> list[Any]:
        """On page load: follow the workspace's running range test and sweep/tune, if any;
        [LR job id, LR timer, sweep job id, sweep timer]."""
        outputs: list[Any] = []
        for slot in ("lr-find", "sweep"):
            running = self.jobs.running(slot)
            outputs += [running[0].id, gr.Timer(active=True)] if running else [None, gr.Timer(active=False)]
        return outputs

    def abort(self, job_id: str | None) -> str:
        return self.train.abort(job_id, idle="no sweep in progress", stopping="stopping…")

    def resume(self, job_id: str | None) -> list[Any]:
        return self.train.resume(job_id, nothing="nothing to resume")

    # ---- layout ------------------------------------------------------------------------------

    def render(self, config_inputs: list[Any], learning_rate: Any) -> None:
        gr.Markdown(
            "Both use the configuration set on the **Train** tab (dataset and options). "
            "Outputs: `lr-find/NAME/` and `sweeps/NAME/` in the workspace."
        )
        with gr.Accordion("LR finder (protfit lr-find)", open=True):
            with gr.Row():
                start_lr = gr.Number(1e-7, label="start LR", minimum=0)
                end_lr = gr.Number(1.0, label="end LR", minimum=0)
                steps = gr.Number(100, label="steps", precision=0, minimum=2)
                rule = gr.Dropdown(RULES, value="steepest", label="suggestion rule")
            lr_button = gr.Button("Run LR finder", variant="primary")
            lr_status = gr.Markdown()
            lr_plot = gr.Image(label="loss vs learning rate", type="filepath", interactive=False)
            suggestion = gr.State(None)
            use_button = gr.Button("Use the suggested learning rate on the Train tab")
            with gr.Group(visible=False) as confirm_box:
                confirm_text = gr.Markdown()
                with gr.Row():
                    confirm_button = gr.Button("Confirm: replace the learning rate", variant="primary")
                    cancel_button = gr.Button("Cancel")
        with gr.Accordion("Sweep (protfit sweep) or Tune (protfit tune)", open=True):
            gr.Markdown(
                "**Sweep**: the trials of a search space. **Tune**: an untuned run, the LR range test "
                "(its steps above), a sweep around the suggestion, the comparison of the trials and a final "
                "run of the recommended config (docs/tuning.md). Both take the trial budget."
            )
            with gr.Row():
                preset = gr.Dropdown(PRESETS, value="quick", label="search space (preset, sweep only)")
                trials = gr.Number(10, label="trials (budget)", precision=0, minimum=1)
                timeout = gr.Number(0, label="time budget (s, 0 = none; sweep only)", precision=0, minimum=0)
            with gr.Row():
                sweep_button = gr.Button("Start sweep", variant="primary")
                tune_button = gr.Button("Start tune", variant="primary")
                abort_button = gr.Button("Abort sweep/tune", variant="stop")
                resume_button = gr.Button("Resume sweep/tune")
            sweep_status = gr.Markdown()
            best = gr.Markdown()
            table = gr.Dataframe(label="trials", interactive=False)
            report = gr.Markdown()
            comparison = comparison_table("comparison of the trials")
        lr_job, sweep_job = gr.State(None), gr.State(None)
        lr_timer, sweep_timer = gr.Timer(1.0, active=False), gr.Timer(2.0, active=False)
        self.attach_outputs = [lr_job, lr_timer, sweep_job, sweep_timer]  # app.load

        lr_button.click(
            self.start_lr_find,
            [start_lr, end_lr, steps, rule, *config_inputs],
            [lr_job, lr_status, lr_timer],
            preprocess=False,
        )
        lr_timer.tick(self.lr_tick, lr_job, [lr_status, lr_plot, suggestion, lr_timer])
        use_button.click(ask_to_use, [suggestion, learning_rate], [confirm_box, confirm_text, lr_status])
        confirm_button.click(use_suggestion, suggestion, [learning_rate, confirm_box, confirm_text])
        cancel_button.click(lambda: (gr.update(visible=False), ""), None, [confirm_box, confirm_text])
        sweep_button.click(
            self.start_sweep,
            [preset, trials, timeout, *config_inputs],
            [sweep_job, sweep_status, sweep_timer],
            preprocess=False,
        )
        tune_button.click(
            self.start_tune,
            [trials, steps, *config_inputs],
            [sweep_job, sweep_status, sweep_timer],
            preprocess=False,
        )
        sweep_timer.tick(
            self.sweep_tick, sweep_job, [sweep_status, table, best, report, comparison, sweep_timer]
        )
        abort_button.click(self.abort, sweep_job, sweep_status)
        resume_button.click(self.resume, sweep_job, [sweep_job, sweep_status, sweep_timer])
