from __future__ import annotations

import pytest
import torch

from protfit.config import ModelConfig
from protfit.models.backbone import ALPHABET, OneHotBackbone, load_backbone
from protfit.models.sources import ModelError


def test_onehot_is_loaded_by_name_without_special_tokens_or_parameters():
    backbone = load_backbone(ModelConfig(name="onehot"))
    assert isinstance(backbone, OneHotBackbone)
    assert (backbone.family, backbone.hidden_size, backbone.has_cls_token) == ("onehot", 21, False)
    assert list(backbone.parameters()) == []
    (tokenized,) = backbone.tokenize(["ACX"])
    assert tokenized.input_ids == [0, 1, 20]
    assert tokenized.residue_mask == [1, 1, 1]


def test_rare_residues_are_x_and_unknown_letters_are_refused():
    backbone = OneHotBackbone()
    rare, x = backbone.tokenize(["BZUO", "XXXX"])
    assert rare == x
    with pytest.raises(ModelError, match="not 'J'"):
        backbone.tokenize(["MJK"])


def test_forward_is_one_hot_with_zero_padding_rows(encode_batch):
    backbone = OneHotBackbone()
    batch = encode_batch(backbone, ["ACDY", "W"])
    encoded = backbone(batch["input_ids"], batch["attention_mask"])
    assert encoded.shape == (2, 4, 21) and encoded.dtype == torch.float32
    assert encoded[0].argmax(-1).tolist() == [ALPHABET.index(res) for res in "ACDY"]
    assert encoded[0].sum(-1).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert encoded[1].sum(-1).tolist() == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("family", ["esm", "bert"])
def test_onehot_family_only_goes_with_the_onehot_model(family):
    with pytest.raises(ModelError, match="model.family"):
        load_backbone(ModelConfig(name="onehot", family=family))
    with pytest.raises(ModelError, match="goes with model.name 'onehot'"):
        load_backbone(ModelConfig(name="tiny-esm2", family="onehot"))
