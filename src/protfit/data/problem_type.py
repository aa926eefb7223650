"""Guess ``data.problem_type`` (and class names) from a dataset's labels, before anything is configured.

The web UI offers the guess as the dropdown's value, so a person can preview a dataset without knowing
protfit's three problem types; the person can still change it, and the run validates the labels with
the chosen type exactly as it would have without the guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from protfit.config import DataConfig
from protfit.data.errors import DataError
from protfit.data.loading import read_labelled_frames
from protfit.data.validation import is_missing

# At most this many distinct whole numbers read as class indices; more read as measurements. Twenty
# covers the usual class counts (localisation has 10, EC first digits 7) while a measured property
# (melting point, fitness) has far more distinct values than that in any dataset worth training on.
MAX_CLASSES = 20


@dataclass(frozen=True)
class LabelGuess:
    """The guessed problem type, the class names (text labels only) and why, in words."""

    problem_type: str
    label_names: list[str] | None
    reason: str


def _number(value: Any) -> float | None:
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def guess_from_labels(labels: list[Any]) -> LabelGuess:
    """The problem type a list of raw label cells (as read from the files) most likely means.

    - a cell holding a list or a comma (``0,4,7``): multi-label classification;
    - any text that is not a number: single-label classification, the sorted texts as class names;
    - whole numbers with at most :data:`MAX_CLASSES` distinct values: single-label classification;
    - any other numbers: regression.
    """
    present = [label for label in labels if not is_missing(label) and str(label).strip() != ""]
    if not present:
        raise DataError("the label column is empty; add a label to every training row")
    if any(isinstance(label, list | tuple) or "," in str(label) for label in present):
        return LabelGuess("multi_label_classification", None, "some labels list several classes (0,4,7)")
    numbers = [_number(label) for label in present]
    if any(number is None for number in numbers):
        names = sorted({str(label).strip() for label in present})
        return LabelGuess(
            "single_label_classification", names, f"the labels are {len(names)} names: {', '.join(names[:8])}"
        )
    distinct = {number for number in numbers if number is not None}
    if all(number.is_integer() for number in distinct) and len(distinct) <= MAX_CLASSES:
        return LabelGuess(
            "single_label_classification",
            None,
            f"the labels are {len(distinct)} whole numbers (class indices)",
        )
    return LabelGuess("regression", None, f"the labels are {len(distinct)} distinct numbers (measurements)")


def guess_problem_type(path: str, label_column: str = "label") -> LabelGuess:
    """Read the dataset at ``path`` (any source :func:`protfit.data.loading.load_dataset_splits` reads)
    and guess from the labels of all its splits, so a class present only outside train still counts."""
    # problem_type is required by DataConfig but not read while the files are read
    cfg = DataConfig(path=path, problem_type="regression", label_column=label_column)
    labels: list[Any] = []
    for _, frame in read_labelled_frames(cfg).values():
        labels.extend(pd.Series(frame[label_column]).tolist())
    return guess_from_labels(labels)
