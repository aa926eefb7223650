"""Read train/validation/test data from files, a folder or the Hugging Face hub, validated once.

Supported file formats (by extension): ``csv``, ``tsv``, ``json`` (records), ``jsonl``, ``parquet`` and
FASTA (``fasta``, ``fa``, ``faa``). A FASTA header is ``>NAME key=value key=value ...``: the first word is
the name, and ``key=value`` words become columns, so with the default ``data.label_column`` a labelled
record reads ``>P12345 label=3`` (multi-label: ``>P12345 label=0,4,7``). FASTA without labels is fine for
prediction inputs.

Row numbers in errors are 1-based data rows: the CSV header line is not counted; in FASTA the n-th
``>`` record is row n.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from protfit.config import DataConfig
from protfit.data.errors import DataError
from protfit.data.validation import prepare_frame, require_column

logger = logging.getLogger("protfit")

SPLITS = ("train", "validation", "test")
SPLIT_STEMS = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
FORMATS = {
    "csv": "csv",
    "tsv": "tsv",
    "json": "json",
    "jsonl": "jsonl",
    "parquet": "parquet",
    "fasta": "fasta",
    "fa": "fasta",
    "faa": "fasta",
}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Split:
    """One validated split. ``frame`` columns: name, aa_seq, label (when labelled), row, [foldseek_seq, ss8_seq]."""

    name: str
    source: str
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class DatasetSplits:
    train: Split
    validation: Split
    test: Split | None
    problem_type: str
    num_labels: int
    label_names: list[str] | None
    report: dict[str, Any] = field(default_factory=dict)

    def present(self) -> list[Split]:
        """The splits that exist, in train/validation/test order."""
        return [split for split in (self.train, self.validation, self.test) if split is not None]


# --------------------------------------------------------------------------- reading one file


def _format_of(path: Path) -> str | None:
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1].lstrip(".")) if suffixes else None


def _read_fasta(path: Path, cfg: DataConfig) -> pd.DataFrame:
    # Hand-written: the format is a few lines of parsing and Biopython is not a dependency.
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    records: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    chunks: list[str] = []

    def flush() -> None:
        if current is not None:
            current[cfg.sequence_column] = "".join(chunks)
            records.append(current)

    with opener(path, "rt") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith(">"):
                flush()
                words = line[1:].split()
                current = {cfg.name_column: words[0]} if words else {}
                for word in words[1:]:
                    key, sep, value = word.partition("=")
                    if sep and key not in (cfg.name_column, cfg.sequence_column):
                        if key in current:
                            raise DataError(
                                f"'{key}=' appears twice in the header; keep one",
                                file=str(path),
                                row=len(records) + 1,
                                field=key,
                            )
                        current[key] = value
                chunks = []
            elif current is None:
                raise DataError(
                    "sequence text before the first '>' header; is this a FASTA file?", file=str(path)
                )
            else:
                chunks.append(line)
    flush()
    return pd.DataFrame.from_records(records)


def _refuse_duplicates(names: list[Any], path: Path) -> None:
    repeated = [str(name) for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise DataError(
            f"column '{repeated[0]}' appears {Counter(names)[repeated[0]]} times in the header; "
            "rename or remove the duplicate (only one of them could be used)",
            file=str(path),
            field=repeated[0],
        )


def _header_names(path: Path, fmt: str) -> list[Any] | None:
    """The column names as written in the file; pandas would rename a duplicate (`label.1`) or keep
    only the last of two equal JSON keys, so the duplicate must be caught before it reads the file."""
    if fmt in ("csv", "tsv"):
        header = pd.read_csv(
            path,
            sep="," if fmt == "csv" else "\t",
            header=None,
            nrows=1,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
        )
        return [] if header.empty else header.iloc[0].tolist()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if fmt in ("json", "jsonl") and path.suffix.lower() in (".json", ".jsonl", ".gz"):
        # Keys of every record, as parsed; object_pairs_hook sees a key written twice.
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            text = handle.read()
        documents = (
            [text] if text.lstrip().startswith("[") else [line for line in text.splitlines() if line.strip()]
        )

        def check(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            _refuse_duplicates([key for key, _ in pairs], path)
            return dict(pairs)

        for document in documents:
            try:
                json.loads(document, object_pairs_hook=check)
            except ValueError as error:
                if isinstance(error, DataError):
                    raise
                return None  # not parsable here: pandas reports it with its own reason
    return None


def read_table(path: Path, cfg: DataConfig) -> pd.DataFrame:
    """Read one data file into an unvalidated frame, every cell as written (CSV/TSV cells as text)."""
    fmt = _format_of(path)
    if fmt is None:
        raise DataError(f"unsupported file type; use one of {', '.join(sorted(FORMATS))}", file=str(path))
    if not path.is_file():
        raise DataError("file not found", file=str(path))
    try:
        names = _header_names(path, fmt)
        if names:
            _refuse_duplicates(names, path)
        if fmt in ("csv", "tsv"):
            # Text cells, and only empty cells missing: "NA" is a valid peptide (Asn-Ala), not a NaN.
            return pd.read_csv(
                path,
                sep="," if fmt == "csv" else "\t",
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8-sig",  # spreadsheet exports start with a byte-order mark
            )
        if fmt in ("json", "jsonl"):
            options = {"dtype": False, "convert_dates": False, "keep_default_dates": False}
            try:
                return pd.read_json(path, lines=fmt == "jsonl", **options)
            except ValueError:
                if fmt == "jsonl":
                    raise
                return pd.read_json(path, lines=True, **options)  # JSON lines saved as .json
        if fmt == "parquet":
            return pd.read_parquet(path)
        return _read_fasta(path, cfg)
    except DataError:
        raise
    # pandas/pyarrow raise many exception types; the user needs the file and the reason, not a traceback
    except Exception as error:
        raise DataError(f"could not read this {fmt} file: {error}", file=str(path)) from None


# --------------------------------------------------------------------------- finding the splits


def _discover(folder: Path) -> dict[str, Path]:
    found: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        stem, _, extension = path.name.lower().rpartition(".")
        if extension not in FORMATS:
            continue
        for split, stems in SPLIT_STEMS.items():
            if stem in stems:
                found[split].append(path)
    chosen: dict[str, Path] = {}
    for split, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(path.name for path in paths)
            raise DataError(
                f"several {split} files found ({names}); keep one or set data.{split}_file", file=str(folder)
            )
        if paths:
            chosen[split] = paths[0]
    return chosen


def _missing_split_error(folder: Path | None, split: str, found: dict[str, Path]) -> DataError:
    patterns = ", ".join(f"{stem}.*" for stem in SPLIT_STEMS[split])
    listing = ""
    if folder is not None and folder.is_dir():
        names = sorted(path.name for path in folder.iterdir())
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        listing = f"; the folder holds: {shown or 'nothing'}"
    return DataError(
        f"no {split} file (looked for {patterns} with extensions {', '.join(FORMATS)}){listing}; "
        f"add one or set data.{split}_file",
        file=str(folder) if folder is not None else None,
    )


def _resolve_explicit(name: str, folder: Path | None, option: str) -> Path:
    path = Path(name).expanduser()
    if not path.is_absolute() and not path.exists() and folder is not None and (folder / path).exists():
        path = folder / path
    if not path.is_file():
        raise DataError(f"file not found (from {option})", file=str(path))
    return path


def _read_local(cfg: DataConfig) -> dict[str, tuple[str, pd.DataFrame]]:
    folder = Path(cfg.path).expanduser()
    folder = folder if folder.is_dir() else None
    explicit = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
    found = _discover(folder) if folder is not None else {}
    paths: dict[str, Path] = {}
    for split in SPLITS:
        if explicit[split] is not None:
            paths[split] = _resolve_explicit(explicit[split], folder, f"data.{split}_file")
        elif split in found:
            paths[split] = found[split]
        elif split != "test":
            if folder is None:
                raise DataError(
                    f"data.path '{cfg.path}' is not a folder; give a folder with train/validation files "
                    f"or set data.{split}_file"
                )
            raise _missing_split_error(folder, split, found)
    return {split: (str(path), read_table(path, cfg)) for split, path in paths.items()}


def _read_hub(cfg: DataConfig) -> tuple[dict[str, tuple[str, pd.DataFrame]], list[str] | None]:
    """A Hugging Face dataset: a folder saved with ``save_to_disk`` or a hub id ``user/name``."""
    import datasets  # deferred: importing datasets costs ~1 s and most runs read local files

    local = Path(cfg.path).expanduser()
    try:
        if local.is_dir():
            loaded = datasets.load_from_disk(str(local))
        else:
            loaded = datasets.load_dataset(cfg.path)
    # network, auth, missing dataset: all end the same way for the user
    except Exception as error:
        hint = "" if local.is_dir() else f" (no local folder '{cfg.path}' exists either)"
        raise DataError(
            f"could not load the Hugging Face dataset '{cfg.path}': {error}{hint}; download it and point "
            "data.path at a local folder",
        ) from None
    if not isinstance(loaded, datasets.DatasetDict):
        raise DataError(f"'{cfg.path}' holds a single split; train and validation splits are needed")
    available = list(loaded.keys())
    chosen: dict[str, str] = {}
    for split in SPLITS:
        name = next((stem for stem in SPLIT_STEMS[split] if stem in loaded), None)
        if name is None and split != "test":
            raise DataError(
                f"the dataset '{cfg.path}' has no {split} split (splits found: {', '.join(available)})"
            )
        if name is not None:
            chosen[split] = name
    feature = loaded[chosen["train"]].features.get(cfg.label_column)
    label_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    frames = {split: (f"{cfg.path}:{name}", loaded[name].to_pandas()) for split, name in chosen.items()}
    return frames, label_names


def _read_splits(cfg: DataConfig) -> tuple[dict[str, tuple[str, pd.DataFrame]], list[str] | None]:
    local = Path(cfg.path).expanduser()
    explicit = any(name is not None for name in (cfg.train_file, cfg.validation_file, cfg.test_file))
    if not explicit and local.is_dir() and (local / "dataset_dict.json").is_file():
        return _read_hub(cfg)
    if explicit or local.exists():
        return _read_local(cfg), None
    if _HUB_ID.match(cfg.path):
        return _read_hub(cfg)
    raise DataError(
        f"data.path '{cfg.path}' is neither a local folder nor a Hugging Face dataset id (user/name)"
    )


# --------------------------------------------------------------------------- the public entry points


def read_labelled_frames(cfg: DataConfig) -> dict[str, tuple[str, pd.DataFrame]]:
    """Each split's (source, raw frame) as found, unvalidated, every one with the label column (a
    :class:`DataError` naming the file otherwise): what a look at the labels needs before the problem
    type is known (the web UI's guess, `protfit.data.problem_type`)."""
    raw, _ = _read_splits(cfg)
    for source, frame in raw.values():
        require_column(frame, cfg.label_column, "data.label_column", source)
    return raw


def _check_structure_columns(raw: dict[str, tuple[str, pd.DataFrame]], cfg: DataConfig) -> None:
    for column in (cfg.foldseek_column, cfg.ss8_column):
        having = [source for source, frame in raw.values() if column in frame.columns]
        lacking = [source for source, frame in raw.values() if column not in frame.columns]
        if having and lacking:
            raise DataError(
                f"structure column '{column}' is in {', '.join(having)} but not here; "
                "give it in every split or in none",
                file=lacking[0],
                field=column,
            )


def _infer_num_labels(cfg: DataConfig, frames: dict[str, Split], known: int | None) -> tuple[int, bool]:
    if cfg.problem_type == "regression":
        return 1, False
    if known is not None:
        return known, False
    highest = 0
    for split in frames.values():
        for label in split.frame["label"]:
            highest = max(highest, max(label) if isinstance(label, list) else label)
    return highest + 1, True


def _check_train_labels(split: Split, problem_type: str, label_column: str) -> None:
    labels = split.frame["label"]
    if problem_type == "regression":
        if labels.nunique() == 1:
            raise DataError(
                f"every train label equals {labels.iloc[0]}; there is nothing to learn",
                file=split.source,
                field=label_column,
            )
        return
    distinct = (
        {tuple(label) for label in labels} if problem_type == "multi_label_classification" else set(labels)
    )
    if len(distinct) == 1:
        only = next(iter(distinct))
        shown = ",".join(map(str, only)) if isinstance(only, tuple) else only
        raise DataError(
            f"every train row has the label {shown}; a classifier needs at least two classes in train",
            file=split.source,
            field=label_column,
        )


def _shared_sequences(splits: dict[str, Split]) -> dict[str, int]:
    sets = {name: set(split.frame["aa_seq"]) for name, split in splits.items()}
    return {f"{a}/{b}": len(sets[a] & sets[b]) for a, b in combinations(splits, 2)}


def load_dataset_splits(cfg: DataConfig) -> DatasetSplits:
    """Load and validate the train, validation and (optional) test splits named by ``cfg``.

    Sources, in this order: an explicit ``data.train_file``/``validation_file``/``test_file`` (paths
    relative to ``data.path`` are found there); files discovered in the folder ``data.path``
    (``train.*``; ``validation.*``, ``valid.*``, ``val.*`` or ``dev.*``; ``test.*``); a folder written
    by ``datasets.save_to_disk``; or a Hugging Face hub id ``user/name``. Every problem raises
    :class:`DataError` naming the file, the 1-based data row and the field.
    """
    raw, hub_label_names = _read_splits(cfg)
    _check_structure_columns(raw, cfg)
    label_names = cfg.label_names if cfg.label_names is not None else hub_label_names
    known = cfg.num_labels or (len(label_names) if label_names is not None else None)
    if cfg.problem_type == "regression":
        known = None

    splits: dict[str, Split] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, (source, frame) in raw.items():
        prepared, counts[name] = prepare_frame(
            frame,
            split=name,
            source=source,
            cfg=cfg,
            label_required=True,
            num_labels=known,
            label_names=label_names,
        )
        splits[name] = Split(name=name, source=source, frame=prepared)

    num_labels, inferred = _infer_num_labels(cfg, splits, known)
    _check_train_labels(splits["train"], cfg.problem_type, cfg.label_column)
    shared = _shared_sequences(splits)

    report: dict[str, Any] = {
        "sources": {name: split.source for name, split in splits.items()},
        "max_seq_len": cfg.max_seq_len,
        "num_labels": num_labels,
        "num_labels_inferred": inferred,
        "shared_sequences": shared,
        "duplicate_sequences_within": {
            name: int(split.frame["aa_seq"].duplicated().sum()) for name, split in splits.items()
        },
    }
    for key in ("rows", "truncated", "residues_mapped_to_x", "rows_mapped_to_x"):
        report[key] = {name: split_counts[key] for name, split_counts in counts.items()}
    if cfg.problem_type != "regression":
        report["label_counts"] = {name: _label_counts(split, num_labels) for name, split in splits.items()}

    empty = [
        index for index, count in enumerate(report.get("label_counts", {}).get("train", [])) if count == 0
    ]
    if empty:
        logger.warning(
            "classes %s have no train examples (num_labels=%d%s)",
            ", ".join(map(str, empty)),
            num_labels,
            ", inferred from the largest label; set data.num_labels if that is wrong" if inferred else "",
        )
    if any(shared.values()):
        logger.warning(
            "sequences shared between splits: %s; scores on shared sequences reward memorisation",
            ", ".join(f"{pair} {count}" for pair, count in shared.items()),
        )
    if any(report["truncated"].values()):
        logger.info("truncated to data.max_seq_len=%s residues: %s", cfg.max_seq_len, report["truncated"])
    if any(report["residues_mapped_to_x"].values()):
        logger.info("unknown residues mapped to X: %s", report["residues_mapped_to_x"])

    return DatasetSplits(
        train=splits["train"],
        validation=splits["validation"],
        test=splits.get("test"),
        problem_type=cfg.problem_type,
        num_labels=num_labels,
        label_names=list(label_names) if label_names is not None else None,
        report=report,
    )


def _label_counts(split: Split, num_labels: int) -> list[int]:
    counts = [0] * num_labels
    for label in split.frame["label"]:
        for index in label if isinstance(label, list) else [label]:
            counts[index] += 1
    return counts


def read_sequences(path: str | Path, cfg: DataConfig, *, num_labels: int | None = None) -> pd.DataFrame:
    """Read prediction inputs: FASTA, CSV/TSV, JSON/JSONL or parquet, labels optional.

    Returns a frame with columns ``name``, ``aa_seq``, ``row`` (and ``label``, ``foldseek_seq``,
    ``ss8_seq`` when the file has them), with the same residue checks and truncation as training data.
    ``num_labels`` (the trained model's) bounds the class indices when labels are present; it defaults
    to ``cfg.num_labels`` or the length of ``cfg.label_names``.
    """
    path = Path(path).expanduser()
    known = num_labels or cfg.num_labels or (len(cfg.label_names) if cfg.label_names else None)
    raw = read_table(path, cfg)
    if cfg.label_column in raw.columns and raw[cfg.label_column].isna().all():
        raw = raw.drop(columns=cfg.label_column)  # an empty label column is the same as none
    frame, counts = prepare_frame(
        raw,
        split="seq",
        source=str(path),
        cfg=cfg,
        label_required=False,
        num_labels=None if cfg.problem_type == "regression" else known,
        label_names=cfg.label_names,
    )
    if counts["truncated"]:
        logger.info("%s: %d sequences truncated to %s residues", path, counts["truncated"], cfg.max_seq_len)
    if counts["residues_mapped_to_x"]:
        logger.info("%s: %d unknown residues mapped to X", path, counts["residues_mapped_to_x"])
    frame.attrs["report"] = counts
    return frame


def validate_sequences(
    frame: pd.DataFrame, cfg: DataConfig, *, source: str = "sequences", num_labels: int | None = None
) -> pd.DataFrame:
    """The checks of :func:`read_sequences` for an in-memory frame with the canonical columns.

    ``frame`` holds ``aa_seq`` and optionally ``name``, ``label``, ``foldseek_seq``, ``ss8_seq`` (the
    Python API's plain sequence lists end up here); ``source`` names it in errors.
    """
    canonical = cfg.model_copy(
        update={
            "sequence_column": "aa_seq",
            "name_column": "name",
            "label_column": "label",
            "foldseek_column": "foldseek_seq",
            "ss8_column": "ss8_seq",
        }
    )
    known = num_labels or cfg.num_labels or (len(cfg.label_names) if cfg.label_names else None)
    prepared, _ = prepare_frame(
        frame.reset_index(drop=True),
        split="seq",
        source=source,
        cfg=canonical,
        label_required=False,
        num_labels=None if cfg.problem_type == "regression" else known,
        label_names=cfg.label_names,
    )
    return prepared
