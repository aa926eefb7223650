"""EmbeddingCache: stored features equal a fresh forward pass; every key part invalidates; writes are atomic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from protfit.data.batching import EncodedDataset, ProteinCollator, build_dataloader
from protfit.models.embedding_cache import (
    CachedFeatureCollator,
    CachedFeatureDataset,
    EmbeddingCache,
    feature_kind,
    uses_embedding_cache,
)
from protfit.models.methods import apply_method
from protfit.models.protein_model import build_model

rng = np.random.default_rng(0)
SEQUENCES = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=n)) for n in (12, 40, 7, 25, 33, 18, 50)]


def frozen(cfg):
    return apply_method(build_model(cfg, 2), cfg, total_steps=1)


def test_kind_follows_the_pooler(make_config):
    assert feature_kind(frozen(make_config(method="freeze", pooler="mean"))) == "pooled"
    assert feature_kind(frozen(make_config(method="freeze", pooler="cls"))) == "pooled"
    for pooler in ("attention1d", "light_attention", "flatten"):
        assert feature_kind(frozen(make_config(method="freeze", pooler=pooler))) == "residues"


def test_only_a_frozen_backbone_without_adapter_is_cached(make_config):
    assert uses_embedding_cache(frozen(make_config(method="freeze")), make_config(method="freeze"))
    off = make_config(method="freeze", embedding_cache=False)
    assert not uses_embedding_cache(frozen(off), off)
    full = make_config(method="full")
    assert not uses_embedding_cache(frozen(full), full)
    adapted = frozen(make_config(method="freeze"))
    adapted.adapter = nn.Identity()  # what a structure adapter method attaches
    assert not uses_embedding_cache(adapted, make_config(method="freeze"))
    onehot = make_config(name="onehot", method="freeze")
    assert not uses_embedding_cache(frozen(onehot), onehot)


def _live_eval_batches(model, cfg, tokenized):
    dataset = EncodedDataset(pd.DataFrame({"aa_seq": SEQUENCES}), tokenized, "regression", 1)
    loader = build_dataloader(
        dataset,
        cfg.data,
        shuffle=False,
        seed=0,
        collator=ProteinCollator(model.backbone.pad_token_id, "regression", 1),
    )
    return list(loader)


@pytest.mark.parametrize("pooler", ["light_attention", "mean"])
def test_cached_features_equal_a_fresh_forward_at_float16(make_config, tmp_path, pooler):
    cfg = make_config(method="freeze", pooler=pooler)
    model = frozen(cfg)
    tokenized = model.backbone.tokenize(SEQUENCES)
    cached = EmbeddingCache(model, cfg, root=tmp_path).get_or_build(tokenized, cfg.data)
    assert not cached.hit and cached.features.dtype == np.float16
    offsets = cached.offsets
    with torch.no_grad():
        # the same (evaluation) batching as the build: bit-identical after rounding to float16
        for batch in _live_eval_batches(model, cfg, tokenized):
            hidden = model.backbone(batch["input_ids"], batch["attention_mask"])
            if cached.kind == "pooled":
                hidden = model.pooler(hidden, batch["residue_mask"])
            for row, index in enumerate(batch["index"].tolist()):
                if cached.kind == "pooled":
                    stored, fresh = cached.features[index], hidden[row]
                else:
                    length = len(tokenized[index].input_ids)
                    stored, fresh = cached.features[offsets[index] : offsets[index + 1]], hidden[row, :length]
                    assert np.array_equal(
                        cached.residue_mask[offsets[index] : offsets[index + 1]],
                        np.asarray(tokenized[index].residue_mask, dtype=bool),
                    )
                assert np.array_equal(stored, fresh.half().numpy())
        # and each sequence alone agrees to float16 precision
        ids = torch.tensor([tokenized[1].input_ids])
        alone = model.backbone(ids, torch.ones_like(ids)).squeeze(0)
        if cached.kind == "residues":
            stored = torch.from_numpy(np.asarray(cached.features[offsets[1] : offsets[2]], dtype=np.float32))
            assert torch.allclose(stored, alone, rtol=2**-10, atol=1e-3)


def test_second_lookup_is_a_hit_without_backbone_calls(make_config, tmp_path, monkeypatch):
    cfg = make_config(method="freeze", pooler="attention1d")
    model = frozen(cfg)
    tokenized = model.backbone.tokenize(SEQUENCES)
    first = EmbeddingCache(model, cfg, root=tmp_path).get_or_build(tokenized, cfg.data)
    calls = []
    monkeypatch.setattr(type(model.backbone), "forward", lambda *a, **k: calls.append(1))
    second = EmbeddingCache(model, cfg, root=tmp_path).get_or_build(tokenized, cfg.data)
    assert second.hit and not first.hit and calls == []
    assert second.folder == first.folder and second.size_bytes > 0
    assert np.array_equal(second.features, first.features)


def test_every_key_part_invalidates(make_config, tmp_path):
    cfg = make_config(method="freeze", pooler="attention1d")
    model = frozen(cfg)
    tokenized = model.backbone.tokenize(SEQUENCES)
    EmbeddingCache(model, cfg, root=tmp_path).get_or_build(tokenized, cfg.data)
    assert EmbeddingCache(model, cfg, root=tmp_path).lookup(tokenized) is not None

    # other sequences, or the same ones in another order
    assert EmbeddingCache(model, cfg, root=tmp_path).lookup(model.backbone.tokenize(SEQUENCES[::-1])) is None
    changed = [*SEQUENCES[:-1], SEQUENCES[-1][:-1] + "W"]
    assert EmbeddingCache(model, cfg, root=tmp_path).lookup(model.backbone.tokenize(changed)) is None
    # another max_seq_len, even when it truncates nothing here
    longer = make_config(method="freeze", pooler="attention1d", max_seq_len=100)
    assert EmbeddingCache(frozen(longer), longer, root=tmp_path).lookup(tokenized) is None
    # pooled vectors of another parameter-free pooler
    mean, cls = make_config(method="freeze", pooler="mean"), make_config(method="freeze", pooler="cls")
    EmbeddingCache(frozen(mean), mean, root=tmp_path).get_or_build(tokenized, mean.data)
    assert EmbeddingCache(frozen(mean), mean, root=tmp_path).lookup(tokenized) is not None
    assert EmbeddingCache(frozen(cls), cls, root=tmp_path).lookup(tokenized) is None
    # changed weights under the same name (a re-saved checkpoint)
    with torch.no_grad():
        next(model.backbone.parameters()).add_(1e-3)
    assert EmbeddingCache(model, cfg, root=tmp_path).lookup(tokenized) is None


def test_an_interrupted_build_leaves_no_entry(make_config, tmp_path, monkeypatch):
    cfg = make_config(method="freeze", pooler="attention1d")
    model = frozen(cfg)
    tokenized = model.backbone.tokenize(SEQUENCES)
    original, calls = type(model.backbone).forward, []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(type(model.backbone), "forward", failing)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"batch_size": 2})})
    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache(model, cfg, root=tmp_path).get_or_build(tokenized, cfg.data)
    assert list((tmp_path / "embeddings").iterdir()) == []
    assert EmbeddingCache(model, cfg, root=tmp_path).lookup(tokenized) is None


def test_values_beyond_float16_are_stored_as_float32(make_config, tmp_path, monkeypatch):
    cfg = make_config(method="freeze", pooler="attention1d")
    model = frozen(cfg)
    original = type(model.backbone).forward
    monkeypatch.setattr(type(model.backbone), "forward", lambda self, *a: original(self, *a) * 1e6)
    cached = EmbeddingCache(model, cfg, root=tmp_path).get_or_build(
        model.backbone.tokenize(SEQUENCES), cfg.data
    )
    assert cached.features.dtype == np.float32 and np.isfinite(cached.features).all()


@pytest.mark.parametrize("budget", [None, 60])
def test_cached_batches_hold_every_sample_once_per_epoch_like_token_batches(make_config, tmp_path, budget):
    cfg = make_config(method="freeze", pooler="light_attention")
    data = cfg.data.model_copy(update={"batch_size": 3, "max_tokens_per_batch": budget})
    cfg = cfg.model_copy(update={"data": data})
    model = frozen(cfg)
    tokenized = model.backbone.tokenize(SEQUENCES)
    frame = pd.DataFrame({"aa_seq": SEQUENCES, "label": [0, 1, 0, 1, 1, 0, 1]})
    tokens = build_dataloader(
        EncodedDataset(frame, tokenized, "single_label_classification", 2),
        cfg.data,
        shuffle=True,
        seed=5,
        collator=ProteinCollator(model.backbone.pad_token_id, "single_label_classification", 2),
    )
    cached = EmbeddingCache(model, cfg, root=tmp_path).get_or_build(tokenized, cfg.data)
    loader = build_dataloader(
        CachedFeatureDataset(cached, frame["label"].tolist()),
        cfg.data,
        shuffle=True,
        seed=5,
        collator=CachedFeatureCollator("single_label_classification", 2),
    )
    for epoch in range(3):
        tokens.batch_sampler.set_epoch(epoch)
        loader.batch_sampler.set_epoch(epoch)
        token_batches = [batch["index"].tolist() for batch in tokens]
        batches = list(loader)
        assert [batch["index"].tolist() for batch in batches] == token_batches
        assert sorted(i for batch in token_batches for i in batch) == list(range(len(SEQUENCES)))
        for batch in batches:
            assert batch["hidden_states"].dtype == torch.float32
            assert batch["hidden_states"].shape[:2] == batch["residue_mask"].shape
            assert batch["labels"].tolist() == [frame["label"][i] for i in batch["index"].tolist()]
