"""Sources and formats: folder discovery, explicit files, every file format, the hub, prediction inputs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import datasets
import pandas as pd
import pytest
from data_helpers import SEQS, config, rows

from protfit.data import DataError, load_dataset_splits, read_sequences, validate_sequences


def test_data_error_names_file_row_field_and_survives_pickling() -> None:
    error = DataError("unknown residue 'J' at position 5", file="train.csv", row=12, field="aa_seq")
    assert str(error) == "train.csv, row 12, field 'aa_seq': unknown residue 'J' at position 5"
    assert isinstance(error, ValueError)
    assert (error.file, error.row, error.field) == ("train.csv", 12, "aa_seq")
    copy = pickle.loads(pickle.dumps(error))  # DataLoader workers send errors back pickled
    assert str(copy) == str(error) and copy.row == 12
    assert str(DataError("plain")) == "plain"


def test_folder_discovery_gives_canonical_frames(write_splits) -> None:
    folder = write_splits(test=rows([0, 1], SEQS[:2]))
    splits = load_dataset_splits(config(folder))
    assert [split.name for split in splits.present()] == ["train", "validation", "test"]
    frame = splits.train.frame
    assert list(frame.columns) == ["name", "aa_seq", "label", "row"]
    assert frame["row"].tolist() == [1, 2, 3, 4]
    assert frame["label"].tolist() == [0, 1, 0, 1]
    assert splits.train.source == str(folder / "train.csv")
    assert splits.num_labels == 2 and splits.problem_type == "single_label_classification"
    json.dumps(splits.report)  # goes into summary.json as is


def test_test_split_is_optional(write_splits) -> None:
    splits = load_dataset_splits(config(write_splits()))
    assert splits.test is None
    assert "test" not in splits.report["rows"]


@pytest.mark.parametrize("stem", ["valid", "val", "dev"])
def test_validation_aliases(tmp_path: Path, stem: str) -> None:
    rows([0, 1, 0, 1], SEQS[:4]).to_csv(tmp_path / "train.csv", index=False)
    rows([1, 0], SEQS[4:6]).to_csv(tmp_path / f"{stem}.csv", index=False)
    assert len(load_dataset_splits(config(tmp_path)).validation) == 2


def test_missing_validation_lists_what_the_folder_holds(tmp_path: Path) -> None:
    rows([0, 1]).to_csv(tmp_path / "train.csv", index=False)
    rows([0, 1]).to_csv(tmp_path / "test.csv", index=False)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError) as caught:
        load_dataset_splits(config(tmp_path))
    message = str(caught.value)
    assert "no validation file" in message and "valid.*" in message
    assert "train.csv, test.csv" in message or ("train.csv" in message and "test.csv" in message)
    assert "data.validation_file" in message


def test_two_train_files_are_ambiguous(write_splits) -> None:
    folder = write_splits()
    rows([0, 1]).to_parquet(folder / "train.parquet")
    with pytest.raises(DataError, match=r"several train files.*train.csv, train.parquet"):
        load_dataset_splits(config(folder))


def test_explicit_files_relative_to_folder(tmp_path: Path) -> None:
    rows([0, 1, 0, 1], SEQS[:4]).to_csv(tmp_path / "fold1_tr.csv", index=False)
    rows([1, 0], SEQS[4:6]).to_csv(tmp_path / "fold1_va.csv", index=False)
    cfg = config(tmp_path, train_file="fold1_tr.csv", validation_file="fold1_va.csv")
    splits = load_dataset_splits(cfg)
    assert len(splits.train) == 4 and splits.validation.source.endswith("fold1_va.csv")
    with pytest.raises(DataError, match=r"nope.csv: file not found \(from data.test_file\)"):
        load_dataset_splits(cfg.model_copy(update={"test_file": "nope.csv"}))


def test_path_that_is_neither_folder_nor_hub_id(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither a local folder nor a Hugging Face dataset id"):
        load_dataset_splits(config(tmp_path / "missing" / "deeper" / "x"))


def _write(frame: pd.DataFrame, path: Path) -> None:
    fmt = path.suffix.lstrip(".")
    if fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:  # FASTA, documented header convention ">NAME label=3"
        path.write_text(
            "".join(f">{n} label={y}\n{s[:5]}\n{s[5:]}\n" for n, s, y in frame.itertuples(index=False))
        )


@pytest.mark.parametrize("extension", ["tsv", "json", "jsonl", "parquet", "fasta", "fa", "faa"])
def test_every_file_format(tmp_path: Path, extension: str) -> None:
    _write(rows([0, 1, 0, 1], SEQS[:4]), tmp_path / f"train.{extension}")
    _write(rows([1, 0], SEQS[4:6]), tmp_path / f"validation.{extension}")
    splits = load_dataset_splits(config(tmp_path))
    assert splits.train.frame["aa_seq"].tolist() == SEQS[:4]
    assert splits.train.frame["label"].tolist() == [0, 1, 0, 1]
    assert splits.train.frame["name"].tolist() == ["p0", "p1", "p2", "p3"]


def test_multi_label_lists_from_parquet_and_json(tmp_path: Path) -> None:
    frame = rows([[0, 2], [1], [2, 0], [1, 2]], SEQS[:4])
    frame.to_parquet(tmp_path / "train.parquet")
    _write(rows([[0], [1, 2]], SEQS[4:6]), tmp_path / "validation.json")
    splits = load_dataset_splits(config(tmp_path, "multi_label_classification"))
    assert splits.train.frame["label"].tolist() == [[0, 2], [1], [0, 2], [1, 2]]
    assert splits.validation.frame["label"].tolist() == [[0], [1, 2]]


def test_peptide_na_is_a_sequence_not_missing(write_splits) -> None:
    folder = write_splits(train=rows([0, 1, 0, 1], ["NA", "NAN", "MK", "GG"]))
    assert load_dataset_splits(config(folder)).train.frame["aa_seq"].tolist()[:2] == ["NA", "NAN"]


def test_names_default_to_split_and_row(write_splits) -> None:
    folder = write_splits(train=rows([0, 1, 0, 1], SEQS[:4]).drop(columns="name"))
    assert load_dataset_splits(config(folder)).train.frame["name"].tolist() == [
        "train_1",
        "train_2",
        "train_3",
        "train_4",
    ]


def _dataset_dict(with_class_label: bool) -> datasets.DatasetDict:
    features = datasets.Features(
        {
            "aa_seq": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["soluble", "membrane"])
            if with_class_label
            else datasets.Value("int64"),
        }
    )
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"aa_seq": SEQS[:4], "label": [0, 1, 0, 1]}, features=features
            ),
            "valid": datasets.Dataset.from_dict({"aa_seq": SEQS[4:6], "label": [1, 0]}, features=features),
        }
    )


def test_hub_id_through_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    requested = []

    def fake_load_dataset(name: str, *args, **kwargs):
        requested.append(name)
        return _dataset_dict(with_class_label=True)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    splits = load_dataset_splits(config("someone/solubility"))
    assert requested == ["someone/solubility"]
    assert splits.train.source == "someone/solubility:train"
    assert splits.validation.source == "someone/solubility:valid"
    assert splits.label_names == ["soluble", "membrane"]  # taken from the ClassLabel feature
    assert splits.train.frame["name"].tolist()[0] == "train_1"


def test_hub_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str, *args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        DataError, match="could not load the Hugging Face dataset 'someone/x': hub unreachable"
    ):
        load_dataset_splits(config("someone/x"))


def test_hub_dataset_without_validation_split(monkeypatch: pytest.MonkeyPatch) -> None:
    only_train = datasets.DatasetDict({"train": _dataset_dict(False)["train"]})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *a, **k: only_train)
    with pytest.raises(DataError, match=r"no validation split \(splits found: train\)"):
        load_dataset_splits(config("someone/x"))


def test_folder_saved_with_datasets(tmp_path: Path) -> None:
    _dataset_dict(with_class_label=False).save_to_disk(str(tmp_path / "saved"))
    splits = load_dataset_splits(config(tmp_path / "saved"))
    assert len(splits.train) == 4 and splits.validation.frame["label"].tolist() == [1, 0]


def test_read_sequences_fasta_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "query.fasta"
    path.write_text(">q1 some description\nMKT\nAYI\n>q2\nmktx\n")
    frame = read_sequences(path, config(tmp_path))
    assert frame["name"].tolist() == ["q1", "q2"]
    assert frame["aa_seq"].tolist() == ["MKTAYI", "MKTX"]
    assert frame["row"].tolist() == [1, 2]
    assert "label" not in frame.columns


def test_read_sequences_validates_labels_when_present(tmp_path: Path) -> None:
    path = tmp_path / "query.csv"
    rows([0, 5], SEQS[:2]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"query.csv, row 2, field 'label': class 5 is out of range"):
        read_sequences(path, config(tmp_path), num_labels=2)
    assert read_sequences(path, config(tmp_path))["label"].tolist() == [0, 5]


def test_read_sequences_checks_residues_and_truncates(tmp_path: Path) -> None:
    path = tmp_path / "query.tsv"
    pd.DataFrame({"aa_seq": ["MKTAYIAKQR", "MKJ"]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(DataError, match=r"row 2, field 'aa_seq': unknown residue 'J' at position 3"):
        read_sequences(path, config(tmp_path))
    frame = read_sequences(path, config(tmp_path, unknown_residues="map_to_x", max_seq_len=4))
    assert frame["aa_seq"].tolist() == ["MKTA", "MKX"]
    assert frame["name"].tolist() == ["seq_1", "seq_2"]


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "q.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        read_sequences(tmp_path / "q.xlsx", config(tmp_path))


def test_csv_with_byte_order_mark(write_splits) -> None:
    folder = write_splits()
    text = (folder / "train.csv").read_text()
    (folder / "train.csv").write_text("\ufeff" + text, encoding="utf-8")
    assert load_dataset_splits(config(folder)).train.frame["name"].tolist()[0] == "p0"


def test_read_sequences_ignores_an_empty_label_column(tmp_path: Path) -> None:
    path = tmp_path / "query.csv"
    path.write_text("aa_seq,label\nMKT,\nGGA,\n")
    frame = read_sequences(path, config(tmp_path))
    assert "label" not in frame.columns and frame["aa_seq"].tolist() == ["MKT", "GGA"]


def test_validate_sequences_for_in_memory_frames(tmp_path: Path) -> None:
    cfg = config(tmp_path, sequence_column="sequence", max_seq_len=3)  # file column names do not matter here
    frame = validate_sequences(pd.DataFrame({"aa_seq": ["mkta", "GG"]}), cfg)
    assert frame["aa_seq"].tolist() == ["MKT", "GG"] and frame["name"].tolist() == ["seq_1", "seq_2"]
    with pytest.raises(DataError, match=r"^sequences, row 2, field 'aa_seq': unknown residue 'J'"):
        validate_sequences(pd.DataFrame({"aa_seq": ["MK", "MJ"]}), cfg)


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("query.csv", "aa_seq,label,label\nMKTAYI,0,1\n"),
        ("query.tsv", "aa_seq\tlabel\tlabel\nMKTAYI\t0\t1\n"),
        ("query.json", '[{"aa_seq": "MKTAYI", "label": 0, "label": 1}]'),
        ("query.jsonl", '{"aa_seq": "MKTAYI", "label": 0, "label": 1}\n'),
    ],
)
def test_duplicated_columns_are_refused_not_dropped(tmp_path: Path, filename: str, content: str) -> None:
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{filename}, field 'label': column 'label' appears 2 times"):
        read_sequences(path, config(tmp_path))


def test_duplicated_parquet_columns_and_fasta_keys_are_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        [pa.array(["MKTAYI"]), pa.array(["0"]), pa.array(["1"])], names=["aa_seq", "label", "label"]
    )
    pq.write_table(table, tmp_path / "query.parquet")
    with pytest.raises(DataError, match="query.parquet, field 'label': column 'label' appears 2 times"):
        read_sequences(tmp_path / "query.parquet", config(tmp_path))
    (tmp_path / "query.fasta").write_text(">q1 label=0\nMKT\n>q2 label=0 label=1\nMKT\n")
    with pytest.raises(DataError, match="query.fasta, row 2, field 'label': 'label=' appears twice"):
        read_sequences(tmp_path / "query.fasta", config(tmp_path))
