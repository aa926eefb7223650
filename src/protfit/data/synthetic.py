"""Synthetic datasets with a known, learnable rule, for smoke runs and tests.

The rules depend on amino-acid *composition*, which a mean-pooled embedding (even one-hot) carries
directly, so a small model learns them in a few epochs:

- single-label: class ``c`` sequences are enriched in the residue pair ``SIGNAL_PAIRS[c]``;
- multi-label: label ``k`` is present when the sequence is enriched in ``SIGNAL_PAIRS[k]`` (each row
  has one or more labels);
- regression: the label is the fraction of hydrophobic residues (AILMFVW), plus a little noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from protfit.data.validation import STANDARD_RESIDUES

SIGNAL_PAIRS = ("KR", "DE", "FW", "CP", "HY", "NQ", "ST", "GA", "IL", "MV")
HYDROPHOBIC = "AILMFVW"
# Share of positions drawn from a label's signal pair: ~0.7*5% + 15% = 18.5% per letter vs 3.5% background.
_ENRICHMENT_PER_LABEL = 0.3
_DEFAULT_LABELS = {"single_label_classification": 3, "multi_label_classification": 4, "regression": 1}


def _sequence(rng: np.random.Generator, length: int, signal: str) -> str:
    letters = rng.choice(list(STANDARD_RESIDUES), size=length)
    if signal:
        # several labels share the enriched positions, each keeping roughly its single-label signal
        enriched = rng.random(length) < min(0.6, _ENRICHMENT_PER_LABEL * len(signal) / 2)
        letters[enriched] = rng.choice(list(signal), size=int(enriched.sum()))
    return "".join(letters)


def _hydrophobic_sequence(rng: np.random.Generator, length: int) -> tuple[str, float]:
    other = [letter for letter in STANDARD_RESIDUES if letter not in HYDROPHOBIC]
    share = rng.uniform(0.1, 0.7)
    hydrophobic = rng.random(length) < share
    letters = np.where(
        hydrophobic, rng.choice(list(HYDROPHOBIC), size=length), rng.choice(other, size=length)
    )
    return "".join(letters), float(hydrophobic.mean())


def _rows(
    rng: np.random.Generator, problem_type: str, count: int, num_labels: int, min_len: int, max_len: int
) -> list[tuple[str, str]]:
    lengths = rng.integers(min_len, max_len + 1, size=count)
    classes = rng.permutation(np.arange(count) % num_labels)  # balanced classes
    rows: list[tuple[str, str]] = []
    for i, length in enumerate(lengths):
        if problem_type == "regression":
            sequence, share = _hydrophobic_sequence(rng, int(length))
            rows.append((sequence, f"{share + rng.normal(0.0, 0.02):.4f}"))
        elif problem_type == "single_label_classification":
            rows.append((_sequence(rng, int(length), SIGNAL_PAIRS[classes[i]]), str(classes[i])))
        else:
            present = [k for k in range(num_labels) if rng.random() < 0.4] or [int(classes[i])]
            signal = "".join(SIGNAL_PAIRS[k] for k in present)
            rows.append((_sequence(rng, int(length), signal), ",".join(map(str, present))))
    return rows


def write_synthetic_dataset(
    out_dir: str | Path,
    problem_type: str,
    n_train: int = 240,
    n_validation: int = 60,
    n_test: int = 60,
    seed: int = 0,
    min_len: int = 30,
    max_len: int = 120,
    num_labels: int | None = None,
) -> Path:
    """Write ``train.csv``, ``validation.csv`` and ``test.csv`` (columns name, aa_seq, label) to ``out_dir``.

    ``num_labels`` defaults to 3 classes (single-label) or 4 labels (multi-label), at most
    ``len(SIGNAL_PAIRS)``. Lengths are uniform in [min_len, max_len]. Returns ``out_dir``.
    """
    if problem_type not in _DEFAULT_LABELS:
        raise ValueError(f"unknown problem_type '{problem_type}'; choose from {sorted(_DEFAULT_LABELS)}")
    labels = (
        _DEFAULT_LABELS[problem_type] if num_labels is None or problem_type == "regression" else num_labels
    )
    if problem_type != "regression" and not 2 <= labels <= len(SIGNAL_PAIRS):
        raise ValueError(f"num_labels must be between 2 and {len(SIGNAL_PAIRS)} for synthetic classification")
    if not 1 <= min_len <= max_len:
        raise ValueError("need 1 <= min_len <= max_len")
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n_train), ("validation", n_validation), ("test", n_test)):
        rows = _rows(rng, problem_type, count, labels, min_len, max_len)
        frame = pd.DataFrame(rows, columns=["aa_seq", "label"])
        frame.insert(0, "name", [f"{split}_{i + 1}" for i in range(count)])
        frame.to_csv(out / f"{split}.csv", index=False)
    return out
