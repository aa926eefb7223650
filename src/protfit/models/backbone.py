"""Protein language model backbones: per-family tokenization plus the encoder forward pass.

A :class:`Backbone` hides the differences between model families behind one interface:
``tokenize(sequences)`` applies the family's input rules and marks which positions are residues,
``forward(input_ids, attention_mask)`` returns the last hidden state (B, L, H).

Family input rules (what each model saw in pre-training):

- ``esm`` (ESM-2): plain residue letters, ``<cls> ... <eos>``.
- ``bert`` (ProtBert, IgBert, AntiBERTy): residues separated by spaces, ``[CLS] ... [SEP]``.
- ``t5`` ProtT5 / IgT5 (sentencepiece vocabulary of ``▁A``-style pieces): space-separated, with the
  rare residues U, Z, O, B mapped to X as in ProtT5's training data, ``... </s>``.
- ``t5`` Ankh (vocabulary of bare letters): the sequence as a list of characters, ``... </s>``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from protfit.config import ModelConfig
from protfit.data.batching import TokenizedSequence
from protfit.models.aliases import list_aliases, resolve_model_source
from protfit.registry import FAMILIES

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
FAMILIES.add(
    "esm",
    "EsmModel",
    "ESM-2, ESM-1b, ESM-1v",
    examples="facebook/esm2_t6_8M_UR50D, facebook/esm2_t33_650M_UR50D, facebook/esm1b_t33_650M_UR50S, "
    "facebook/esm1v_t33_650M_UR90S_1",
    tokenization="plain residue letters",
    needs="hub download or local folder",
)
FAMILIES.add(
    "bert",
    "BertModel",
    "ProtBert, IgBert, AntiBERTy",
    examples="Rostlab/prot_bert, Exscientia/IgBert, antiberty (alias)",
    tokenization="space-separated residues",
    needs="hub download or local folder; antiberty offline",
)
FAMILIES.add(
    "t5",
    "T5EncoderModel",
    "ProtT5, IgT5, Ankh (encoder only)",
    examples="Rostlab/prot_t5_xl_uniref50, Exscientia/IgT5, ElnaggarLab/ankh-base",
    tokenization="ProtT5/IgT5: space-separated, U/Z/O/B -> X; Ankh: characters",
    needs="hub download or local folder",
)
FAMILIES.add(
    "onehot",
    "built in",
    "one-hot encoding of the 20 residues + X",
    examples="onehot (alias)",
    tokenization="20 residues + X, no special tokens",
    needs="offline, no weights",
)
# ProtT5 was trained with the rare residues U, Z, O, B replaced by X.
_PROT_T5_RARE = str.maketrans("UZOB", "XXXX")
# EsmModel builds a contact-prediction head that our forward pass never uses; some ESM checkpoints
# lack its weights, which is no reason to warn.
_UNUSED_WEIGHTS = ("contact_head",)


class ModelError(ValueError):
    """A model that cannot be loaded or combined as configured; the message says what to change."""


class Backbone(nn.Module):
    """A pretrained encoder with its tokenizer and the family's input rules.

    ``style`` refines ``family`` where one architecture hosts models with different input rules
    (``t5``: ``prot_t5`` or ``ankh``); for the other families it equals ``family``.
    """

    def __init__(
        self,
        encoder: nn.Module | None,
        tokenizer: Any,
        *,
        name: str,
        family: str,
        style: str,
        hidden_size: int,
        num_layers: int,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.name = name
        self.family = family
        self.style = style
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        if tokenizer is not None:
            if tokenizer.pad_token_id is None:
                raise ModelError(f"the tokenizer of '{name}' has no padding token; protfit pads batches")
            self.pad_token_id: int = int(tokenizer.pad_token_id)
            # The unknown token stands in for a residue (e.g. X in AntiBERTy's 25-token vocabulary),
            # so it counts as a residue position; every other special token does not.
            self._special_ids = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
            probe = self._encode(["ACD"])[0]
            self.has_cls_token: bool = (
                tokenizer.cls_token_id is not None and probe[0] == tokenizer.cls_token_id
            )
            self._check_vocabulary()

    def _texts(self, sequences: list[str]) -> list[Any]:
        if self.style == "bert":
            return [" ".join(sequence) for sequence in sequences]
        if self.style == "prot_t5":
            return [" ".join(sequence.translate(_PROT_T5_RARE)) for sequence in sequences]
        if self.style == "ankh":
            return [list(sequence) for sequence in sequences]
        return list(sequences)

    def _encode(self, sequences: list[str]) -> list[list[int]]:
        if self.style == "esm" and hasattr(self.tokenizer, "build_inputs_with_special_tokens"):
            # EsmTokenizer is a pure-Python trie tokenizer (~1 s per 1000 sequences of 300 residues);
            # one residue is one vocabulary token, so looking the letters up directly gives the same ids.
            return [
                self.tokenizer.build_inputs_with_special_tokens(
                    self.tokenizer.convert_tokens_to_ids(list(seq))
                )
                for seq in sequences
            ]
        encoded = self.tokenizer(
            self._texts(sequences),
            add_special_tokens=True,
            truncation=False,
            is_split_into_words=self.style == "ankh",
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [list(ids) for ids in encoded["input_ids"]]

    def tokenize(self, sequences: list[str]) -> list[TokenizedSequence]:
        """Token ids with special tokens, and a mask that is 1 exactly on the residue positions."""
        tokenized = []
        for sequence, ids in zip(sequences, self._encode(list(sequences)), strict=True):
            residue_mask = [0 if token in self._special_ids else 1 for token in ids]
            if sum(residue_mask) != len(sequence):
                raise ModelError(
                    f"the tokenizer of '{self.name}' turned a sequence of {len(sequence)} residues into "
                    f"{sum(residue_mask)} residue tokens (sequence starts '{sequence[:20]}'); "
                    "protfit needs one token per residue. Check model.family and the model's tokenizer files."
                )
            tokenized.append(TokenizedSequence(input_ids=ids, residue_mask=residue_mask))
        return tokenized

    def _check_vocabulary(self) -> None:
        # A tokenizer built from the wrong files tokenizes without complaint but maps residues to the
        # unknown token (transformers 5's BertTokenizer(vocab_file=...) silently builds a 5-token
        # vocabulary), so a model would train on noise. Catch it before any training starts.
        ids = self._encode([STANDARD_RESIDUES])[0]
        residue_ids = [token for token in ids if token not in self._special_ids]
        unk = self.tokenizer.unk_token_id
        unknown = [res for res, token in zip(STANDARD_RESIDUES, residue_ids, strict=False) if token == unk]
        if len(residue_ids) != len(STANDARD_RESIDUES) or unknown:
            raise ModelError(
                f"the tokenizer of '{self.name}' does not know the standard residues "
                f"{''.join(unknown) or STANDARD_RESIDUES} (vocabulary of {len(self.tokenizer)} tokens, "
                f"{self.family} input rules). The tokenizer files are incomplete, or model.family "
                "does not match the model."
            )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        assert self.encoder is not None
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _encoder_class(model_type: str) -> tuple[str, type[nn.Module], dict[str, Any]]:
    from transformers import BertModel, EsmModel, T5EncoderModel

    if model_type == "esm":
        return "esm", EsmModel, {"add_pooling_layer": False}
    if model_type == "bert":
        return "bert", BertModel, {"add_pooling_layer": False}
    if model_type == "t5":
        return "t5", T5EncoderModel, {}
    raise ModelError(
        f"model type '{model_type}' is not supported; supported families: {', '.join(FAMILIES.names())} "
        "(ESM-2, ProtBert/IgBert/AntiBERTy, ProtT5/IgT5/Ankh, one-hot baseline)"
    )


def _first_lines(error: BaseException, count: int = 2) -> str:
    return " ".join(line.strip() for line in str(error).splitlines()[:count] if line.strip())


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _not_found_message(name: str, reason: str) -> str:
    aliases = ", ".join(sorted(list_aliases()))
    return (
        f"model '{name}' could not be found locally or downloaded from the Hugging Face hub ({reason}). "
        f"Give a hub id (e.g. facebook/esm2_t6_8M_UR50D), a local model folder with config.json, "
        f"or an alias: {aliases}"
    )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = ("1", "ON", "YES", "TRUE")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(flag.upper() in _TRUE for flag in flags)


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an id the hub library refuses is simply not cached
        return False


def hub_reachable(timeout: float = 1.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds.

    Without this, an uncached hub id offline costs transformers' retries (~20 s of warnings) before
    the error; name resolution has no timeout of its own, hence the thread.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    address = (
        endpoint.hostname or "huggingface.co",
        endpoint.port or (80 if endpoint.scheme == "http" else 443),
    )
    answered: list[bool] = []

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=timeout):
            answered.append(True)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answered)


def _suggestions(name: str) -> str:
    candidates = {alias.lower(): alias for alias in list_aliases()}
    for entry in FAMILIES.entries():
        for example in entry.options["examples"].split(","):
            example = example.strip()
            if "/" in example:
                candidates[example.lower()] = example
                candidates[example.split("/", 1)[1].lower()] = example
    close = difflib.get_close_matches(name.lower(), list(candidates), n=3, cutoff=0.4)
    matches = list(dict.fromkeys(candidates[match] for match in close))
    return f"did you mean {' or '.join(matches)}? " if matches else ""


def resolve_model_or_fail(name: str) -> str:
    """Check that ``model.name`` can be loaded, in well under a second and before anything is created.

    Accepts an alias (built later on first use), an existing model folder, and a hub id that is in the
    local Hugging Face cache, or of the form ``owner/name`` while the hub is reachable (and
    HF_HUB_OFFLINE unset). Returns the kind: ``alias``, ``folder`` or ``hub``. Anything else is a
    :class:`ModelError` with close names (difflib) and the aliases; nothing is downloaded or built.
    """
    aliases = sorted(list_aliases())
    if name.lower() in aliases:
        return "alias"
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
        return "folder"
    if _looks_like_path(name):
        raise ModelError(f"model folder {path} does not exist (model.name = '{name}')")
    if _in_hub_cache(name):
        return "hub"
    if not _HUB_ID.match(name):
        raise ModelError(
            f"model '{name}' is not an alias, a local model folder or a Hugging Face hub id (owner/name); "
            f"{_suggestions(name)}aliases: {', '.join(aliases)} (`protfit models` lists the families)"
        ) from None
    if _hub_offline():
        raise ModelError(
            _not_found_message(name, "not in the local Hugging Face cache, and HF_HUB_OFFLINE is set")
        ) from None
    if not hub_reachable():
        raise ModelError(
            _not_found_message(name, "not in the local Hugging Face cache, and the hub cannot be reached")
        ) from None
    return "hub"


def _load_config(name: str, source: str) -> Any:
    from transformers import AutoConfig

    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
    elif _looks_like_path(source):
        raise ModelError(f"model folder {path} does not exist (model.name = '{name}')")
    try:
        return AutoConfig.from_pretrained(str(path) if path.is_dir() else source)
    except OSError as error:
        raise ModelError(_not_found_message(name, _first_lines(error))) from None
    except Exception as error:
        # An unknown model_type (ValueError) or invalid field values (huggingface_hub's validation
        # errors, not ValueErrors) in a user's config.json: say which model, without the stack.
        problem = _first_lines(error)
    model_type = _config_model_type(path) if path.is_dir() else None
    if model_type:
        _encoder_class(model_type)  # an unsupported architecture gets the list of supported families
    raise ModelError(f"cannot read the config of model '{name}': {problem}")


def _config_model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-load report and progress bars; we report what matters ourselves."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    progress = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress:
            hf_logging.enable_progress_bar()


def _load_encoder(model_class: type[nn.Module], source: str, kwargs: dict[str, Any], name: str) -> nn.Module:
    def load(**extra: Any) -> tuple[nn.Module, dict[str, Any]]:
        # float32 weights: transformers 5 defaults to the checkpoint dtype (ProtT5-half is fp16), and
        # mixed precision is the training loop's choice (autocast), not the loader's.
        return model_class.from_pretrained(  # type: ignore[attr-defined]
            source, dtype=torch.float32, output_loading_info=True, **kwargs, **extra
        )

    with quiet_transformers():
        try:
            try:
                encoder, info = load(attn_implementation="sdpa")
            except (ValueError, ImportError):
                # Architectures without a scaled-dot-product-attention implementation use their default.
                encoder, info = load()
        except OSError as error:
            if not Path(source).is_dir():
                raise ModelError(_not_found_message(name, _first_lines(error))) from None
            raise ModelError(
                f"cannot load the weights of '{name}' from {source}: {_first_lines(error)}"
            ) from None
        except Exception as error:
            raise ModelError(f"cannot load the weights of '{name}': {_first_lines(error)}") from None
    missing = [key for key in info.get("missing_keys", []) if not key.startswith(_UNUSED_WEIGHTS)]
    if missing:
        warnings.warn(
            f"{len(missing)} weights of '{name}' were not in its checkpoint and start random "
            f"(e.g. {', '.join(sorted(missing)[:3])}); is this the right model?",
            stacklevel=3,
        )
    return encoder


def _t5_style(tokenizer: Any, name: str) -> str:
    vocab = tokenizer.get_vocab()
    if "▁A" in vocab:
        return "prot_t5"
    if "A" in vocab:
        return "ankh"
    raise ModelError(
        f"cannot tell the input rules of T5 model '{name}': its vocabulary has neither '▁A' (ProtT5/IgT5) "
        "nor 'A' (Ankh) pieces"
    )


def base_weight_quantization(model_cfg: ModelConfig) -> Any:
    """The transformers quantization config of the frozen base (QLoRA), or None for other methods.

    NF4 with double quantization as in Dettmers et al. 2023. Matmuls run in float32 (dequantized
    on the fly), like the rest of protfit; train.mixed_precision=bf16 speeds them up via autocast.
    """
    if model_cfg.method != "qlora":
        return None
    from transformers import BitsAndBytesConfig

    if model_cfg.lora.qlora_bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )


def load_backbone(cfg: ModelConfig, quantization_config: Any = None) -> Backbone:
    """Model name (hub id, local folder or alias) -> backbone with the family's tokenizer rules.

    ``quantization_config`` (a transformers ``BitsAndBytesConfig``, for QLoRA) loads the encoder's
    weights quantized onto the current CUDA device.
    """
    if cfg.name.lower() == "onehot" or cfg.family == "onehot":
        if cfg.name.lower() != "onehot":
            raise ModelError(f"model.family 'onehot' goes with model.name 'onehot', not '{cfg.name}'")
        if cfg.family not in ("auto", "onehot"):
            raise ModelError(f"model.family is '{cfg.family}' but model 'onehot' is the one-hot baseline")
        from protfit.models.onehot import OneHotBackbone

        return OneHotBackbone()

    from transformers import AutoTokenizer

    resolve_model_or_fail(cfg.name)  # fail fast (no hub retries) on a name that cannot load
    source = resolve_model_source(cfg.name)
    config = _load_config(cfg.name, source)
    family, model_class, kwargs = _encoder_class(config.model_type)
    if cfg.family not in ("auto", family):
        raise ModelError(
            f"model.family is '{cfg.family}' but '{cfg.name}' is a '{config.model_type}' model "
            f"(family '{family}'); set model.family to '{family}' or 'auto'"
        )
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as error:
        # Missing or unreadable tokenizer files surface as many error types; name the model instead.
        raise ModelError(f"cannot load the tokenizer of '{cfg.name}': {_first_lines(error)}") from None
    if quantization_config is not None:
        if not torch.cuda.is_available():
            raise ModelError(f"quantized weights for '{cfg.name}' need a CUDA GPU (bitsandbytes)")
        kwargs = {
            **kwargs,
            "quantization_config": quantization_config,
            "device_map": {"": torch.cuda.current_device()},
        }
    encoder = _load_encoder(model_class, source, kwargs, cfg.name)
    style = _t5_style(tokenizer, cfg.name) if family == "t5" else family
    return Backbone(
        encoder,
        tokenizer,
        name=cfg.name,
        family=family,
        style=style,
        hidden_size=int(config.hidden_size),
        num_layers=int(config.num_hidden_layers),
    )
