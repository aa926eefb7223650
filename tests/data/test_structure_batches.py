"""Structure strings in batches: token ids aligned to residue positions, only when the method reads them."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from protfit.config import ConfigError, ModelConfig, build_config
from protfit.data.batching import (
    STRUCTURE_VOCABULARIES,
    EncodedDataset,
    ProteinCollator,
    aligned_structure_ids,
)
from protfit.data.errors import DataError
from protfit.models.backbone import load_backbone

FRAME = pd.DataFrame(
    {
        "name": ["a", "b", "c"],
        "aa_seq": ["MKTAYIAKQR", "ACDEF", "WYVTSRQP"],
        "label": [0, 1, 0],
        "row": [1, 2, 3],
        "foldseek_seq": ["DVVLPDDQKW", "PCSQV", "ACDEFGHI"],
        "ss8_seq": ["HHHHEE-CLT", "GIBSS", "--CCLLHE"],
    }
)


def _batch(backbone, frame: pd.DataFrame, structure_inputs=()) -> dict[str, torch.Tensor]:
    dataset = EncodedDataset(
        frame,
        backbone.tokenize(frame["aa_seq"].tolist()),
        "single_label_classification",
        2,
        structure_inputs=structure_inputs,
        source="train.csv",
    )
    collator = ProteinCollator(backbone.pad_token_id, "single_label_classification", 2)
    return collator([dataset[index] for index in range(len(dataset))])


@pytest.mark.parametrize("name", ["tiny-esm2", "tiny-bert", "tiny-t5"])
def test_structure_ids_sit_on_their_residues_tokens(name):
    backbone = load_backbone(ModelConfig(name=name))
    batch = _batch(backbone, FRAME, ["foldseek", "ss8"])
    assert batch["foldseek_ids"].shape == batch["input_ids"].shape == batch["ss8_ids"].shape
    assert batch["foldseek_ids"].dtype == torch.long
    for row, (sequence, foldseek, ss8) in enumerate(
        zip(FRAME["aa_seq"], FRAME["foldseek_seq"], FRAME["ss8_seq"], strict=True)
    ):
        residue_positions = batch["residue_mask"][row].nonzero().flatten().tolist()
        tokens = backbone.tokenizer.convert_ids_to_tokens(batch["input_ids"][row, residue_positions].tolist())
        # the token at each residue position is that residue: the alignment is checked against the tokenizer
        assert [token.lstrip("▁") for token in tokens] == list(sequence)
        for key, letters in (("foldseek", foldseek), ("ss8", ss8)):
            ids = batch[f"{key}_ids"][row]
            assert ids[residue_positions].tolist() == [STRUCTURE_VOCABULARIES[key][c] for c in letters]
            others = [p for p in range(ids.shape[0]) if p not in residue_positions]
            assert ids[others].eq(0).all()  # special tokens and padding are padding
    assert (batch["foldseek_ids"] > 0).eq(batch["residue_mask"]).all()


def test_the_coil_spellings_share_one_id_and_letters_have_distinct_ids():
    assert len({aligned_structure_ids(c, [1], "ss8")[0] for c in "-CL"}) == 1
    assert len(set(STRUCTURE_VOCABULARIES["foldseek"].values())) == 20
    assert aligned_structure_ids("AC", [0, 1, 1, 0], "foldseek") == [0, 1, 2, 0]


def test_batches_without_the_structure_method_are_unchanged():
    backbone = load_backbone(ModelConfig(name="tiny-esm2"))
    plain = _batch(backbone, FRAME.drop(columns=["foldseek_seq", "ss8_seq"]))
    with_columns = _batch(backbone, FRAME)
    assert (
        set(plain) == set(with_columns) == {"input_ids", "attention_mask", "residue_mask", "labels", "index"}
    )
    for key in plain:
        assert torch.equal(plain[key], with_columns[key])
    data = {"path": "x", "problem_type": "regression"}
    for method in ("freeze", "full"):
        cfg = build_config({"data": data, "model": {"name": "m", "method": method, "ses": {}}})
        assert cfg.model.structure_inputs == []


def test_only_the_selected_structure_inputs_are_carried():
    backbone = load_backbone(ModelConfig(name="tiny-esm2"))
    batch = _batch(backbone, FRAME, ["ss8"])
    assert "ss8_ids" in batch and "foldseek_ids" not in batch
    cfg = build_config(
        {
            "data": {"path": "x", "problem_type": "regression"},
            "model": {"name": "m", "method": "ses_adapter", "ses": {"structure_inputs": ["ss8"]}},
        }
    )
    assert cfg.model.structure_inputs == ["ss8"]


def test_a_missing_structure_column_names_the_column_file_and_option():
    backbone = load_backbone(ModelConfig(name="tiny-esm2"))
    with pytest.raises(DataError) as error:
        _batch(backbone, FRAME.drop(columns=["ss8_seq"]), ["foldseek", "ss8"])
    message = str(error.value)
    assert message.startswith("train.csv, field 'ss8_seq'")
    assert "model.ses.structure_inputs" in message and "data.ss8_column" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("dvvlpddqkw", "lower-case letter 'd'"), ("DVVLP", "5 structure letters for a sequence of 10")],
)
def test_unvalidated_frames_get_the_loader_checks(value, expected):
    # DataFrames handed to the Python API skip the loader; the dataset checks them the same way
    frame = FRAME.copy()
    frame.loc[0, "foldseek_seq"] = value
    with pytest.raises(DataError, match=expected):
        _batch(load_backbone(ModelConfig(name="tiny-esm2")), frame, ["foldseek"])


@pytest.mark.parametrize(
    ("ses", "expected"),
    [
        ({"structure_inputs": []}, "at least 1 item"),
        ({"structure_inputs": ["foldseek", "foldseek"]}, "lists an input twice"),
        ({"structure_inputs": ["dssp3"]}, "'foldseek' or 'ss8'"),
        ({"embedding_dim": 30, "num_heads": 4}, "not divisible"),
        ({"embedding_dim": 12, "num_heads": 4}, "must be even"),
    ],
)
def test_invalid_ses_settings_are_refused(ses, expected):
    with pytest.raises(ConfigError, match=expected):
        build_config(
            {
                "data": {"path": "x", "problem_type": "regression"},
                "model": {"name": "m", "method": "ses_adapter", "ses": ses},
            }
        )
