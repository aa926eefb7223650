from __future__ import annotations

import pytest
from safetensors.torch import load_file

from protfit.config import ModelConfig
from protfit.models import tiny
from protfit.models.aliases import list_aliases, resolve_model_source
from protfit.models.backbone import load_backbone


def test_tiny_aliases_are_registered():
    assert {"tiny-esm2", "tiny-bert", "tiny-t5"} <= set(list_aliases())


def test_tiny_alias_is_built_once_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTFIT_CACHE", str(tmp_path))
    folder = resolve_model_source("tiny-bert")
    assert folder == str(tmp_path / "tiny" / "tiny-bert")
    assert sorted(path.name for path in (tmp_path / "tiny").iterdir()) == [
        "tiny-bert"
    ]  # no staging left over

    def must_not_rebuild(*args, **kwargs):
        raise AssertionError("the tiny model was rebuilt")

    monkeypatch.setattr(tiny, "build_tiny_model", must_not_rebuild)
    assert resolve_model_source("TINY-BERT") == folder


def test_same_seed_same_weights_and_variants(tmp_path):
    first = load_file(tiny.build_tiny_model("esm", tmp_path / "a") / "model.safetensors")
    second = load_file(tiny.build_tiny_model("esm", tmp_path / "b") / "model.safetensors")
    assert first.keys() == second.keys()
    assert all((first[key] == second[key]).all() for key in first)
    other = load_file(tiny.build_tiny_model("esm", tmp_path / "c", seed=1) / "model.safetensors")
    assert not all((first[key] == other[key]).all() for key in first)

    wide = load_backbone(
        ModelConfig(name=str(tiny.build_tiny_model("t5", tmp_path / "t5", hidden_size=16, num_layers=1)))
    )
    assert (wide.hidden_size, wide.num_layers) == (16, 1)


def test_unknown_tiny_family():
    with pytest.raises(ValueError, match="choose from esm, bert, t5"):
        tiny.build_tiny_model("gpt", "unused")
