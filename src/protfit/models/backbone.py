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
- ``onehot`` (:class:`OneHotBackbone`, built in): 20 residues + X, no special tokens, no weights.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from protfit.config import ModelConfig
from protfit.data.batching import TokenizedSequence
from protfit.models.aliases import resolve_model_source
from protfit.models.sources import ModelError, looks_like_path, not_found_message, resolve_model_or_fail
from protfit.registry import FAMILIES

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
# ProtT5 was trained with the rare residues U, Z, O, B replaced by X.
_PROT_T5_RARE = str.maketrans("UZOB", "XXXX")
# EsmModel builds a contact-prediction head that our forward pass never uses; some ESM checkpoints
# lack its weights, which is no reason to warn.
_UNUSED_WEIGHTS = ("contact_head",)


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


ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"
_INDEX = {residue: index for index, residue in enumerate(ALPHABET)} | {rare: 20 for rare in "BZUO"}


class OneHotBackbone(Backbone):
    """The one-hot encoder: the no-download baseline every protein model should beat.

    Each residue becomes a 21-dimensional indicator (20 standard residues + X; the rare B, Z, U, O
    count as X). There are no special tokens and no parameters, so ``freeze`` and ``full`` both train
    only the pooler and head. ``onehot`` + ``flatten`` pooler + MLP head is the classic position-aware
    baseline for equal-length mutational landscapes.
    """

    def __init__(self) -> None:
        super().__init__(
            None,
            None,
            name="onehot",
            family="onehot",
            style="onehot",
            hidden_size=len(ALPHABET),
            num_layers=0,
        )
        # Padding gets the index one past the alphabet, so its one-hot row is dropped (all zero).
        self.pad_token_id = len(ALPHABET)
        self.has_cls_token = False

    def tokenize(self, sequences: list[str]) -> list[TokenizedSequence]:
        tokenized = []
        for sequence in sequences:
            try:
                ids = [_INDEX[residue] for residue in sequence.upper()]
            except KeyError as error:
                raise ModelError(
                    f"the onehot encoder knows the 20 standard residues and X, not '{error.args[0]}' "
                    f"(sequence starts '{sequence[:20]}'); set data.unknown_residues=map_to_x"
                ) from None
            tokenized.append(TokenizedSequence(input_ids=ids, residue_mask=[1] * len(ids)))
        return tokenized

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        encoded = F.one_hot(input_ids.clamp(0, self.pad_token_id), len(ALPHABET) + 1)[..., : len(ALPHABET)]
        return encoded.float() * attention_mask.unsqueeze(-1).float()


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


def _load_config(name: str, source: str) -> Any:
    from transformers import AutoConfig

    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
    elif looks_like_path(source):
        raise ModelError(f"model folder {path} does not exist (model.name = '{name}')")
    try:
        return AutoConfig.from_pretrained(str(path) if path.is_dir() else source)
    except OSError as error:
        raise ModelError(not_found_message(name, _first_lines(error))) from None
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
                raise ModelError(not_found_message(name, _first_lines(error))) from None
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
