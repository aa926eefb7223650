"""Every handler of every tab, driven down its failure path: a message in words and the number of
values its outputs expect, never an exception (Gradio shows those as an error popup)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gradio")

from protfit.data.synthetic import write_synthetic_dataset
from protfit.webui.app import build_app
from protfit.webui.workspace import Workspace

# Handlers whose first input is what the user must choose (a dataset, a run, a comparison): with
# nothing chosen they refuse with a ✗ message.
REFUSING = {
    "TrainTab.preview_data",
    "TrainTab.preview_command",
    "TrainTab.start",
    "TrainTab.load_settings",
    "TuneTab.start_lr_find",
    "TuneTab.start_sweep",
    "TuneTab.start_tune",
    "CompareTab.compare",
    "CompareTab.train_recommended",
    "PredictTab.predict",
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("ws")
    write_synthetic_dataset(root / "datasets" / "syn", "single_label_classification", 20, 10, 10)
    return build_app(Workspace(root))


def _tab(app: Any, name: str) -> Any:
    """The tab object (TrainTab, TuneTab, ...) whose methods the app's events call."""
    return next(
        block.fn.__self__
        for block in app.fns.values()
        if type(getattr(block.fn, "__self__", None)).__name__ == name
    )


def _handlers(app: Any) -> list[Any]:
    return [block for block in app.fns.values() if getattr(block.fn, "__qualname__", "")]


def _fresh_page_inputs(block: Any) -> list[Any]:
    """What a fresh page sends: every input at its initial value, the picker (first input) empty."""
    values = [getattr(component, "value", None) for component in block.inputs]
    return [None, *values[1:]] if values else values


def _messages(result: Any) -> list[str]:
    values = result if isinstance(result, list | tuple) else [result]
    return [value for value in values if isinstance(value, str)]


def test_every_handler_returns_its_outputs_with_nothing_chosen(app: Any) -> None:
    seen = set()
    for block in _handlers(app):
        name = block.fn.__qualname__
        if name.endswith("visibility"):  # reads widget values only; no failure path
            continue
        result = block.fn(*_fresh_page_inputs(block))
        if len(block.outputs) > 1:
            assert isinstance(result, list | tuple) and len(result) == len(block.outputs), name
        if name in REFUSING:
            assert any(text.startswith("✗ ") for text in _messages(result)), (name, _messages(result))
            seen.add(name)
    assert seen == REFUSING


def _form(app: Any, **changes: Any) -> list[Any]:
    train = _tab(app, "TrainTab")
    values = {spec.key: spec.default for spec in train.specs}
    values.update({"data.problem_type": "single_label_classification", "model.name": "tiny-esm2", **changes})
    return ["datasets/syn", *values.values()]


@pytest.mark.parametrize("handler", ["preview_command", "start"])
def test_a_negative_learning_rate_is_refused_in_words(app: Any, handler: str) -> None:
    result = getattr(_tab(app, "TrainTab"), handler)(*_form(app, **{"train.learning_rate": "-1"}))
    (message,) = [text for text in _messages(result) if text.startswith("✗")]
    assert "**Learning rate** (`train.learning_rate`): must be greater than 0, or 'auto' (got -1)" in message
    assert "constrained" not in message and "literal[" not in message and "Input should" not in message


def test_tune_tab_refuses_an_empty_number_in_words(app: Any) -> None:
    tune = _tab(app, "TuneTab")
    form = _form(app)
    for result in (
        tune.start_lr_find(1e-7, 1.0, None, "steepest", *form),
        tune.start_tune(3, None, *form),
        tune.start_sweep("quick", None, 0, *form),
    ):
        assert result[0] is None and result[1].startswith("✗ ")
    assert not list((Path(tune.workspace.root) / "lr-find").glob("*"))
