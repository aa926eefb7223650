"""The ``antiberty`` alias: pretrained AntiBERTy weights, offline, as a standard BERT folder.

The PyPI wheel ``antiberty==0.1.3`` (MIT) bundles the trained model (``trained_models/
AntiBERTy_md_smooth``: a BERT with 8 layers, hidden size 512, 25-token vocabulary) inside the package,
so no download is needed. Its checkpoint is a custom ``AntiBERTy`` class (``bert.`` prefix, a pooler,
species/chain/graft heads) saved as a pickled ``pytorch_model.bin``. On first use we convert it once
into ``cache_root()/antiberty-<version>/``:

    config.json               BertConfig (BertModel / AutoConfig load it)
    model.safetensors         encoder weights, keys as BertModel(add_pooling_layer=False) expects
    mlm_head.safetensors      the masked-LM head (``cls.predictions.*``; decoder weight tied to embeddings)
    tokenizer.json, tokenizer_config.json   AutoTokenizer.from_pretrained(folder) -> 25 tokens
    protfit_manifest.json     sha256 of every file above + the source wheel version

The folder is built in a temporary sibling and renamed into place, and its hashes are checked on every
reuse, so an interrupted or corrupted conversion is rebuilt instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from protfit.models.aliases import cache_root, register_alias

if TYPE_CHECKING:
    import torch
    from transformers import BertConfig, BertForMaskedLM

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "protfit[antiberty]"'
SUPPORTED_VERSION = "0.1.3"
ENCODER_FILE = "model.safetensors"
MLM_HEAD_FILE = "mlm_head.safetensors"
MANIFEST_FILE = "protfit_manifest.json"
# Bump when the folder layout changes, so old caches are rebuilt rather than misread.
_MANIFEST_FORMAT = 1

_WHEEL_CONFIG = Path("trained_models/AntiBERTy_md_smooth/config.json")
_WHEEL_WEIGHTS = Path("trained_models/AntiBERTy_md_smooth/pytorch_model.bin")
_WHEEL_VOCAB = Path("trained_models/vocab.txt")
# Keys of the wheel's config.json that describe the original training run, not the architecture.
_DROPPED_CONFIG_KEYS = (
    "_name_or_path",
    "architectures",
    "transformers_version",
    "gradient_checkpointing",
    "use_cache",
    "model_type",
)
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


class AntibertyUnavailableError(RuntimeError):
    """The antiberty package is missing, or is a release that does not ship the pretrained weights."""


@dataclass(frozen=True)
class WheelWeights:
    """Where the installed antiberty package keeps its pretrained model."""

    package_dir: Path
    version: str

    @property
    def config_file(self) -> Path:
        return self.package_dir / _WHEEL_CONFIG

    @property
    def weights_file(self) -> Path:
        return self.package_dir / _WHEEL_WEIGHTS

    @property
    def vocab_dir(self) -> Path:
        return (self.package_dir / _WHEEL_VOCAB).parent


def locate_wheel_weights() -> WheelWeights:
    """Find the installed antiberty package's weight files without importing the package.

    ``find_spec`` on a top-level name only locates it; importing ``antiberty`` itself would pull in its
    training code and collators, which we never use.
    """
    try:
        spec = find_spec("antiberty")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise AntibertyUnavailableError(
            "the 'antiberty' model needs the antiberty package, which is not installed. "
            f"Install it with: {INSTALL_HINT} (this pins antiberty=={SUPPORTED_VERSION}, "
            "the release that ships the pretrained weights)."
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    try:
        version = installed_version("antiberty")
    except PackageNotFoundError:
        version = "unknown"
    for relative in (_WHEEL_CONFIG, _WHEEL_WEIGHTS, _WHEEL_VOCAB):
        if not (package_dir / relative).is_file():
            raise AntibertyUnavailableError(
                f"antiberty {version} is installed ({package_dir}) but does not ship the pretrained "
                f"AntiBERTy weights (no {relative.as_posix()}); only antiberty {SUPPORTED_VERSION} bundles "
                f"them. Install that release with: {INSTALL_HINT}"
            )
    return WheelWeights(package_dir=package_dir, version=version)


@register_alias(
    "antiberty",
    "AntiBERTy (Ruffolo et al. 2021), BERT pretrained on 558M antibody sequences; "
    "offline via pip install 'protfit[antiberty]'",
)
def antiberty_model_dir() -> Path:
    """The converted AntiBERTy folder in the protfit cache, converting the wheel's weights on first use."""
    wheel = locate_wheel_weights()  # fails fast, before touching the cache
    target = cache_root() / f"antiberty-{wheel.version}"
    if cache_is_valid(target):
        return target
    logger.info("converting AntiBERTy weights from %s into %s (once)", wheel.weights_file, target)
    convert_wheel_weights(wheel, target)
    return target


def cache_is_valid(folder: Path) -> bool:
    """True when ``folder`` holds a complete conversion whose files match the manifest's hashes."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        files: dict[str, str] = manifest["files"]
        if manifest.get("protfit_format") != _MANIFEST_FORMAT or not {ENCODER_FILE, "config.json"} <= set(
            files
        ):
            return False
        return all(_sha256(folder / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def split_wheel_state_dict(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Wheel state dict -> (encoder weights keyed for BertModel, masked-LM head keyed for BertForMaskedLM).

    Dropped: the pooler and the species/chain/graft heads (pretraining tasks protfit does not use),
    ``position_ids`` (a buffer, not a weight), and ``cls.predictions.decoder.weight``, which is the word
    embedding matrix itself (tied; BertForMaskedLM re-ties it on load).
    """
    encoder: dict[str, torch.Tensor] = {}
    mlm_head: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if (
            key.startswith("bert.")
            and not key.startswith("bert.pooler.")
            and not key.endswith("position_ids")
        ):
            encoder[key.removeprefix("bert.")] = tensor.contiguous()
        elif key.startswith("cls.predictions.") and key != "cls.predictions.decoder.weight":
            # clone: decoder.bias and predictions.bias share storage, which safetensors refuses to save
            mlm_head[key] = tensor.clone().contiguous()
    return encoder, mlm_head


def _bert_config(wheel: WheelWeights) -> BertConfig:
    from transformers import BertConfig

    raw = json.loads(wheel.config_file.read_text())
    for key in _DROPPED_CONFIG_KEYS:
        raw.pop(key, None)
    config = BertConfig(**raw)
    config.architectures = ["BertModel"]
    return config


def convert_wheel_weights(wheel: WheelWeights, target: Path) -> None:
    """Write the converted folder to ``target`` atomically (temp folder + rename)."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel, BertTokenizer

    config = _bert_config(wheel)
    state = torch.load(wheel.weights_file, map_location="cpu", weights_only=True)
    encoder, mlm_head = split_wheel_state_dict(state)
    # A checkpoint that does not fit BertModel exactly would load with silently random layers later.
    with torch.device("meta"):
        expected = BertModel(config, add_pooling_layer=False).state_dict()
    expected_shapes = {
        key: tuple(value.shape) for key, value in expected.items() if "position_ids" not in key
    }
    found_shapes = {key: tuple(value.shape) for key, value in encoder.items()}
    if found_shapes != expected_shapes:
        differing = sorted(set(found_shapes.items()) ^ set(expected_shapes.items()))[:5]
        raise RuntimeError(
            f"the AntiBERTy checkpoint in {wheel.weights_file} does not match a BERT encoder of its own "
            f"config (first differences: {differing}); reinstall with: {INSTALL_HINT}"
        )
    # do_lower_case=False matters: the default lower-cases residues, and every one becomes [UNK].
    tokenizer = BertTokenizer.from_pretrained(
        wheel.vocab_dir, do_lower_case=False, model_max_length=config.max_position_embeddings
    )
    unknown = [
        residue for residue in RESIDUES if tokenizer.convert_tokens_to_ids(residue) == tokenizer.unk_token_id
    ]
    if unknown or len(tokenizer) != config.vocab_size:
        raise RuntimeError(
            f"the AntiBERTy tokenizer built from {wheel.vocab_dir} has {len(tokenizer)} tokens and maps "
            f"{unknown} to [UNK]; expected {config.vocab_size} tokens covering all 20 residues"
        )

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        config.save_pretrained(staging)
        save_file(encoder, staging / ENCODER_FILE, metadata={"format": "pt"})
        save_file(mlm_head, staging / MLM_HEAD_FILE, metadata={"format": "pt"})
        tokenizer.save_pretrained(staging)
        manifest = {
            "protfit_format": _MANIFEST_FORMAT,
            "source_package": "antiberty",
            "source_version": wheel.version,
            "source_file": _WHEEL_WEIGHTS.as_posix(),
            "files": {path.name: _sha256(path) for path in sorted(staging.iterdir()) if path.is_file()},
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        # mkdtemp (and safetensors) create owner-only files; a model cache is ordinary readable data.
        os.chmod(staging, 0o755)
        for path in staging.iterdir():
            os.chmod(path, 0o644)
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, target: Path) -> None:
    if target.exists():
        # An invalid (partial or corrupted) earlier conversion: move it aside first, because a rename
        # only replaces an empty folder.
        stale = Path(tempfile.mkdtemp(prefix=f".{target.name}-stale-", dir=target.parent))
        os.replace(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(staging, target)
    except OSError:
        # Another process published the same conversion in between; keep theirs if it is complete.
        if not cache_is_valid(target):
            raise


def load_antiberty_masked_lm(model_dir: Path | None = None) -> BertForMaskedLM:
    """AntiBERTy with its masked-LM head (for checks that the weights are the real pretrained ones)."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForMaskedLM

    folder = Path(model_dir) if model_dir is not None else antiberty_model_dir()
    model = BertForMaskedLM(BertConfig.from_pretrained(folder))
    state = {f"bert.{key}": value for key, value in load_file(folder / ENCODER_FILE).items()}
    state.update(load_file(folder / MLM_HEAD_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Only the tied decoder weight may be absent; it is the word embedding matrix just loaded.
    if unexpected or set(missing) - {"cls.predictions.decoder.weight"}:
        raise RuntimeError(f"{folder}: missing weights {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model.eval()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
