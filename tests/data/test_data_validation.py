"""Every data problem stops with a DataError naming file, row and field, and every policy does what it says."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from data_helpers import SEQS, config, rows

from protfit.data import DataError, load_dataset_splits

# ----------------------------------------------------------------------------- sequences


def test_unknown_residue_names_row_position_letter_and_count(write_splits) -> None:
    seqs = ["MKTAYIAKQR", "MKTAJIAK", "MKB", "MK1Z"]
    folder = write_splits(train=rows([0, 1, 0, 1], seqs))
    with pytest.raises(DataError) as caught:
        load_dataset_splits(config(folder))
    error = caught.value
    assert (Path(error.file).name, error.row, error.field) == ("train.csv", 2, "aa_seq")
    message = str(error)
    assert message.startswith(
        f"{folder / 'train.csv'}, row 2, field 'aa_seq': unknown residue 'J' at position 5"
    )
    assert "2 of 4 rows" in message  # J and the digit; B and Z are allowed IUPAC codes
    assert message.endswith("set data.unknown_residues=map_to_x to map unknown letters to X")


def test_stop_codon_gets_a_specific_hint(write_splits) -> None:
    folder = write_splits(train=rows([0, 1, 0, 1], ["MKT*", *SEQS[1:4]]))
    with pytest.raises(
        DataError, match=r"row 1.*unknown residue '\*' at position 4 \('\*' marks a stop codon"
    ):
        load_dataset_splits(config(folder))


def test_map_to_x_maps_and_counts(write_splits) -> None:
    folder = write_splits(train=rows([0, 1, 0, 1], ["MKJJ", "MK-A", "UOBZX", "mkt aa"]))
    splits = load_dataset_splits(config(folder, unknown_residues="map_to_x"))
    assert splits.train.frame["aa_seq"].tolist() == ["MKXX", "MKXA", "UOBZX", "MKTAA"]
    assert splits.report["residues_mapped_to_x"] == {"train": 3, "validation": 0}
    assert splits.report["rows_mapped_to_x"] == {"train": 2, "validation": 0}


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_or_missing_sequence(write_splits, bad: str) -> None:
    folder = write_splits(validation=rows([1, 0], ["MKT", bad]))
    with pytest.raises(DataError, match=r"validation.csv, row 2, field 'aa_seq': empty or missing sequence"):
        load_dataset_splits(config(folder))


def test_missing_sequence_column_lists_columns(write_splits) -> None:
    renamed = {"aa_seq": "sequence"}
    folder = write_splits(rows([0, 1, 0, 1]).rename(columns=renamed), rows([1, 0]).rename(columns=renamed))
    with pytest.raises(DataError) as caught:
        load_dataset_splits(config(folder))
    assert "train.csv, field 'aa_seq': no column 'aa_seq' (columns found: name, sequence, label)" in str(
        caught.value
    )
    assert "data.sequence_column" in str(caught.value)
    splits = load_dataset_splits(config(folder, sequence_column="sequence"))
    assert "aa_seq" in splits.train.frame.columns  # canonical name whatever the source column


def test_missing_label_column(write_splits) -> None:
    folder = write_splits(validation=rows([1, 0]).drop(columns="label"))
    with pytest.raises(
        DataError, match=r"validation.csv, field 'label': no column 'label'.*data.label_column"
    ):
        load_dataset_splits(config(folder))


# ----------------------------------------------------------------------------- truncation


def test_truncation_keep_start_counts(write_splits) -> None:
    folder = write_splits(train=rows([0, 1, 0, 1], ["MKTAYIAKQR", "MKT", "GSHMLEDPVA", "AC"]))
    splits = load_dataset_splits(config(folder, max_seq_len=5))
    assert splits.train.frame["aa_seq"].tolist() == ["MKTAY", "MKT", "GSHML", "AC"]
    assert splits.report["truncated"] == {"train": 2, "validation": 2}


def test_truncation_error_mode(write_splits) -> None:
    folder = write_splits(train=rows([0, 1, 0, 1], ["MKT", "MKTAYIAKQR", "GSHMLEDPVA", "AC"]))
    with pytest.raises(DataError) as caught:
        load_dataset_splits(config(folder, max_seq_len=5, truncation="error"))
    assert caught.value.row == 2
    assert "10 residues, more than data.max_seq_len=5 (2 rows" in str(caught.value)
    assert "data.truncation=keep_start" in str(caught.value)


def test_no_length_limit(write_splits) -> None:
    long = "M" * 3000
    folder = write_splits(train=rows([0, 1, 0, 1], [long, *SEQS[1:4]]))
    assert load_dataset_splits(config(folder, max_seq_len=None)).train.frame["aa_seq"][0] == long


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("2.5", r"'2.5' is not a whole number"),
        ("abc", r"'abc' is not a class index"),
        ("-1", r"class -1 is out of range"),
        ("", r"missing label"),
    ],
)
def test_bad_single_labels(write_splits, label: str, expected: str) -> None:
    folder = write_splits(train=rows(["0", "1", label, "1"]))
    with pytest.raises(DataError, match=rf"train.csv, row 3, field 'label': {expected}.*integer class index"):
        load_dataset_splits(config(folder))


def test_label_out_of_range_names_allowed_range(write_splits) -> None:
    folder = write_splits(validation=rows([1, 3]))
    with pytest.raises(
        DataError, match=r"row 2, field 'label': class 3 is out of range \(data.num_labels=3\).*0..2"
    ):
        load_dataset_splits(config(folder, num_labels=3))


def test_integral_floats_accepted_and_num_labels_inferred(write_splits) -> None:
    folder = write_splits(train=rows(["0.0", "4", "3.0", "1"]), validation=rows(["2", "0"]))
    splits = load_dataset_splits(config(folder))
    assert splits.train.frame["label"].tolist() == [0, 4, 3, 1]
    assert splits.num_labels == 5 and splits.report["num_labels_inferred"] is True
    assert splits.report["label_counts"]["train"] == [1, 1, 0, 1, 1]


def test_num_labels_from_label_names_and_names_as_labels(write_splits) -> None:
    folder = write_splits(train=rows(["soluble", "membrane", "0", "1"]))
    splits = load_dataset_splits(config(folder, label_names=["soluble", "membrane", "other"]))
    assert splits.num_labels == 3 and splits.report["num_labels_inferred"] is False
    assert splits.train.frame["label"].tolist() == [0, 1, 0, 1]


def test_single_class_in_train_is_an_error(write_splits) -> None:
    folder = write_splits(train=rows([2, 2, 2, 2]))
    with pytest.raises(DataError, match=r"train.csv, field 'label': every train row has the label 2"):
        load_dataset_splits(config(folder))


def test_multi_label_parsing(write_splits) -> None:
    folder = write_splits(train=rows(["3,17,42", "5", " 1 , 2 ", "[0, 42]"]), validation=rows(["1", "2,3"]))
    splits = load_dataset_splits(config(folder, "multi_label_classification"))
    assert splits.train.frame["label"].tolist() == [[3, 17, 42], [5], [1, 2], [0, 42]]
    assert splits.num_labels == 43


@pytest.mark.parametrize(
    ("label", "expected"),
    [("1,1", "class 1 is listed twice"), ("1,,2", "has an empty entry"), ("1,x", "'x' is not a class index")],
)
def test_bad_multi_labels(write_splits, label: str, expected: str) -> None:
    folder = write_splits(train=rows(["0", "1", label, "2"]))
    with pytest.raises(
        DataError, match=rf"row 3, field 'label': .*{expected}.*comma-separated class indices"
    ):
        load_dataset_splits(config(folder, "multi_label_classification"))


def test_regression_labels(write_splits) -> None:
    folder = write_splits(train=rows(["0.5", "1e-2", "-3", "2"]))
    splits = load_dataset_splits(config(folder, "regression"))
    assert splits.train.frame["label"].tolist() == [0.5, 0.01, -3.0, 2.0]
    assert splits.num_labels == 1
    for bad, expected in (("inf", "not a finite number"), ("high", "is not a number"), ("", "missing label")):
        folder = write_splits(train=rows(["0.5", bad, "1", "2"]))
        with pytest.raises(DataError, match=rf"row 2, field 'label': .*{expected}.*finite number"):
            load_dataset_splits(config(folder, "regression"))


def test_error_counts_all_bad_rows(write_splits) -> None:
    folder = write_splits(train=rows(["0", "x", "y", "1"]))
    with pytest.raises(DataError, match=r"row 2.*\(2 of 4 rows in this file have a problem in this field\)"):
        load_dataset_splits(config(folder))


# ----------------------------------------------------------------------------- structure strings


def _with_structure(
    column: str, train: list[str], validation: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    return rows([0, 1, 0, 1], SEQS[:4], **{column: train}), rows([1, 0], SEQS[4:6], **{column: validation})


def test_structure_columns_validated_and_kept(write_splits) -> None:
    train, validation = _with_structure("foldseek_seq", ["DVVLPAAQWD"] * 4, ["ACDEFGHIKL"] * 2)
    train["ss8_seq"] = ["HHHHEEE-CL"] * 4
    validation["ss8_seq"] = ["GGGIIITTSS", "BBBBBBBBBB"]
    splits = load_dataset_splits(config(write_splits(train, validation), max_seq_len=4))
    assert splits.train.frame["foldseek_seq"].tolist()[0] == "DVVL"  # truncated with the sequence
    assert splits.train.frame["ss8_seq"].tolist()[0] == "HHHH"


def test_lower_case_foldseek_gets_upper_hint(write_splits) -> None:
    train, validation = _with_structure(
        "foldseek_seq", ["DVVLPAAQWD", "dvvlpaaqwd", "DVVLPAAQWD", "DVVLPAAQWD"], ["A" * 10] * 2
    )
    with pytest.raises(DataError) as caught:
        load_dataset_splits(config(write_splits(train, validation)))
    assert (caught.value.row, caught.value.field) == (2, "foldseek_seq")
    assert "lower-case letter 'd' at position 1" in str(caught.value) and ".upper()" in str(caught.value)


def test_structure_length_must_match_sequence(write_splits) -> None:
    train, validation = _with_structure(
        "ss8_seq", ["H" * 10, "H" * 10, "H" * 10, "H" * 10], ["H" * 10, "H" * 9]
    )
    with pytest.raises(
        DataError, match=r"validation.csv, row 2, field 'ss8_seq': 9 structure letters for a sequence of 10"
    ):
        load_dataset_splits(config(write_splits(train, validation)))


def test_structure_alphabet(write_splits) -> None:
    train, validation = _with_structure("foldseek_seq", ["A" * 10] * 4, ["A" * 9 + "#", "A" * 10])
    with pytest.raises(
        DataError, match=r"row 1, field 'foldseek_seq': letter '#' at position 10 is not in the Foldseek"
    ):
        load_dataset_splits(config(write_splits(train, validation)))
    train, validation = _with_structure("ss8_seq", ["H" * 10] * 4, ["H" * 9 + "X", "H" * 10])
    with pytest.raises(DataError, match=r"letter 'X' at position 10 is not in the DSSP 8-state"):
        load_dataset_splits(config(write_splits(train, validation)))


def test_structure_column_in_some_splits_only(write_splits) -> None:
    train = rows([0, 1, 0, 1], SEQS[:4], foldseek_seq=["A" * 10] * 4)
    with pytest.raises(DataError) as caught:
        load_dataset_splits(config(write_splits(train=train)))
    assert caught.value.file.endswith("validation.csv") and caught.value.field == "foldseek_seq"
    assert "give it in every split or in none" in str(caught.value)


# ----------------------------------------------------------------------------- shared sequences


def test_shared_sequences_warned_and_reported(write_splits, caplog: pytest.LogCaptureFixture) -> None:
    train = rows([0, 1, 0, 1], SEQS[:4])
    validation = rows([1, 0], [SEQS[0], SEQS[4]])
    test = rows([0, 1, 0], [SEQS[0], SEQS[1], SEQS[4]])
    with caplog.at_level(logging.WARNING, logger="protfit"):
        splits = load_dataset_splits(config(write_splits(train, validation, test)))
    assert splits.report["shared_sequences"] == {"train/validation": 1, "train/test": 2, "validation/test": 2}
    warning = "\n".join(record.getMessage() for record in caplog.records)
    assert "train/validation 1, train/test 2, validation/test 2" in warning


def test_deeploc_loads_with_default_policy() -> None:
    folder = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "deeploc_localization"
    if not folder.is_dir():
        pytest.skip("shared deeploc data not present")
    splits = load_dataset_splits(config(folder))
    assert splits.num_labels == 11
    assert splits.train.frame["aa_seq"].str.len().max() == 1022
    assert splits.report["truncated"]["train"] > 0
