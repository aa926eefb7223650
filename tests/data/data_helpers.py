"""Small helpers shared by the data tests (a uniquely named module: `conftest` names clash across folders)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from protfit.config import DataConfig

SEQS = ["MKTAYIAKQR", "GSHMLEDPVA", "MKKLLPTAAA", "ACDEFGHIKL", "WYVTSRQPNM", "MGSSHHHHHH"]


def rows(labels: list, seqs: list[str] | None = None, **extra: list) -> pd.DataFrame:
    seqs = seqs if seqs is not None else SEQS[: len(labels)]
    frame = pd.DataFrame({"name": [f"p{i}" for i in range(len(labels))], "aa_seq": seqs, "label": labels})
    for column, values in extra.items():
        frame[column] = values
    return frame


def config(path: Path | str, problem_type: str = "single_label_classification", **options) -> DataConfig:
    return DataConfig(path=str(path), problem_type=problem_type, **options)
