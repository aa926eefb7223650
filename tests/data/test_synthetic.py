"""Synthetic datasets load cleanly and their rule is learnable from composition (what mean pooling sees)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import config
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import MultiLabelBinarizer

from protfit.data import load_dataset_splits, write_synthetic_dataset
from protfit.data.validation import STANDARD_RESIDUES


def _composition(sequences) -> np.ndarray:
    return np.array([[seq.count(letter) / len(seq) for letter in STANDARD_RESIDUES] for seq in sequences])


@pytest.mark.parametrize(
    "problem_type", ["single_label_classification", "multi_label_classification", "regression"]
)
def test_synthetic_dataset_is_valid_varied_and_learnable(tmp_path: Path, problem_type: str) -> None:
    folder = write_synthetic_dataset(
        tmp_path / "syn", problem_type, n_train=150, n_validation=60, n_test=20, seed=1
    )
    assert sorted(path.name for path in folder.iterdir()) == ["test.csv", "train.csv", "validation.csv"]
    splits = load_dataset_splits(config(folder, problem_type))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (150, 60, 20)
    lengths = splits.train.frame["aa_seq"].str.len()
    assert lengths.min() >= 30 and lengths.max() <= 120 and lengths.nunique() > 20  # batching gets exercised
    train_x = _composition(splits.train.frame["aa_seq"])
    valid_x = _composition(splits.validation.frame["aa_seq"])
    train_y, valid_y = splits.train.frame["label"].tolist(), splits.validation.frame["label"].tolist()
    if problem_type == "single_label_classification":
        assert splits.report["label_counts"]["train"] == [50, 50, 50]  # balanced, not degenerate
        score = LogisticRegression(max_iter=500).fit(train_x, train_y).score(valid_x, valid_y)
        assert score > 0.9
    elif problem_type == "multi_label_classification":
        assert splits.num_labels == 4 and min(splits.report["label_counts"]["train"]) > 30
        assert len({tuple(label) for label in train_y}) > 5
        binarizer = MultiLabelBinarizer(classes=range(4))
        model = OneVsRestClassifier(LogisticRegression(max_iter=500)).fit(
            train_x, binarizer.fit_transform(train_y)
        )
        assert (model.predict(valid_x) == binarizer.transform(valid_y)).mean() > 0.85
    else:
        assert np.std(train_y) > 0.1
        predicted = Ridge(alpha=1e-3).fit(train_x, train_y).predict(valid_x)
        assert spearmanr(predicted, valid_y).statistic > 0.9


def test_synthetic_is_deterministic_and_checks_arguments(tmp_path: Path) -> None:
    first = write_synthetic_dataset(tmp_path / "a", "single_label_classification", seed=5)
    second = write_synthetic_dataset(tmp_path / "b", "single_label_classification", seed=5)
    assert (first / "train.csv").read_text() == (second / "train.csv").read_text()
    with pytest.raises(ValueError, match="unknown problem_type"):
        write_synthetic_dataset(tmp_path / "c", "ranking")
    with pytest.raises(ValueError, match="num_labels must be between 2"):
        write_synthetic_dataset(tmp_path / "c", "single_label_classification", num_labels=1)
