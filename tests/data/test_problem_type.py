"""Guessing data.problem_type from the labels, as the web UI's Data step does before any option is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from protfit.data.errors import DataError
from protfit.data.problem_type import MAX_CLASSES, guess_from_labels, guess_problem_type
from protfit.data.synthetic import write_synthetic_dataset


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["0.12", "3.5", "-1.25", "2.0"], "regression"),
        ([str(value) for value in range(MAX_CLASSES + 1)], "regression"),  # many distinct whole numbers
        (["0", "1", "1", "2"], "single_label_classification"),
        (["binder", "non-binder", "binder"], "single_label_classification"),
        (["0,4", "1", "2,3"], "multi_label_classification"),
        ([[0, 4], [1]], "multi_label_classification"),
    ],
)
def test_guess_from_labels(labels: list[object], expected: str) -> None:
    assert guess_from_labels(labels).problem_type == expected


def test_text_labels_become_sorted_class_names() -> None:
    guess = guess_from_labels(["non-binder", "binder", "binder", ""])
    assert guess.label_names == ["binder", "non-binder"]
    assert "2 names" in guess.reason


def test_no_label_at_all_is_an_error() -> None:
    with pytest.raises(DataError, match="label column is empty"):
        guess_from_labels(["", None])


@pytest.mark.parametrize(
    "problem", ["regression", "single_label_classification", "multi_label_classification"]
)
def test_guess_matches_the_synthetic_datasets(tmp_path: Path, problem: str) -> None:
    write_synthetic_dataset(tmp_path, problem, n_train=40, n_validation=10, n_test=10)
    assert guess_problem_type(str(tmp_path)).problem_type == problem


def test_missing_label_column_names_the_file(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, "regression", n_train=10, n_validation=5, n_test=5)
    with pytest.raises(DataError, match="no column 'score'"):
        guess_problem_type(str(tmp_path), label_column="score")
