"""Shared data for the regularization tests: tiny models, a few dozen rows, 1-3 epochs."""

from __future__ import annotations

import pytest

from protfit.data.synthetic import write_synthetic_dataset


@pytest.fixture(scope="session")
def classification_data(tmp_path_factory):
    # 24 training rows at batch 8: 3 optimizer steps per epoch
    root = tmp_path_factory.mktemp("reg-class")
    return write_synthetic_dataset(
        root, "single_label_classification", n_train=24, n_validation=8, n_test=8, seed=3, max_len=40
    )


@pytest.fixture(scope="session")
def regression_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("reg-regr")
    return write_synthetic_dataset(
        root, "regression", n_train=24, n_validation=8, n_test=8, seed=4, max_len=40
    )
