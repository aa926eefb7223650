from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from data_helpers import SEQS, rows


@pytest.fixture
def write_splits(tmp_path: Path) -> Callable[..., Path]:
    """Write train/validation(/test) CSVs (default: tiny valid single-label data) and return the folder."""

    def write(
        train: pd.DataFrame | None = None,
        validation: pd.DataFrame | None = None,
        test: pd.DataFrame | None = None,
        folder: str = "ds",
    ) -> Path:
        out = tmp_path / folder
        out.mkdir(exist_ok=True)
        train = train if train is not None else rows([0, 1, 0, 1], SEQS[:4])
        validation = validation if validation is not None else rows([1, 0], SEQS[4:6])
        train.to_csv(out / "train.csv", index=False)
        validation.to_csv(out / "validation.csv", index=False)
        if test is not None:
            test.to_csv(out / "test.csv", index=False)
        return out

    return write
