"""The Data step's words and tables: the guessed problem type and the classes per split, read from
:mod:`protfit.data.problem_type` and the report of :func:`protfit.data.loading.load_dataset_splits`."""

from __future__ import annotations

import pandas as pd

from protfit.data.loading import DatasetSplits
from protfit.data.problem_type import LabelGuess


def guess_note(guess: LabelGuess) -> str:
    names = f" Class names: {', '.join(guess.label_names)}." if guess.label_names else ""
    return (
        f"Problem type guessed from the labels: **{guess.problem_type}** ({guess.reason}).{names} "
        "Change it above if that is wrong."
    )


def class_counts(splits: DatasetSplits) -> tuple[pd.DataFrame | None, str]:
    """Sequences per class and split (None for regression), and a warning per class a split lacks:
    a class missing from validation or test is never scored, one missing from train never learnt."""
    counts = splits.report.get("label_counts")
    if not counts:
        return None, ""
    names = splits.label_names or [str(index) for index in range(splits.num_labels)]
    table = pd.DataFrame(
        [
            {"class": names[index], **{split: counts[split][index] for split in counts}}
            for index in range(len(names))
        ]
    )
    missing = [
        f"- ⚠ class **{names[index]}** has no sequence in {split}"
        for split, per_class in counts.items()
        for index, count in enumerate(per_class)
        if count == 0
    ]
    return table, "\n".join(missing)
