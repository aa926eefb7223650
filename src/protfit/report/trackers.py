"""Experiment trackers (``output.trackers: [tensorboard, wandb, mlflow]``), each a training plug-in.

Each tracker logs through its own library's API, from the main process only:

* the resolved config, when training starts;
* per optimizer step: the step's training loss (``state.last_loss``) and the learning rate;
* per epoch: every number of the epoch's history row (losses, validation metrics, lr, time and,
  when the run computes them, the overfitting diagnostics ``train_<metric>``, ``gap_loss``,
  ``gap_metric``; the ``overfitting`` verdict as a level 0/1/2 = none/mild/severe);
* when the run ends (``close_trackers``, called by the recipe after the report): the best epoch and
  validation value, test metrics with their bootstrap bounds, the diagnostics summary and the
  sanity-baseline verdict.

Where they write: TensorBoard ``RUN_DIR/tensorboard/``; MLflow the tracking URI in
``MLFLOW_TRACKING_URI``, else a SQLite store ``RUN_DIR/mlflow.db`` with artifacts in
``RUN_DIR/mlartifacts/`` (MLflow 3 refuses new file stores ``./mlruns``); W&B ``RUN_DIR/wandb/``,
online or offline as ``WANDB_MODE`` says (``offline`` needs no account). A resumed run continues the
same MLflow / W&B run (ids kept in ``RUN_DIR/trackers.json``); TensorBoard drops the steps after the
resumed checkpoint.

Trackers log only for a real run folder (one with ``config.yaml``): the shuffled-label baseline and
the LR range test build their own throw-away setups from the same config and stay silent.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from protfit.plugins import Plugin, TrainingState
from protfit.registry import PLUGINS, TRACKERS

TRACKERS_FILE = "trackers.json"
OVERFITTING_LEVEL = {"none": 0, "mild": 1, "severe": 2}


def check_trackers(cfg: Any) -> None:
    """Refuse, before any work, a tracker whose package is not installed (with the pip command)."""
    from protfit.config import ConfigError

    for name in cfg.output.trackers:
        entry = TRACKERS.entry(name)
        module, package = entry.options["module"], entry.options["package"]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"output.trackers: '{name}' needs the {package} package, which is not installed: "
                f'pip install {package}   (or all trackers: pip install "protfit[trackers]")'
            )


def close_trackers(plugins: Any, summary: dict[str, Any]) -> None:
    """Log the run's final results to every tracker among ``plugins`` and close it."""
    for plugin in plugins:
        if isinstance(plugin, Tracker):
            plugin.close(summary)


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    values = {}
    for key, value in record.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        values[key] = float(value)
    return values


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def final_values(summary: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """(numbers, texts) of a finished run's summary, with tracker-friendly names."""
    numbers: dict[str, float] = {}
    texts: dict[str, str] = {}
    if summary.get("best_epoch") is not None:
        numbers["best/epoch"] = float(summary["best_epoch"])
    if isinstance(summary.get("best_val_metric"), int | float):
        numbers[f"best/val_{summary.get('monitor', 'metric')}"] = float(summary["best_val_metric"])
    if isinstance(summary.get("test_loss"), int | float):
        numbers["test/loss"] = float(summary["test_loss"])
    for name, entry in (summary.get("test_metrics") or {}).items():
        for part, suffix in (("value", ""), ("low", "_low"), ("high", "_high")):
            if isinstance(entry.get(part), int | float):
                numbers[f"test/{name}{suffix}"] = float(entry[part])
    diagnostics = summary.get("diagnostics") or {}
    for key, value in _numbers(diagnostics).items():
        numbers[f"diagnostics/{key}"] = value
    if diagnostics.get("verdict") in OVERFITTING_LEVEL:
        numbers["diagnostics/overfitting_level"] = float(OVERFITTING_LEVEL[diagnostics["verdict"]])
        texts["diagnostics/overfitting"] = diagnostics["verdict"]
    if diagnostics.get("advice"):
        advice = diagnostics["advice"]
        texts["diagnostics/advice"] = "\n".join(advice) if isinstance(advice, list) else str(advice)
    if summary.get("verdict"):
        texts["baselines/verdict"] = str(summary["verdict"])
    numbers["wall_time_s"] = float(summary.get("wall_time_s") or 0.0)
    return {key: value for key, value in numbers.items() if math.isfinite(value)}, texts


class Tracker(Plugin):
    """What every tracker does; a subclass implements ``_open``, ``_log``, ``_text`` and ``_finish``."""

    def __init__(self) -> None:
        self.active = False
        self.run_dir: Path | None = None

    # --- plug-in hooks --------------------------------------------------------------------------
    def on_train_start(self, state: TrainingState) -> None:
        run_dir = Path(state.run_dir)
        if not state.parts.accelerator.is_main_process or not (run_dir / "config.yaml").is_file():
            return
        self.run_dir = run_dir
        config = state.config.model_dump(mode="json")
        self._open(config, state)
        self.active = True

    def on_after_optimizer_step(self, state: TrainingState) -> None:
        if not self.active:
            return
        values = {"train/lr": float(state.parts.scheduler.get_last_lr()[0])}
        if state.last_loss is not None:
            values["train/step_loss"] = float(state.last_loss)
        self._log(values, state.global_step)

    def on_epoch_end(self, state: TrainingState) -> None:
        if not self.active:
            return
        record = dict(state.epoch_record)
        values = {f"epoch/{key}": value for key, value in _numbers(record).items() if key != "best"}
        if record.get("overfitting") in OVERFITTING_LEVEL:
            values["epoch/overfitting_level"] = float(OVERFITTING_LEVEL[record["overfitting"]])
        self._log(values, state.global_step)

    def close(self, summary: dict[str, Any]) -> None:
        """Final results, then close the tracker's run (called once, after the run's report)."""
        if not self.active:
            return
        numbers, texts = final_values(summary)
        self._final(numbers, texts)
        self._finish()
        self.active = False

    # --- run ids kept for --resume --------------------------------------------------------------
    def _saved_id(self) -> str | None:
        path = self.run_dir / TRACKERS_FILE  # type: ignore[operator]
        return json.loads(path.read_text()).get(self.name) if path.is_file() else None

    def _save_id(self, run_id: str) -> None:
        path = self.run_dir / TRACKERS_FILE  # type: ignore[operator]
        saved = json.loads(path.read_text()) if path.is_file() else {}
        saved[self.name] = run_id
        path.write_text(json.dumps(saved, indent=2))

    # --- per library ----------------------------------------------------------------------------
    def _open(self, config: dict[str, Any], state: TrainingState) -> None: ...

    def _log(self, values: dict[str, float], step: int) -> None: ...

    def _final(self, numbers: dict[str, float], texts: dict[str, str]) -> None: ...

    def _finish(self) -> None: ...


def register_tracker(name: str, description: str, module: str, package: str):
    """Class decorator: a TRACKERS entry and the PLUGINS builder that adds it when the config names it."""

    def decorator(cls: type[Tracker]) -> type[Tracker]:
        cls.name = name
        TRACKERS.add(name, cls, description, module=module, package=package)
        PLUGINS.add(
            f"tracker:{name}",
            lambda cfg: cls() if name in cfg.output.trackers else None,
            f"experiment tracker {name} (output.trackers)",
        )
        return cls

    return decorator


@register_tracker(
    "tensorboard", "TensorBoard event files in RUN_DIR/tensorboard", "tensorboard", "tensorboard"
)
class TensorBoardTracker(Tracker):
    def _open(self, config: dict[str, Any], state: TrainingState) -> None:
        import yaml
        from torch.utils.tensorboard import SummaryWriter

        # resumed: events after the checkpoint's step were written by the killed run and are replayed
        self.writer = SummaryWriter(
            log_dir=str(self.run_dir / "tensorboard"),  # type: ignore[operator]
            purge_step=state.global_step + 1 if state.epoch > 0 else None,
        )
        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "```\n" + text + "```", global_step=state.global_step)

    def _log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, global_step=step)
        if any(key.startswith("epoch/") for key in values):
            self.writer.flush()

    def _final(self, numbers: dict[str, float], texts: dict[str, str]) -> None:
        for key, value in numbers.items():
            self.writer.add_scalar(key, value, global_step=0)
        for key, text in texts.items():
            self.writer.add_text(key, text, global_step=0)

    def _finish(self) -> None:
        self.writer.close()


@register_tracker(
    "mlflow", "MLflow run (MLFLOW_TRACKING_URI, else sqlite RUN_DIR/mlflow.db)", "mlflow", "mlflow-skinny"
)
class MLflowTracker(Tracker):
    def _open(self, config: dict[str, Any], state: TrainingState) -> None:
        import os

        from mlflow.tracking import MlflowClient

        run_dir = self.run_dir.resolve()  # type: ignore[union-attr]
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run_dir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "protfit")
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        elif os.environ.get("MLFLOW_TRACKING_URI"):
            experiment_id = self.client.create_experiment(name)
        else:  # a store of this run's own: artifacts beside it, not in the current directory
            experiment_id = self.client.create_experiment(
                name, artifact_location=(run_dir / "mlartifacts").as_uri()
            )
        saved = self._saved_id() if state.epoch > 0 else None
        if saved is not None:
            self.run_id = saved
            self.client.update_run(saved, status="RUNNING")
            return
        run = self.client.create_run(
            experiment_id, run_name=run_dir.name, tags={"protfit.run_dir": str(run_dir)}
        )
        self.run_id = run.info.run_id
        self._save_id(self.run_id)
        from mlflow.entities import Param

        params = [Param(key, str(value)[:500]) for key, value in _flatten(config).items()]
        for start in range(0, len(params), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        self.client.log_dict(self.run_id, config, "config.yaml")

    def _log(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key.replace("/", "."), value, now, step) for key, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def _final(self, numbers: dict[str, float], texts: dict[str, str]) -> None:
        self._log(numbers, 0)
        for key, text in texts.items():
            self.client.set_tag(self.run_id, key.replace("/", "."), text[:5000])

    def _finish(self) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED")


@register_tracker(
    "wandb", "Weights & Biases run in RUN_DIR/wandb (WANDB_MODE=offline works)", "wandb", "wandb"
)
class WandbTracker(Tracker):
    def _open(self, config: dict[str, Any], state: TrainingState) -> None:
        import os

        import wandb

        saved = self._saved_id() if state.epoch > 0 else None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "protfit"),
            name=self.run_dir.name,  # type: ignore[union-attr]
            dir=str(self.run_dir),
            config=config,
            id=saved,
            resume="allow" if saved else None,
            reinit="create_new",  # several runs in one process (sweep trials) stay separate
        )
        self._save_id(self.run.id)
        self.run.define_metric("epoch/*", step_metric="epoch/epoch")

    def _log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def _final(self, numbers: dict[str, float], texts: dict[str, str]) -> None:
        for key, value in {**numbers, **texts}.items():
            self.run.summary[key] = value

    def _finish(self) -> None:
        self.run.finish()
