"""Where things are inside a backbone, per family: layers, input embeddings, dropout modules.

ESM and BERT keep their transformer layers in ``encoder.layer``, T5 encoders in ``encoder.block``
(``T5EncoderModel.encoder`` is a T5Stack); a PEFT method wraps ``model.backbone.encoder`` in a
PeftModel whose base model holds the same modules. Every technique that works per layer asks
:func:`backbone_layers`, so a new family is one rule here.
"""

from __future__ import annotations

from typing import Any

from torch import nn


class LayerAccessError(ValueError):
    """The backbone has no transformer layers this technique can address (e.g. the one-hot encoder)."""


def hf_encoder(model: Any) -> nn.Module:
    """The Hugging Face model inside ``model.backbone`` (unwrapped from PEFT and DDP)."""
    model = getattr(model, "module", model)  # DDP
    encoder = getattr(model.backbone, "encoder", None)
    if encoder is None:
        raise LayerAccessError(f"the {model.backbone.family} backbone has no transformer layers")
    get_base = getattr(encoder, "get_base_model", None)  # PeftModel
    return get_base() if callable(get_base) else encoder


def backbone_layers(model: Any) -> list[nn.Module]:
    """The backbone's transformer layers, bottom (closest to the embeddings) first."""
    encoder = hf_encoder(model)
    for path in ("encoder.layer", "encoder.block", "layer", "block", "layers"):
        node: Any = encoder
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList) and len(node):
            return list(node)
    raise LayerAccessError(
        f"cannot find the transformer layers of {type(encoder).__name__} (looked for encoder.layer, "
        "encoder.block, layers); this technique needs a transformer backbone"
    )


def input_embeddings(model: Any) -> nn.Module:
    """The token embedding table (its output is what NEFTune and adversarial training perturb)."""
    return hf_encoder(model).get_input_embeddings()


def layer_of_parameters(model: Any) -> dict[int, int]:
    """id(parameter) -> backbone layer index (0 = bottom; -1 = below the layers: embeddings) for
    every backbone parameter; parameters above the layers (final norms) are absent."""
    layers = backbone_layers(model)
    owner = {id(p): index for index, layer in enumerate(layers) for p in layer.parameters()}
    embeddings = hf_encoder(model).get_input_embeddings()
    base = getattr(model, "module", model)
    for name, parameter in base.backbone.named_parameters():
        if id(parameter) not in owner and ("embed" in name or "shared" in name):
            owner[id(parameter)] = -1
    for parameter in embeddings.parameters():
        owner.setdefault(id(parameter), -1)
    return owner


def component_of(name: str) -> str:
    """``backbone`` / ``pooler`` / ``head`` for a ProteinModel parameter name (adapter counts as pooler)."""
    name = name.removeprefix("module.")
    first = name.split(".", 1)[0]
    return {"adapter": "pooler"}.get(first, first)


def attention_dropouts(layer: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, attribute) pairs holding attention-probability dropout in one layer: an nn.Dropout on
    the attention probabilities (BERT: ``attention.self.dropout``), or the float attribute
    ``dropout`` that SDPA-style attention modules pass to the kernel (ESM, T5)."""
    found = []
    for name, module in layer.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Dropout) and (name.endswith("self.dropout") or leaf == "attention_dropout"):
            found.append((module, "p"))
        elif not isinstance(module, nn.Dropout) and isinstance(getattr(module, "dropout", None), float):
            found.append((module, "dropout"))
    return found


def hidden_dropouts(layer: nn.Module) -> list[nn.Dropout]:
    """The layer's dropout modules on hidden states (everything but attention-probability dropout)."""
    attention = {id(module) for module, _ in attention_dropouts(layer)}
    return [
        module
        for name, module in layer.named_modules()
        # a LoRA adapter's own dropout is model.lora.dropout, not the layer's
        if isinstance(module, nn.Dropout) and id(module) not in attention and "lora_" not in name
    ]


def set_layer_dropout(layer: nn.Module, hidden: float | None = None, attention: float | None = None) -> None:
    if hidden is not None:
        for module in hidden_dropouts(layer):
            module.p = hidden
    if attention is not None:
        for module, attribute in attention_dropouts(layer):
            setattr(module, attribute, attention)


def trained_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}
