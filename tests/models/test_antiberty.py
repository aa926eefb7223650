"""The `antiberty` alias: real pretrained weights from the antiberty wheel, converted once, offline."""

from __future__ import annotations

import shutil
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

from protfit.models import antiberty as antiberty_module
from protfit.models.antiberty import (
    ENCODER_FILE,
    MANIFEST_FILE,
    MLM_HEAD_FILE,
    RESIDUES,
    AntibertyUnavailableError,
    antiberty_model_dir,
    cache_is_valid,
    load_antiberty_masked_lm,
    locate_wheel_weights,
)

# Trastuzumab heavy chain variable domain: an antibody AntiBERTy never needed to see to know.
TRASTUZUMAB_VH = (
    "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSR"
    "WGGDGFYAMDYWGQGTLVTVSS"
)


def _wheel_problem() -> str | None:
    try:
        locate_wheel_weights()
    except AntibertyUnavailableError as error:
        return str(error)
    return None


needs_wheel = pytest.mark.skipif(
    _wheel_problem() is not None, reason=f"AntiBERTy weights unavailable: {_wheel_problem()}"
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cache root, converted folder): the one conversion most tests share."""
    cache = tmp_path_factory.mktemp("protfit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROTFIT_CACHE", str(cache))
        folder = antiberty_model_dir()
    return cache, folder


@pytest.fixture(scope="module")
def wheel_state() -> dict[str, torch.Tensor]:
    return torch.load(locate_wheel_weights().weights_file, map_location="cpu", weights_only=True)


@needs_wheel
def test_alias_resolves_to_the_converted_folder(converted, monkeypatch: pytest.MonkeyPatch) -> None:
    from protfit.models.aliases import list_aliases, resolve_model_source

    cache, folder = converted
    monkeypatch.setenv("PROTFIT_CACHE", str(cache))
    assert "antiberty" in list_aliases()
    assert Path(resolve_model_source("antiberty")) == folder
    assert folder.parent == cache and folder.name == f"antiberty-{locate_wheel_weights().version}"


@needs_wheel
def test_converted_folder_loads_into_bert_model_with_no_missing_or_unexpected_keys(converted) -> None:
    _, folder = converted
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size) == (
        "bert",
        8,
        512,
        25,
    )
    model = BertModel(config, add_pooling_layer=False)
    result = model.load_state_dict(load_file(folder / ENCODER_FILE), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@needs_wheel
def test_tokenizer_maps_every_residue_to_its_own_token(converted) -> None:
    _, folder = converted
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 25
    ids = [tokenizer.convert_tokens_to_ids(residue) for residue in RESIDUES]
    assert tokenizer.unk_token_id not in ids and len(set(ids)) == 20
    encoded = tokenizer(" ".join("EVQLV"))["input_ids"]
    assert encoded == [
        tokenizer.cls_token_id,
        *(tokenizer.convert_tokens_to_ids(r) for r in "EVQLV"),
        tokenizer.sep_token_id,
    ]


@needs_wheel
def test_safetensors_round_trip_the_wheel_weights_exactly(converted, wheel_state) -> None:
    _, folder = converted
    encoder = load_file(folder / ENCODER_FILE)
    head = load_file(folder / MLM_HEAD_FILE)
    dropped = {"bert.embeddings.position_ids", "cls.predictions.decoder.weight"}
    kept = {
        key
        for key in wheel_state
        if not key.startswith(("bert.pooler.", "cls.species", "cls.chain", "cls.graft"))
        and key not in dropped
    }
    assert {f"bert.{key}" for key in encoder} | set(head) == kept
    for key, tensor in encoder.items():
        assert torch.equal(tensor, wheel_state[f"bert.{key}"]), key
    for key, tensor in head.items():
        assert torch.equal(tensor, wheel_state[key]), key
    # the dropped decoder weight is the embedding matrix, so nothing is lost by re-tying it
    assert torch.equal(
        wheel_state["cls.predictions.decoder.weight"], encoder["embeddings.word_embeddings.weight"]
    )


def _masked_recovery(model: BertForMaskedLM, tokenizer, sequence: str, stride: int = 12) -> float:
    """Share of residues predicted back when masked; every residue is masked exactly once.

    Copy k masks residues k, k+stride, k+2*stride, ... so `stride` copies cover the chain. Masking one
    residue per copy (120 copies) takes ~7 s per model on 2 cores; with 11 unmasked residues between
    masks the pretrained model scores the same (0.83 vs 0.82 one-at-a-time) in ~0.4 s.
    """
    ids = torch.tensor(tokenizer(" ".join(sequence))["input_ids"])
    positions = torch.arange(len(sequence)) + 1  # +1: skip [CLS]
    copies = torch.arange(len(sequence)) % stride
    batch = ids.repeat(stride, 1)
    batch[copies, positions] = tokenizer.mask_token_id
    with torch.inference_mode():
        logits = model(input_ids=batch).logits
    predicted = logits[copies, positions].argmax(dim=-1)
    return (predicted == ids[positions]).float().mean().item()


@needs_wheel
def test_pretrained_weights_recover_masked_antibody_residues_and_random_ones_do_not(converted) -> None:
    _, folder = converted
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pretrained = load_antiberty_masked_lm(folder)
    torch.manual_seed(0)
    random_model = BertForMaskedLM(BertConfig.from_pretrained(folder)).eval()
    assert _masked_recovery(pretrained, tokenizer, TRASTUZUMAB_VH) > 0.5  # measured 0.83
    assert _masked_recovery(random_model, tokenizer, TRASTUZUMAB_VH) < 0.2  # measured 0.075


@needs_wheel
def test_second_resolve_reuses_the_cache_without_converting(
    converted, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, folder = converted
    monkeypatch.setenv("PROTFIT_CACHE", str(cache))
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}

    def no_conversion(*args, **kwargs):
        raise AssertionError("a valid cache must not be converted again")

    monkeypatch.setattr(antiberty_module, "convert_wheel_weights", no_conversion)
    assert antiberty_model_dir() == folder
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before


@needs_wheel
def test_damaged_cache_is_detected(converted, tmp_path: Path) -> None:
    _, folder = converted
    truncated = shutil.copytree(folder, tmp_path / "truncated")
    with open(truncated / ENCODER_FILE, "r+b") as handle:
        handle.truncate(1000)
    no_manifest = shutil.copytree(folder, tmp_path / "no-manifest")
    (no_manifest / MANIFEST_FILE).unlink()
    assert cache_is_valid(folder)
    assert not cache_is_valid(truncated)
    assert not cache_is_valid(no_manifest)
    assert not cache_is_valid(tmp_path / "absent")


@needs_wheel
def test_corrupted_cache_is_rebuilt(converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, folder = converted
    cache = tmp_path / "cache"
    damaged = shutil.copytree(folder, cache / folder.name)
    data = bytearray((damaged / ENCODER_FILE).read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last weight: same size, different hash
    (damaged / ENCODER_FILE).write_bytes(bytes(data))
    monkeypatch.setenv("PROTFIT_CACHE", str(cache))

    rebuilt = antiberty_model_dir()

    assert rebuilt == damaged and cache_is_valid(rebuilt)
    assert (rebuilt / ENCODER_FILE).read_bytes() == (folder / ENCODER_FILE).read_bytes()
    assert [path.name for path in cache.iterdir()] == [folder.name]  # no staging or stale folders left


def test_missing_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PROTFIT_CACHE", str(cache))
    monkeypatch.setattr(antiberty_module, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError) as caught:
        antiberty_model_dir()
    assert isinstance(caught.value, AntibertyUnavailableError)
    message = str(caught.value)
    assert "antiberty package, which is not installed" in message
    assert 'pip install "protfit[antiberty]"' in message and "antiberty==0.1.3" in message
    assert not cache.exists()  # refused before any other work


def test_release_without_weights_says_which_release_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site-packages" / "antiberty"
    package.mkdir(parents=True)
    spec = ModuleSpec("antiberty", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    monkeypatch.setattr(antiberty_module, "find_spec", lambda name: spec)
    monkeypatch.setattr(antiberty_module, "installed_version", lambda name: "1.1.0")
    monkeypatch.setenv("PROTFIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(AntibertyUnavailableError, match=r"antiberty 1\.1\.0 is installed .* does not ship"):
        antiberty_model_dir()
    assert not (tmp_path / "cache").exists()
