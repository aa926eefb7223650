"""Sequence augmentation: the alphabet is kept, at most the configured share changes, crops keep the
special tokens; training batches only; a frozen run runs the backbone live instead of the cache."""

from __future__ import annotations

import torch
from reg_helpers import R, make_config

from protfit.plugins import Plugin
from protfit.regularization.augmentation import AMINO_ACIDS, substitution_probabilities
from protfit.training.setup import setup_run
from protfit.training.train import train


def augmenter(data, tmp_path, *overrides, name="tiny-esm2"):
    cfg = make_config(data, tmp_path, f"model.name={name}", R + "augmentation.enabled=true", *overrides)
    parts = setup_run(cfg)
    plugin = next(p for p in parts.plugins if p.name == "augmentation")
    return parts, plugin, next(iter(parts.loaders["train"]))


def residue_ids(parts):
    tokens = parts.model.backbone.tokenize([AMINO_ACIDS])[0]
    return {t for t, r in zip(tokens.input_ids, tokens.residue_mask, strict=True) if r}


def test_substitution_keeps_the_alphabet_and_the_share(classification_data, tmp_path):
    parts, plugin, batch = augmenter(
        classification_data,
        tmp_path,
        R + "augmentation.substitution_prob=1",
        R + "augmentation.substitution_rate=0.25",
    )
    torch.manual_seed(0)
    out = plugin.transform_batch(None, dict(batch))
    alphabet = residue_ids(parts)
    residues = batch["residue_mask"].bool()
    assert set(out["input_ids"][residues].tolist()) <= alphabet
    assert torch.equal(out["input_ids"][~residues], batch["input_ids"][~residues])  # specials, padding
    changed = (out["input_ids"] != batch["input_ids"]).sum(dim=1)
    assert torch.all(changed <= (0.25 * residues.sum(dim=1)).floor()) and changed.sum() > 0


def test_conservative_substitutions_only():
    table = substitution_probabilities()
    assert torch.allclose(table.sum(dim=1), torch.ones(20, dtype=table.dtype))
    assert torch.all(table.diagonal() == 0)
    i, l_, v, w = (AMINO_ACIDS.index(c) for c in "ILVW")
    assert table[i, l_] > 0 and table[i, v] > 0 and table[i, w] == 0  # I->L/V yes, I->W never


def test_masking_uses_the_mask_token_or_unknown(classification_data, tmp_path):
    for name, expected in (("tiny-esm2", "mask"), ("tiny-t5", "unk")):
        parts, plugin, batch = augmenter(
            classification_data,
            tmp_path,
            R + "augmentation.mask_prob=1",
            R + "augmentation.mask_rate=0.5",
            name=name,
        )
        tokenizer = parts.model.backbone.tokenizer
        token = tokenizer.mask_token_id if expected == "mask" else tokenizer.unk_token_id
        out = plugin.transform_batch(None, dict(batch))
        changed = out["input_ids"] != batch["input_ids"]
        assert set(out["input_ids"][changed].tolist()) == {token}
        assert torch.all(changed.sum(dim=1) <= (0.5 * batch["residue_mask"].sum(dim=1)).floor())


def test_crop_keeps_specials_and_a_contiguous_window(classification_data, tmp_path):
    _, plugin, batch = augmenter(
        classification_data,
        tmp_path,
        R + "augmentation.crop_prob=1",
        R + "augmentation.crop_min_fraction=0.5",
    )
    out = plugin.transform_batch(None, dict(batch))
    for row in range(batch["input_ids"].shape[0]):
        before = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        after = out["input_ids"][row][out["attention_mask"][row].bool()].tolist()
        assert after[0] == before[0] and after[-1] == before[-1]  # <cls> ... <eos>
        window = after[1:-1]
        assert len(window) >= 0.5 * (len(before) - 2)
        inner = before[1:-1]
        assert any(inner[i : i + len(window)] == window for i in range(len(inner) - len(window) + 1))
        assert out["residue_mask"][row].sum() == len(window)


class SeenBatches(Plugin):
    name = "seen"

    def __init__(self):
        self.training_ids = []

    def transform_batch(self, state, batch):
        self.training_ids.append(batch)
        return batch


def test_frozen_run_runs_the_backbone_live_and_evaluates_clean(classification_data, tmp_path):
    cfg = make_config(
        classification_data,
        tmp_path,
        R + "augmentation.enabled=true",
        R + "augmentation.mask_prob=1",
        R + "augmentation.mask_rate=0.5",
        method="freeze",
    )
    spy = SeenBatches()
    result = train(cfg, plugins=[spy])
    assert result.summary["embedding_cache"] is None
    mask = 32  # tiny-esm2's <mask>
    assert all((batch["input_ids"] == mask).any() for batch in spy.training_ids)  # training: augmented
