from __future__ import annotations

import pytest
import torch

from protfit.config import ModelConfig
from protfit.models.backbone import load_backbone
from protfit.models.poolers import build_pooler
from protfit.models.protein_model import build_model
from protfit.models.sources import ModelError
from protfit.registry import POOLERS, RegistryError

HIDDEN = 8
EXPECTED_DIM = {
    "mean": HIDDEN,
    "attention1d": HIDDEN,
    "light_attention": 2 * HIDDEN,
    "cls": HIDDEN,
    "flatten": 6 * HIDDEN,
}


def _inputs(batch: int, length: int, residues: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    hidden = torch.randn(batch, length, HIDDEN)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for row, count in enumerate(residues):
        mask[row, 1 : 1 + count] = True  # position 0 plays the CLS token
    return hidden, mask


@pytest.mark.parametrize("name", sorted(EXPECTED_DIM))
def test_every_pooler_handles_batches_of_one_and_rows_without_residues(name, make_config):
    assert set(POOLERS) == set(EXPECTED_DIM)
    pooler = build_pooler(name, HIDDEN, make_config(max_seq_len=6)).train()
    assert pooler.output_dim == EXPECTED_DIM[name]
    hidden, mask = _inputs(1, 7, [5])
    hidden.requires_grad_(True)
    out = pooler(hidden, mask)
    assert out.shape == (1, EXPECTED_DIM[name])
    out.sum().backward()  # gradients flow for a batch of one, in training mode
    assert torch.isfinite(hidden.grad).all()
    hidden, mask = _inputs(3, 7, [5, 2, 0])
    hidden.requires_grad_(True)
    out = pooler(hidden, mask)
    assert out.shape == (3, EXPECTED_DIM[name]) and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(hidden.grad).all()


@pytest.mark.parametrize("name", ["mean", "attention1d", "light_attention", "flatten"])
def test_pooling_ignores_padding_and_special_tokens(name, make_config):
    pooler = build_pooler(name, HIDDEN, make_config(max_seq_len=6)).eval()
    hidden, mask = _inputs(2, 9, [3, 6])
    alone = pooler(hidden[:1, :5], mask[:1, :5])  # CLS + 3 residues + EOS, no padding
    hidden[0, 5:] = 100.0  # padding positions carry garbage in real encoders
    hidden[0, 0] = -50.0  # and so does the CLS position
    padded = pooler(hidden, mask)[:1]
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)


def test_mean_is_the_average_of_residues(make_config):
    pooler = build_pooler("mean", HIDDEN, make_config())
    hidden, mask = _inputs(1, 5, [3])
    torch.testing.assert_close(pooler(hidden, mask), hidden[:, 1:4].mean(dim=1))


def test_flatten_lays_residues_out_by_position(make_config):
    pooler = build_pooler("flatten", HIDDEN, make_config(max_seq_len=4))
    hidden, mask = _inputs(2, 6, [4, 2])
    grid = pooler(hidden, mask).view(2, 4, HIDDEN)
    torch.testing.assert_close(grid[0], hidden[0, 1:5])
    torch.testing.assert_close(grid[1, :2], hidden[1, 1:3])
    assert (grid[1, 2:] == 0).all()
    with pytest.raises(ModelError, match="holds 2 residues"):
        build_pooler("flatten", HIDDEN, make_config(max_seq_len=2))(hidden, mask)


def test_flatten_needs_max_seq_len_and_unknown_pooler_lists_choices(make_config):
    with pytest.raises(ModelError, match="needs data.max_seq_len"):
        build_pooler("flatten", HIDDEN, make_config(max_seq_len=None))
    with pytest.raises(RegistryError, match="choose from attention1d, cls, flatten, light_attention, mean"):
        build_pooler("max", HIDDEN, make_config())


def test_cls_pooler_reads_the_cls_position(make_config):
    hidden, mask = _inputs(2, 5, [3, 2])
    torch.testing.assert_close(build_pooler("cls", HIDDEN, make_config())(hidden, mask), hidden[:, 0])


@pytest.mark.parametrize("name", ["onehot", "tiny-t5"])
def test_cls_pooler_is_refused_without_a_cls_token(name, make_config):
    family = load_backbone(ModelConfig(name=name)).family
    with pytest.raises(ModelError, match=f"the {family} family has no CLS token"):
        build_model(make_config(name=name, pooler="cls"), num_labels=2)
