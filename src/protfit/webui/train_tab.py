"""The Train tab, a guided path: 1 Data (pick or upload, problem type guessed, preview), 2 Model (a
picker of real checkpoints), 3 Train (common options first, the rest under "Advanced", all generated
from the config schema; the equivalent command; a training subprocess with live progress) and
4 Results of the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from protfit.config import ConfigError
from protfit.data.errors import DataError
from protfit.data.problem_type import guess_problem_type
from protfit.report.run_dir import read_history
from protfit.webui import catalog, data_step, messages, results, schema
from protfit.webui.jobs import Job, JobBusy, JobRegistry
from protfit.webui.options import COMMON, OptionForm
from protfit.webui.workspace import CONFIGS, RUNS, Workspace, WorkspaceError, unique_name

USER_ERRORS = (ConfigError, DataError, WorkspaceError, FileNotFoundError, ValueError)
# Options naming a model that protfit loads from a folder when one exists at that path.
MODEL_KEYS = ("model.name", "model.zero_shot_model")


def _shown(value: Any) -> dict[str, Any]:
    """A plot or table is hidden until it has something to show (an empty table shows "1 2 3")."""
    return gr.update(value=value, visible=value is not None)


def _folder_state(run_dir: Path | None) -> str:
    """What the run outputs depend on: the history's size and the result files present."""
    if run_dir is None:
        return ""
    files = ("history.jsonl", "summary.json", "test_results.csv", "model_stats.json")
    return repr([(run_dir / name).stat().st_size if (run_dir / name).is_file() else -1 for name in files])


class TrainTab:
    def __init__(self, workspace: Workspace, jobs: JobRegistry) -> None:
        self.workspace = workspace
        self.jobs = jobs
        self.specs = schema.field_specs()

    # ---- building a config from the form -----------------------------------------------------

    def _dataset(self, dataset: str | None) -> str:
        if not dataset:
            raise WorkspaceError("choose a dataset folder (or upload train/validation/test files)")
        path = self.workspace.resolve(dataset, must_exist=True)
        if not path.is_dir():
            raise WorkspaceError(f"'{dataset}' is not a folder")
        return self.workspace.relative(path)

    def raw_config(self, dataset: str | None, values: list[Any], name: str) -> dict[str, Any]:
        raw = schema.values_to_raw(self.specs, list(values))
        raw.setdefault("data", {})["path"] = self._dataset(dataset)
        for key in MODEL_KEYS:  # protfit reads these from disk: confined like every other path
            model = (raw.get("model") or {}).get(key.removeprefix("model."))
            if model:
                catalog.confine(self.workspace, str(model), key)
        raw.setdefault("output", {}).update({"dir": RUNS, "name": name})
        # data first, output last: the order a person writes a YAML in
        ordered = {key: raw[key] for key in ("data", "model", "train", "evaluation") if key in raw}
        ordered.update({key: value for key, value in raw.items() if key not in ordered})
        schema.build(ordered)
        return ordered

    def write_config(self, raw: dict[str, Any], name: str) -> Path:
        path = self.workspace.resolve(f"{CONFIGS}/{name}.yaml")
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    # ---- handlers ----------------------------------------------------------------------------

    def guess(self, dataset: str | None, label_column: str | None) -> list[Any]:
        """The problem type (and class names) guessed from the dataset's labels: [problem type,
        label names, note]. Runs when a dataset is picked or uploaded, so Preview data needs no option."""
        try:
            path = self.workspace.resolve(self._dataset(dataset))
            guess = guess_problem_type(str(path), label_column or "label")
        except USER_ERRORS as error:
            return [gr.update(), gr.update(), f"✗ {error}"]
        return [
            gr.update(value=guess.problem_type),
            gr.update(value=schema.yaml_text(guess.label_names)),
            data_step.guess_note(guess),
        ]

    def preview_data(self, dataset: str | None, *values: Any) -> list[Any]:
        """[checks, class table, sizes, lengths, label plot, samples, problem type, label names]:
        with no problem type chosen yet, the one guessed from the labels is used and shown."""
        from protfit.data.loading import load_dataset_splits

        values = list(values)
        keys = [spec.key for spec in self.specs]
        problem, names = keys.index("data.problem_type"), keys.index("data.label_names")
        guessed = [gr.update(), gr.update()]
        hidden = [gr.update(visible=False)] * 5
        try:
            note = ""
            if not values[problem]:
                guessed[0], guessed[1], note = self.guess(dataset, values[keys.index("data.label_column")])
                if note.startswith("✗"):
                    return [note, *hidden, *guessed]
                values[problem], values[names] = guessed[0]["value"], guessed[1]["value"]
            data = schema.values_to_raw(self.specs, values).get("data", {})
            data["path"] = str(self.workspace.resolve(self._dataset(dataset)))
            cfg = schema.build({"data": data, "model": {"name": "onehot"}}).data
            splits = load_dataset_splits(cfg)
        except USER_ERRORS as error:
            return [messages.describe_error(error), *hidden, *guessed]
        table, missing = data_step.class_counts(splits)
        checks = "\n\n".join(part for part in (note, results.data_checks(splits), missing) if part)
        return [
            checks,
            gr.update(value=table, visible=table is not None),
            gr.update(value=results.split_sizes(splits), visible=True),
            gr.update(value=results.length_histogram(splits), visible=True),
            gr.update(value=results.label_distribution(splits), visible=True),
            gr.update(value=results.sample_rows(splits), visible=True),
            *guessed,
        ]

    def preview_command(self, dataset: str | None, *values: Any) -> list[Any]:
        name = unique_name("webui")
        try:
            raw = self.raw_config(dataset, list(values), name)
        except USER_ERRORS as error:
            return [messages.describe_error(error), "", "", gr.update(visible=False)]
        path = self.write_config(raw, name)
        command = f"cd {self.workspace.root}\nprotfit train {CONFIGS}/{name}.yaml"
        message = (
            f"✓ valid configuration, saved as `{CONFIGS}/{name}.yaml`. Start gives each run its own "
            f"folder in `{RUNS}/`, so the run's name will differ."
        )
        return [
            message,
            command,
            yaml.safe_dump(raw, sort_keys=False),
            gr.update(value=str(path), visible=True),
        ]

    def start(self, dataset: str | None, *values: Any) -> list[Any]:
        """[job id, message, timer, command, config YAML, Start button]: the panes show what was started.
        While a run is going (a second click, another tab) nothing starts: the tab follows that run."""
        name = unique_name("webui")
        try:
            raw = self.raw_config(dataset, list(values), name)
            config = self.write_config(raw, name)
            log = self.workspace.resolve(f"{CONFIGS}/{name}.log")
            run_dir = self.workspace.resolve(f"{RUNS}/{name}")
            job = self.jobs.start(name, ["train", f"{CONFIGS}/{name}.yaml"], log, run_dir)
        except JobBusy as busy:
            config.unlink()  # nothing was started from it
            return [  # a double click, or a run started in another tab: this tab follows that run
                busy.job.id,
                f"{busy}; this page shows its progress",
                gr.Timer(active=True),
                gr.skip(),
                gr.skip(),
                gr.update(interactive=False),
            ]
        except USER_ERRORS as error:
            return [
                gr.skip(),
                messages.describe_error(error),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.update(interactive=True),
            ]
        return [
            job.id,
            f"started `protfit train {CONFIGS}/{name}.yaml` → `{RUNS}/{name}`",
            gr.Timer(active=True),
            f"cd {self.workspace.root}\nprotfit train {CONFIGS}/{name}.yaml",
            yaml.safe_dump(raw, sort_keys=False),
            gr.update(interactive=False),
        ]

    def attach(self) -> list[Any]:
        """On page load: follow the workspace's running training, if any (a reload, a second tab, a
        restarted UI); [job id, shown state, timer, Start button, dataset picker, run picker]."""
        running = self.jobs.running("train")
        pickers = [gr.update(choices=self.workspace.datasets()), gr.update(choices=self.workspace.runs())]
        if not running:
            return [None, None, gr.Timer(active=False), gr.update(interactive=True), *pickers]
        return [running[0].id, None, gr.Timer(active=True), gr.update(interactive=False), *pickers]

    def abort(
        self,
        job_id: str | None,
        idle: str = "no run in progress",
        stopping: str = "stopping… (the epoch in progress is abandoned; completed epochs stay saved)",
    ) -> str:
        """Stop the job (SIGTERM: it saves what it finished); the tune tab passes its own wording."""
        job = self.jobs.get(job_id)
        if job is None or not job.abort():
            return idle
        return stopping

    def resume(
        self,
        job_id: str | None,
        nothing: str = "nothing to resume: start a run first, or wait until it has stopped",
    ) -> list[Any]:
        """``protfit <the job's command> --resume <its folder>`` as a new job (train, sweep or tune)."""
        job = self.jobs.get(job_id)
        if job is None or job.running:
            return [job_id, nothing, gr.Timer()]
        relative = self.workspace.relative(job.run_dir)
        command = job.command
        log = self.workspace.resolve(f"{CONFIGS}/{job.run_dir.name}.log")
        try:
            new = self.jobs.start(unique_name("resume"), [command, "--resume", relative], log, job.run_dir)
        except JobBusy as busy:
            return [busy.job.id, f"✗ {busy}", gr.Timer(active=True)]
        return [new.id, f"resumed: `protfit {command} --resume {relative}`", gr.Timer(active=True)]

    def progress_text(self, job: Job, running: bool) -> str:
        relative = self.workspace.relative(job.run_dir)
        epochs = len(read_history(job.run_dir))
        if running:
            progress = job.progress
            overall = progress.overall_percent
            parts = [
                f"**{progress.stage}** {progress.percent}%",
                f"run {overall:.0f}%" if overall is not None else "",
                f"elapsed {job.elapsed:.0f} s",
                f"stage ETA {progress.eta}" if progress.eta else "",
                *(f"{key} {value}" for key, value in progress.postfix.items()),
                f"completed epochs: {epochs}",
            ]
            return "… running — " + " · ".join(part for part in parts if part)
        status = job.status
        kept = (
            f"{epochs} completed epoch{'s' if epochs != 1 else ''} kept in `{relative}`; **Resume** continues "
            f"it (`protfit train --resume {relative}`)"
            if epochs
            else "no epoch had completed, nothing kept"
        )
        if status == "aborted":
            return f"■ stopped after {job.elapsed:.0f} s: {kept}"
        if status == "finished":
            return f"✓ finished in {job.elapsed:.0f} s: `{relative}` ({epochs} epochs)"
        if status == "died":
            return (
                f"✗ the run's process ended without finishing (was the UI that started it stopped?): {kept}"
            )
        tail = "\n".join(job.lines[-8:])
        return f"✗ failed (exit code {job.returncode}):\n```\n{tail}\n```"

    def show_run(self, run_dir: Path | None) -> list[Any]:
        """Plots, verdicts, metrics and downloads of a run folder (live or finished)."""
        if run_dir is None or not run_dir.is_dir():
            return [*[_shown(None)] * 2, "", *[_shown(None)] * 2, *[gr.update(visible=False)] * 3]
        history = read_history(run_dir)
        text = results.summary_text(run_dir)
        downloads = []
        for name in ("test_results.csv", "test_predictions.csv", "history.csv"):
            path = run_dir / name
            downloads.append(
                gr.update(value=str(path), visible=True) if path.is_file() else gr.update(visible=False)
            )
        return [
            _shown(results.loss_plot(history)),
            _shown(results.metric_plot(history)),
            text,
            _shown(results.results_table(run_dir)),
            _shown(results.model_stats_table(run_dir)),
            *downloads,
        ]

    def tick(self, job_id: str | None, shown: str | None) -> list[Any]:
        """Progress every second; plots and tables only when the run folder changed (a new epoch, the
        results), so a long run does not redraw its figures every second. Start is usable again and
        the run picker lists the new run once the run has ended."""
        job = self.jobs.get(job_id)
        if job is None:
            return [
                "",
                *self.show_run(None),
                None,
                gr.Timer(active=False),
                gr.update(interactive=True),
                gr.skip(),
            ]
        # one look at the process for the text and the timer: a run that ends between two looks would
        # stop the timer on "running"
        running = job.running
        state = _folder_state(job.run_dir)
        run_outputs = self.show_run(job.run_dir) if state != shown else [gr.skip()] * 8
        runs = gr.skip() if running else gr.update(choices=self.workspace.runs())
        return [
            self.progress_text(job, running),
            *run_outputs,
            state,
            gr.Timer(active=running),
            gr.update(interactive=not running),
            runs,
        ]

    def open_run(self, run: str | None) -> list[Any]:
        try:
            run_dir = self.workspace.resolve(run or "", must_exist=True)
        except WorkspaceError as error:
            return [f"✗ {error}", *self.show_run(None)]
        return [f"run `{self.workspace.relative(run_dir)}`", *self.show_run(run_dir)]

    def settings_from(self, raw: dict[str, Any], source: str) -> list[Any]:
        """Fill the dataset picker and every option from a config dict (a run's config.yaml, a
        recommended config): [dataset, message, *widget updates, *section updates]."""
        values = schema.raw_to_values(self.specs, raw)
        shown = self.form.visibility(*values)
        widgets = [
            gr.update(value=value, visible=update["visible"])
            for value, update in zip(values, shown[: len(values)], strict=True)
        ]
        dataset: Any = gr.update()
        message = f"settings loaded from `{source}`"
        path = (raw.get("data") or {}).get("path")
        try:
            dataset = gr.update(value=self.workspace.relative(self.workspace.resolve(path, must_exist=True)))
        except WorkspaceError as error:
            message += f"; its dataset was not loaded: {error}"
        return [dataset, message, *widgets, *shown[len(values) :]]

    def load_settings(self, run: str | None) -> list[Any]:
        try:
            run_dir = self.workspace.resolve(run or "", must_exist=True)
            config_file = self.workspace.resolve(
                f"{self.workspace.relative(run_dir)}/config.yaml", must_exist=True
            )
            raw = yaml.safe_load(config_file.read_text()) or {}
        except (WorkspaceError, yaml.YAMLError) as error:
            return [gr.update(), f"✗ {error}", *[gr.update()] * len(self.form.outputs)]
        return self.settings_from(raw, self.workspace.relative(config_file))

    def upload(self, files: list[str] | None, label_column: str | None) -> list[Any]:
        """[dataset, problem type, label names, message, the upload box]: the box is emptied either way,
        so a refused file does not ride along with the next upload."""
        if not files:
            return [gr.update(), gr.update(), gr.update(), "", gr.update()]
        try:
            folder = self.workspace.save_uploads(files)
        except WorkspaceError as error:
            return [gr.update(), gr.update(), gr.update(), f"✗ {error}", None]
        problem_type, label_names, note = self.guess(folder, label_column)
        dataset = gr.update(choices=self.workspace.datasets(), value=folder)
        return [dataset, problem_type, label_names, f"uploaded to `{folder}`. {note}", None]

    # ---- layout ------------------------------------------------------------------------------

    def render(self) -> None:
        job_id = gr.State(None)
        gr.Markdown(
            f"Workspace `{self.workspace.root}`: datasets in `datasets/`, runs in `runs/` "
            "(CLI runs there appear here too). Four steps: **1 Data → 2 Model → 3 Train → 4 Results**; "
            "then try other settings in **LR finder / Tune**, compare runs in **Compare** and use a "
            "trained model in **Predict**."
        )
        form = self.form = OptionForm(self.specs)

        gr.Markdown("## 1 · Data")
        with gr.Row():
            dataset = gr.Dropdown(
                choices=self.workspace.datasets(),
                label="Dataset folder",
                info="a folder in the workspace holding train/validation/test files",
                allow_custom_value=True,
                scale=3,
            )
            refresh = gr.Button("↻", scale=0, min_width=40)
            uploads = gr.File(
                label="or upload split files (train.csv, validation.csv, test.csv)",
                file_count="multiple",
                scale=2,
                height=110,
            )
        form.place(COMMON["data"])
        guessed = gr.Markdown()
        preview_button = gr.Button("Preview data")
        checks = gr.Markdown()
        class_table = gr.Dataframe(label="sequences per class and split", interactive=False, visible=False)
        with gr.Row():
            sizes = gr.Dataframe(label="split sizes", interactive=False, visible=False)
            samples = gr.Dataframe(label="sample rows (train)", interactive=False, visible=False)
        with gr.Row():
            lengths = gr.Plot(label="length histogram", visible=False)
            labels = gr.Plot(label="label distribution", visible=False)

        gr.Markdown("## 2 · Model")
        form.place(COMMON["model"][:1])
        with gr.Row():
            model_card = gr.Markdown(catalog.describe(catalog.default_model()))
            test_models = gr.Checkbox(
                label="show test models", info="random-weight models for smoke tests", value=False, scale=0
            )
        with gr.Accordion("All models: size, memory, use, offline here", open=False):
            gr.Dataframe(catalog.table(), interactive=False, wrap=True)
        form.place(COMMON["model"][1:])

        gr.Markdown("## 3 · Train")
        form.place(COMMON["train"])
        with gr.Accordion("Advanced: every other option", open=False):
            gr.Markdown("Generated from the configuration; the help under each option starts with its key.")
            form.place_advanced()
        inputs = [dataset, *form.components]
        self.dataset, self.inputs = dataset, inputs  # the LR finder / Tune tab runs on this configuration

        with gr.Row():
            command_button = gr.Button("Preview command")
            start_button = gr.Button("Start", variant="primary")
            abort_button = gr.Button("Abort", variant="stop")
            resume_button = gr.Button("Resume")
        message = self.message = gr.Markdown()
        with gr.Row():
            command = gr.Code(label="command", language="shell", interactive=False)
            config_yaml = gr.Code(label="config YAML", language="yaml", interactive=False)
        yaml_download = gr.DownloadButton("Download YAML", visible=False)

        gr.Markdown("## 4 · Results")
        progress = gr.Markdown()
        with gr.Row():
            loss = gr.Plot(label="loss", visible=False)
            metric = gr.Plot(label="validation metrics", visible=False)
        verdicts = gr.Markdown()
        test_table = gr.Dataframe(
            label="test metrics (95% bootstrap intervals): model and baselines",
            interactive=False,
            visible=False,
        )
        stats_table = gr.Dataframe(label="model statistics", interactive=False, visible=False)
        with gr.Row():
            downloads = [
                gr.DownloadButton("Results CSV", visible=False),
                gr.DownloadButton("Predictions CSV", visible=False),
                gr.DownloadButton("History CSV", visible=False),
            ]
        with gr.Row():
            run_picker = gr.Dropdown(
                choices=self.workspace.runs(), label="open an existing run", allow_custom_value=True, scale=3
            )
            open_button = gr.Button("Open run", scale=1)
            load_button = gr.Button("Load its settings", scale=1)
        timer = gr.Timer(1.0, active=False)

        run_outputs = [loss, metric, verdicts, test_table, stats_table, *downloads]
        problem_type, label_names = form.widgets["data.problem_type"], form.widgets["data.label_names"]
        label_column, model_name = form.widgets["data.label_column"], form.widgets["model.name"]
        refresh.click(
            lambda: (gr.update(choices=self.workspace.datasets()), gr.update(choices=self.workspace.runs())),
            None,
            [dataset, run_picker],
            queue=False,
        )
        # .input: a person's choice; a dataset set by "Load its settings" keeps the loaded problem type
        dataset.input(self.guess, [dataset, label_column], [problem_type, label_names, guessed])
        # .blur, not .input: reading the files at every keystroke of a column name would be wasted
        label_column.blur(self.guess, [dataset, label_column], [problem_type, label_names, guessed])
        uploads.upload(
            self.upload, [uploads, label_column], [dataset, problem_type, label_names, guessed, uploads]
        )
        preview_button.click(
            self.preview_data,
            inputs,
            [checks, class_table, sizes, lengths, labels, samples, problem_type, label_names],
            preprocess=False,
        )
        model_name.change(catalog.describe, model_name, model_card, queue=False)
        test_models.change(
            lambda show: gr.update(choices=catalog.choices(show)), test_models, model_name, queue=False
        )
        command_button.click(
            self.preview_command, inputs, [message, command, config_yaml, yaml_download], preprocess=False
        )
        # Start is disabled in the browser at once; the registry refuses a second run on the server
        start_button.click(lambda: gr.update(interactive=False), None, start_button, queue=False).then(
            self.start, inputs, [job_id, message, timer, command, config_yaml, start_button], preprocess=False
        )
        abort_button.click(self.abort, job_id, message)
        resume_button.click(self.resume, job_id, [job_id, message, timer])
        shown = gr.State(None)
        timer.tick(
            self.tick, [job_id, shown], [progress, *run_outputs, shown, timer, start_button, run_picker]
        )
        self.attach_outputs = [job_id, shown, timer, start_button, dataset, run_picker]  # app.load
        open_button.click(self.open_run, run_picker, [progress, *run_outputs])
        load_button.click(self.load_settings, run_picker, [dataset, message, *form.outputs])
        form.wire_visibility()
