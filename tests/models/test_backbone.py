from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import transformers

from protfit.config import ModelConfig
from protfit.models import sources as sources_module
from protfit.models.backbone import STANDARD_RESIDUES, load_backbone
from protfit.models.sources import ModelError, resolve_model_or_fail
from protfit.models.tiny import build_tiny_model

SEQUENCE = "MKTAYIAKQRQISFVKSHFSRQ"
FAMILIES = [("tiny-esm2", "esm", True), ("tiny-bert", "bert", True), ("tiny-t5", "t5", False)]


@pytest.mark.parametrize(("name", "family", "has_cls"), FAMILIES)
def test_tiny_backbones_load_tokenize_and_encode(name, family, has_cls, encode_batch):
    backbone = load_backbone(ModelConfig(name=name))
    assert (backbone.family, backbone.has_cls_token, backbone.hidden_size, backbone.num_layers) == (
        family,
        has_cls,
        32,
        2,
    )
    assert backbone.encoder.config._attn_implementation == "sdpa"
    batch = encode_batch(backbone, [SEQUENCE, "ACDE"])
    hidden = backbone(batch["input_ids"], batch["attention_mask"])
    assert hidden.shape == (2, batch["input_ids"].shape[1], 32)
    assert torch.isfinite(hidden).all()


@pytest.mark.parametrize(("name", "piece"), [("tiny-esm2", "{}"), ("tiny-bert", "{}"), ("tiny-t5", "▁{}")])
def test_residue_mask_marks_exactly_the_residues(name, piece):
    backbone = load_backbone(ModelConfig(name=name))
    (tokenized,) = backbone.tokenize([SEQUENCE])
    tokens = backbone.tokenizer.convert_ids_to_tokens(tokenized.input_ids)
    residue_tokens = [token for token, mask in zip(tokens, tokenized.residue_mask, strict=True) if mask]
    special_tokens = [token for token, mask in zip(tokens, tokenized.residue_mask, strict=True) if not mask]
    assert residue_tokens == [piece.format(residue) for residue in SEQUENCE]
    assert special_tokens == ([backbone.tokenizer.cls_token] if backbone.has_cls_token else []) + [
        backbone.tokenizer.sep_token if name == "tiny-bert" else backbone.tokenizer.eos_token
    ]


@pytest.mark.parametrize("name", ["tiny-esm2", "tiny-bert", "tiny-t5"])
def test_no_residue_maps_to_the_unknown_token(name):
    backbone = load_backbone(ModelConfig(name=name))
    (tokenized,) = backbone.tokenize([STANDARD_RESIDUES + "X"])
    residue_ids = [
        token for token, mask in zip(tokenized.input_ids, tokenized.residue_mask, strict=True) if mask
    ]
    assert len(residue_ids) == 21
    assert backbone.tokenizer.unk_token_id not in residue_ids


def test_prot_t5_maps_rare_residues_to_x():
    backbone = load_backbone(ModelConfig(name="tiny-t5"))
    assert backbone.style == "prot_t5"
    rare, x = backbone.tokenize(["MUZOB", "MXXXX"])
    assert rare.input_ids == x.input_ids


def test_no_truncation_in_the_backbone():
    backbone = load_backbone(ModelConfig(name="tiny-esm2"))
    (tokenized,) = backbone.tokenize(["A" * 1500])
    assert sum(tokenized.residue_mask) == 1500


def test_family_is_detected_and_a_mismatch_is_refused():
    assert load_backbone(ModelConfig(name="tiny-bert", family="bert")).family == "bert"
    with pytest.raises(ModelError, match="model.family is 'bert' but 'tiny-esm2' is a 'esm' model"):
        load_backbone(ModelConfig(name="tiny-esm2", family="bert"))


def test_unsupported_architecture_lists_the_supported_families(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not-a-transformers-model"}))
    with pytest.raises(ModelError, match="'not-a-transformers-model' is not supported; supported families"):
        load_backbone(ModelConfig(name=str(tmp_path)))
    transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(
        ModelError, match="model type 'gpt2' is not supported; supported families: bert, esm, onehot, t5"
    ):
        load_backbone(ModelConfig(name=str(tmp_path)))


def test_missing_folder_and_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_backbone(ModelConfig(name=str(tmp_path / "no" / "such" / "model")))
    with pytest.raises(ModelError, match="has no config.json"):
        load_backbone(ModelConfig(name=str(tmp_path)))


def test_broken_model_folders_name_the_problem(tmp_path):
    folder = build_tiny_model("bert", tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"hidden_size": "wide"}))
    with pytest.raises(ModelError, match="cannot read the config of model .*hidden_size"):
        load_backbone(ModelConfig(name=str(folder)))
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="cannot load the weights of"):
        load_backbone(ModelConfig(name=str(folder)))


def test_unreachable_hub_gives_one_clear_message(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(ModelError, match="could not be found locally or downloaded") as caught:
        load_backbone(ModelConfig(name="facebook/esm2_t6_8M_UR50D"))
    assert "tiny-esm2" in str(caught.value)  # the offline alternatives are named
    assert caught.value.__suppress_context__  # no chained transformers/hub stack trace


def test_tokenizer_without_residues_is_refused(tmp_path):
    folder = build_tiny_model("bert", tmp_path / "bert")
    # What transformers 5's BertTokenizer(vocab_file=...) silently builds: the 5 special tokens only.
    transformers.BertTokenizer(do_lower_case=False).save_pretrained(folder)
    with pytest.raises(ModelError, match="does not know the standard residues ACDEFGHIKLMNPQRSTVWY"):
        load_backbone(ModelConfig(name=str(folder)))


def test_ankh_style_t5_tokenizes_characters(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    folder = build_tiny_model("t5", tmp_path / "ankh")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {
        res: i + 3 for i, res in enumerate(STANDARD_RESIDUES + "XBOUZ")
    }
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(folder)
    backbone = load_backbone(ModelConfig(name=str(folder)))
    assert backbone.style == "ankh"
    (tokenized,) = backbone.tokenize(["MKU"])
    assert tokenized.input_ids == [vocab["M"], vocab["K"], vocab["U"], 1]
    assert tokenized.residue_mask == [1, 1, 1, 0]


def test_weights_missing_from_the_checkpoint_warn(tmp_path):
    folder = build_tiny_model("bert", tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 3}))
    with pytest.warns(UserWarning, match="were not in its checkpoint and start random"):
        load_backbone(ModelConfig(name=str(Path(folder))))


def test_a_bare_unknown_name_fails_at_once_with_suggestions(monkeypatch):
    monkeypatch.setattr(sources_module, "hub_reachable", lambda: pytest.fail("no hub check for a bare name"))
    started = time.perf_counter()
    with pytest.raises(ModelError, match="model 'esm3' is not an alias.*did you mean tiny-esm2") as caught:
        resolve_model_or_fail("esm3")
    assert time.perf_counter() - started < 1.0
    assert "antiberty" in str(caught.value) and "onehot" in str(caught.value)  # the aliases are listed


def test_resolve_accepts_aliases_folders_and_reachable_or_cached_hub_ids(tmp_path, monkeypatch):
    assert resolve_model_or_fail("Tiny-ESM2") == "alias" and resolve_model_or_fail("onehot") == "alias"
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_or_fail(str(tmp_path)) == "folder"
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_or_fail(str(tmp_path / "missing"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(sources_module, "hub_reachable", lambda: True)
    assert resolve_model_or_fail("facebook/esm2_t6_8M_UR50D") == "hub"
    monkeypatch.setattr(sources_module, "hub_reachable", lambda: False)
    with pytest.raises(ModelError, match="could not be found locally.*hub cannot be reached"):
        resolve_model_or_fail("facebook/esm2_t6_8M_UR50D")
    monkeypatch.setattr(sources_module, "_in_hub_cache", lambda name: True)
    assert resolve_model_or_fail("facebook/esm2_t6_8M_UR50D") == "hub"  # cached: works offline


def test_an_uncached_hub_id_offline_fails_in_under_a_second(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE is set"):
        load_backbone(ModelConfig(name="facebook/esm2_t6_8M_UR50D"))
    assert time.perf_counter() - started < 1.0
