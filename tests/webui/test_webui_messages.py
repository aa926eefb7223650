"""Refusals in words: the field's name, its key and what it allows; no pydantic internals."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from protfit.config import ConfigError, build_config
from protfit.data.errors import DataError
from protfit.webui.messages import describe_error, field_label


def refused(**sections: dict) -> ConfigError:
    raw = {"data": {"path": "x", "problem_type": "regression"}, "model": {"name": "m"}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    with pytest.raises(ConfigError) as error:
        build_config(raw)
    return error.value


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("train.learning_rate", "Learning rate"),
        ("model.name", "Model name"),
        ("data.problem_type", "Problem type"),
        ("train.early_stopping.patience", "Early stopping patience"),
    ],
)
def test_field_labels_are_words(key: str, label: str) -> None:
    assert field_label(key) == label
    assert field_label(key, {key: "Custom"}) == "Custom"


def test_each_problem_names_the_field_and_what_it_allows() -> None:
    text = describe_error(refused(train={"learning_rate": -1, "epochs": 0, "bogus": 1}))
    assert text.startswith("✗ Please fix 3 settings:\n")
    assert "- **Learning rate** (`train.learning_rate`): must be greater than 0, or 'auto' (got -1)" in text
    assert "- **Epochs** (`train.epochs`): must be at least 1 (got 0)" in text
    assert "- `train.bogus` is not a setting; allowed here: device, early_stopping" in text
    for internal in ("constrained-float", "literal[", "Input should", "Value error"):
        assert internal not in text


def test_a_missing_key_and_other_errors() -> None:
    with pytest.raises(ConfigError) as error:
        build_config({"data": {"path": "x"}, "model": {"name": "m"}})
    assert describe_error(error.value) == (
        "✗ Please fix a setting:\n- **Problem type** (`data.problem_type`): required: set a value"
    )
    message = "datasets/x/train.csv, row 3, field 'aa_seq': 'MKT1' holds '1'"
    assert describe_error(DataError(message)) == f"✗ {message}"
