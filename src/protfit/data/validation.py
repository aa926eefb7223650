"""Row-level checks of one data file (sequences, structure strings, labels, truncation) into a canonical frame.

Every check walks the whole column, then raises a :class:`DataError` for the *first* bad row and says
how many rows share the problem, so one run of the tool shows the size of a data problem, not just its
first instance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from protfit.config import DataConfig
from protfit.data.errors import DataError

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
# X (unknown) plus the IUPAC ambiguity / rare codes every protein language model vocabulary has:
# B (D or N), Z (E or Q), U (selenocysteine), O (pyrrolysine). Tokenizers map them as their family needs.
ALLOWED_RESIDUES = STANDARD_RESIDUES + "XBZUO"
# Foldseek's 3Di structural alphabet: 20 states written with the amino-acid letters, upper-case.
FOLDSEEK_ALPHABET = STANDARD_RESIDUES
# DSSP 8-state secondary structure. Coil (DSSP's blank) may be written '-', 'C' or 'L': the three
# conventions in common use (DSSP/Biopython, PSIPRED-style, NetSurfP-style); letters are kept as given.
SS8_ALPHABET = "HBEGITS" + "-CL"

_UNKNOWN_RESIDUE = re.compile(f"[^{ALLOWED_RESIDUES}]")
_WHITESPACE = re.compile(r"\s+")
_RESIDUE_HINTS = {
    "*": " ('*' marks a stop codon: remove it from the sequence)",
    "-": " ('-' is an alignment gap: give unaligned sequences)",
    ".": " ('.' is an alignment gap: give unaligned sequences)",
}


def is_missing(value: Any) -> bool:
    """True for None/NaN/NA cells; lists and arrays (multi-label cells from JSON/parquet) are values."""
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def _raise_first(bad: list[tuple[int, str]], *, file: str, field: str, total: int, advice: str = "") -> None:
    """Raise for the first (row, message) in ``bad``, mentioning how many rows have a problem."""
    if not bad:
        return
    row, message = bad[0]
    if len(bad) > 1:
        message += f" ({len(bad)} of {total} rows in this file have a problem in this field)"
    raise DataError(message + advice, file=file, row=row, field=field)


def clean_sequences(
    values: Sequence[Any], cfg: DataConfig, *, file: str, field: str
) -> tuple[list[str], int, int]:
    """Strip all whitespace, upper-case, check the alphabet.

    Returns (sequences, residues mapped to X, rows with a mapped residue). Whitespace anywhere is
    removed, so space-separated (ProtBert-style) and line-wrapped sequences are accepted.
    """
    sequences: list[str] = []
    missing: list[tuple[int, str]] = []
    unknown: list[tuple[int, str]] = []
    mapped_residues = 0
    for row, value in enumerate(values, start=1):
        text = "" if is_missing(value) else _WHITESPACE.sub("", str(value)).upper()
        if not text:
            missing.append((row, "empty or missing sequence"))
        elif (match := _UNKNOWN_RESIDUE.search(text)) is not None:
            letter = match.group()
            unknown.append(
                (
                    row,
                    f"unknown residue '{letter}' at position {match.start() + 1}{_RESIDUE_HINTS.get(letter, '')}",
                )
            )
            if cfg.unknown_residues == "map_to_x":
                text, count = _UNKNOWN_RESIDUE.subn("X", text)
                mapped_residues += count
        sequences.append(text)
    _raise_first(missing, file=file, field=field, total=len(values))
    if cfg.unknown_residues == "error":
        _raise_first(
            unknown,
            file=file,
            field=field,
            total=len(values),
            advice=(
                f"; allowed letters are {STANDARD_RESIDUES} plus X, B, Z, U, O"
                "; set data.unknown_residues=map_to_x to map unknown letters to X"
            ),
        )
    return sequences, mapped_residues, len(unknown)


def check_structure_strings(
    values: Sequence[Any], residue_counts: Sequence[int], *, kind: str, file: str, field: str
) -> list[str]:
    """Validate foldseek (``kind='foldseek'``) or DSSP 8-state (``kind='ss8'``) strings, one letter per residue."""
    alphabet = FOLDSEEK_ALPHABET if kind == "foldseek" else SS8_ALPHABET
    described = "Foldseek 3Di" if kind == "foldseek" else "DSSP 8-state (H B E G I T S, coil as - C or L)"
    invalid = re.compile(f"[^{re.escape(alphabet)}]")
    strings: list[str] = []
    bad: list[tuple[int, str]] = []
    for row, (value, residues) in enumerate(zip(values, residue_counts, strict=True), start=1):
        text = "" if is_missing(value) else _WHITESPACE.sub("", str(value))
        strings.append(text)
        if not text:
            bad.append((row, f"empty or missing {described} string"))
        elif (match := invalid.search(text)) is not None:
            letter, position = match.group(), match.start() + 1
            if letter.islower() and letter.upper() in alphabet:
                bad.append(
                    (
                        row,
                        (
                            f"lower-case letter '{letter}' at position {position}: {described} strings are "
                            "upper-case here; convert the column with .upper()"
                        ),
                    )
                )
            else:
                bad.append(
                    (
                        row,
                        f"letter '{letter}' at position {position} is not in the {described} alphabet {alphabet}",
                    )
                )
        elif len(text) != residues:
            bad.append(
                (
                    row,
                    f"{len(text)} structure letters for a sequence of {residues} residues; they must match 1:1",
                )
            )
    _raise_first(bad, file=file, field=field, total=len(values))
    return strings


def truncate(
    sequences: list[str], structures: dict[str, list[str]], cfg: DataConfig, *, file: str, field: str
) -> int:
    """Apply ``max_seq_len`` in place (structure strings cut the same way); returns how many were cut."""
    limit = cfg.max_seq_len
    if limit is None:
        return 0
    long_rows = [row for row, seq in enumerate(sequences) if len(seq) > limit]
    if long_rows and cfg.truncation == "error":
        first = long_rows[0]
        raise DataError(
            f"sequence has {len(sequences[first])} residues, more than data.max_seq_len={limit} "
            f"({len(long_rows)} rows in this file are longer); set data.truncation=keep_start to keep "
            f"the first {limit} residues, or raise data.max_seq_len",
            file=file,
            row=first + 1,
            field=field,
        )
    for index in long_rows:
        sequences[index] = sequences[index][:limit]
        for strings in structures.values():
            strings[index] = strings[index][:limit]
    return len(long_rows)


def _as_class_index(value: Any, label_names: Sequence[str] | None) -> int:
    """One class index from an int, an integral float, or text ("3", "3.0", or a name in label_names)."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"'{value}' is a boolean, not a class index")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not float(value).is_integer():
            raise ValueError(f"'{value}' is not a whole number")
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        if label_names is not None and text in label_names:
            return list(label_names).index(text)
        hint = "" if label_names is None else f" nor one of data.label_names {list(label_names)}"
        raise ValueError(f"'{text}' is not a class index{hint}") from None
    if not number.is_integer():
        raise ValueError(f"'{text}' is not a whole number")
    return int(number)


def _as_class_set(value: Any, label_names: Sequence[str] | None) -> list[int]:
    if isinstance(value, list | tuple | np.ndarray):
        items = list(value)
    elif isinstance(value, str):
        text = value.strip().removeprefix("[").removesuffix("]")
        items = [item.strip() for item in text.split(",")]
        if any(item == "" for item in items):
            raise ValueError(f"'{value}' has an empty entry")
    else:
        items = [value]
    indices = [_as_class_index(item, label_names) for item in items]
    if not indices:
        raise ValueError("no class indices given")
    duplicates = sorted({index for index in indices if indices.count(index) > 1})
    if duplicates:
        raise ValueError(f"class {duplicates[0]} is listed twice in '{value}'")
    return sorted(indices)


def _as_float(value: Any) -> float:
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{value}' is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"'{value}' is not a finite number")
    return number


def _allowed_labels(problem_type: str, num_labels: int | None) -> str:
    if problem_type == "regression":
        return "a finite number"
    span = f"0..{num_labels - 1}" if num_labels is not None else "0 or more"
    if problem_type == "multi_label_classification":
        return f"comma-separated class indices like 0,3,5, each in {span}, none repeated"
    return f"an integer class index in {span}"


def parse_labels(
    values: Sequence[Any],
    problem_type: str,
    *,
    num_labels: int | None,
    label_names: Sequence[str] | None,
    file: str,
    field: str,
) -> list[Any]:
    """Parse a label column: int (single-label), sorted ``list[int]`` (multi-label) or float (regression).

    ``num_labels`` None means "not known yet" (inferred later): only non-negativity is checked.
    """
    parsed: list[Any] = []
    bad: list[tuple[int, str]] = []
    for row, value in enumerate(values, start=1):
        try:
            if is_missing(value) or (isinstance(value, str) and not value.strip()):
                raise ValueError("missing label")
            if problem_type == "regression":
                label: Any = _as_float(value)
            else:
                indices = (
                    _as_class_set(value, label_names)
                    if problem_type == "multi_label_classification"
                    else [_as_class_index(value, label_names)]
                )
                for index in indices:
                    if index < 0 or (num_labels is not None and index >= num_labels):
                        known = f" (data.num_labels={num_labels})" if num_labels is not None else ""
                        raise ValueError(f"class {index} is out of range{known}")
                label = indices if problem_type == "multi_label_classification" else indices[0]
        except (ValueError, TypeError) as error:
            bad.append((row, f"{error}; expected {_allowed_labels(problem_type, num_labels)}"))
            label = None
        parsed.append(label)
    _raise_first(bad, file=file, field=field, total=len(values))
    return parsed


def require_column(raw: pd.DataFrame, column: str, option: str, source: str) -> None:
    if column not in raw.columns:
        found = ", ".join(map(str, raw.columns)) or "none"
        raise DataError(
            f"no column '{column}' (columns found: {found}); set {option} to the column to use",
            file=source,
            field=column,
        )


VALIDATED = "protfit_validated"


def prepare_frame(
    raw: pd.DataFrame,
    *,
    split: str,
    source: str,
    cfg: DataConfig,
    label_required: bool,
    num_labels: int | None,
    label_names: list[str] | None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Validate one raw frame into the canonical columns; returns (frame, counts for the report)."""
    if len(raw) == 0:
        raise DataError("the file has no data rows", file=source)
    require_column(raw, cfg.sequence_column, "data.sequence_column", source)
    if label_required:
        require_column(raw, cfg.label_column, "data.label_column", source)

    sequences, mapped, mapped_rows = clean_sequences(
        raw[cfg.sequence_column].tolist(), cfg, file=source, field=cfg.sequence_column
    )
    residue_counts = [len(seq) for seq in sequences]
    structures: dict[str, list[str]] = {}
    for canonical, column, kind in (
        ("foldseek_seq", cfg.foldseek_column, "foldseek"),
        ("ss8_seq", cfg.ss8_column, "ss8"),
    ):
        if column in raw.columns:
            structures[canonical] = check_structure_strings(
                raw[column].tolist(), residue_counts, kind=kind, file=source, field=column
            )
    truncated = truncate(sequences, structures, cfg, file=source, field=cfg.sequence_column)

    rows = list(range(1, len(raw) + 1))
    names = [f"{split}_{row}" for row in rows]
    if cfg.name_column in raw.columns:
        names = [
            default if is_missing(value) or not str(value).strip() else str(value).strip()
            for value, default in zip(raw[cfg.name_column].tolist(), names, strict=True)
        ]
    frame = pd.DataFrame({"name": names, "aa_seq": sequences})
    if cfg.label_column in raw.columns:
        labels = parse_labels(
            raw[cfg.label_column].tolist(),
            cfg.problem_type,
            num_labels=num_labels,
            label_names=label_names,
            file=source,
            field=cfg.label_column,
        )
        if cfg.problem_type == "multi_label_classification":
            frame["label"] = pd.Series(labels, dtype=object)
        else:
            frame["label"] = pd.Series(
                labels, dtype="int64" if cfg.problem_type != "regression" else "float64"
            )
    frame["row"] = rows
    for canonical, strings in structures.items():
        frame[canonical] = strings
    counts = {"rows": len(frame), "truncated": truncated, "residues_mapped_to_x": mapped}
    counts["rows_mapped_to_x"] = mapped_rows if cfg.unknown_residues == "map_to_x" else 0
    frame.attrs[VALIDATED] = True  # lets the Python API skip re-validating loader output
    return frame, counts
