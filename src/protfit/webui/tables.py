"""Tables as the UI shows them: compare.md's Markdown table as a frame, and numbers rounded to
significant digits (the CSV downloads keep every digit)."""

from __future__ import annotations

import re

import pandas as pd

from protfit.report.compare import format_value

_CELL = re.compile(r"(?<!\\)\|")


def markdown_table(text: str) -> tuple[pd.DataFrame | None, str]:
    """compare.md's table as a frame (shown scrollable: 19 columns as Markdown wrapped mid-word) and
    the notes under it, both exactly as `protfit compare` wrote them."""
    lines = text.strip().splitlines()
    rows = [line for line in lines if line.startswith("|")]
    notes = "\n".join(line for line in lines if not line.startswith("|")).strip()
    if len(rows) < 2:
        return None, notes

    def cells(line: str) -> list[str]:
        return [cell.strip().replace("\\|", "|") for cell in _CELL.split(line.strip()[1:-1])]

    header = cells(rows[0])
    return pd.DataFrame([cells(line) for line in rows[2:]], columns=header), notes


def rounded(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Float columns as text with 4 significant digits, and "–" for a missing or undefined value
    (:func:`protfit.report.compare.format_value`, the rule of every compare and sweep table)."""
    if frame is None:
        return None
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(format_value)
    return shown
