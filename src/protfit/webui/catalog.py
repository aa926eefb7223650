"""The Model step's picker: real checkpoints by family and size, what each is for, and whether it loads
offline here; and the rule that keeps ``model.name`` inside the workspace.

The families come from protfit's FAMILIES registry and the aliases from ALIASES (a test checks that
every family example and every alias has a place here); the sizes and one-line descriptions are the
published model cards'. Registered aliases that are not real checkpoints (``tiny-*``, ``*-random``:
random weights for tests and benchmarks) are the "test models", offered only on request.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from protfit.models.aliases import list_aliases
from protfit.webui.workspace import Workspace, WorkspaceError


@dataclass(frozen=True)
class ModelCard:
    """One choice of the picker; ``name`` is what goes into ``model.name``."""

    name: str
    title: str  # family and size, e.g. "ESM-2 8M"
    family: str  # a FAMILIES entry (model.family)
    parameters: float  # backbone parameters, millions (0: no weights)
    good_for: str

    @property
    def weights_gb(self) -> float:
        """Size of the fp32 weights; training needs a few times this (activations, optimizer state)."""
        return self.parameters * 4 / 1000


CARDS = [
    ModelCard(
        "onehot",
        "One-hot",
        "onehot",
        0,
        "no pretrained model: the baseline every model must beat; trains in seconds",
    ),
    ModelCard(
        "facebook/esm2_t6_8M_UR50D",
        "ESM-2 8M",
        "esm",
        7.5,
        "general proteins; smallest ESM-2, fine on a laptop CPU",
    ),
    ModelCard(
        "facebook/esm2_t12_35M_UR50D",
        "ESM-2 35M",
        "esm",
        35,
        "general proteins; a good first step up from 8M",
    ),
    ModelCard(
        "facebook/esm2_t30_150M_UR50D",
        "ESM-2 150M",
        "esm",
        148,
        "general proteins; better embeddings, wants a GPU",
    ),
    ModelCard(
        "facebook/esm2_t33_650M_UR50D",
        "ESM-2 650M",
        "esm",
        651,
        "general proteins; the usual strong choice on a GPU",
    ),
    ModelCard(
        "facebook/esm1b_t33_650M_UR50S", "ESM-1b 650M", "esm", 652, "general proteins; ESM-2's predecessor"
    ),
    ModelCard(
        "facebook/esm1v_t33_650M_UR90S_1",
        "ESM-1v 650M",
        "esm",
        652,
        "variant effects (mutational scans, fitness)",
    ),
    ModelCard(
        "Rostlab/prot_bert", "ProtBert 420M", "bert", 420, "general proteins (BERT trained on UniRef100)"
    ),
    ModelCard(
        "antiberty", "AntiBERTy 26M", "bert", 26, "antibody sequences (558M antibodies); small and fast"
    ),
    ModelCard(
        "Exscientia/IgBert", "IgBert 420M", "bert", 420, "antibody sequences (ProtBert tuned on antibodies)"
    ),
    ModelCard(
        "Rostlab/prot_t5_xl_uniref50",
        "ProtT5-XL 1.2B",
        "t5",
        1208,
        "general proteins; strong per-residue features, GPU",
    ),
    ModelCard(
        "Exscientia/IgT5", "IgT5 1.2B", "t5", 1208, "antibody sequences (ProtT5 tuned on antibodies), GPU"
    ),
    ModelCard(
        "ElnaggarLab/ankh-base", "Ankh base 450M", "t5", 453, "general proteins; efficient ProtT5 alternative"
    ),
    ModelCard(
        "ElnaggarLab/ankh-large", "Ankh large 1.2B", "t5", 1151, "general proteins; Ankh's larger model, GPU"
    ),
]
# ESM-2 8M is the smallest real protein language model: a first run finishes on a CPU in minutes.
# When it cannot load offline here (no hub cache), one-hot is the default: it always works.
PREFERRED_DEFAULT = "facebook/esm2_t6_8M_UR50D"


def offline(name: str) -> bool:
    """Whether ``name`` loads without a download here: one-hot always, an alias whose package or
    build is available, a hub id already in the local Hugging Face cache."""
    if name == "onehot":
        return True
    if name == "antiberty":
        from protfit.models.antiberty import AntibertyUnavailableError, locate_wheel_weights

        try:
            locate_wheel_weights()
        except AntibertyUnavailableError:
            return False
        return True
    if name in list_aliases():  # the test models are built locally on first use
        return True
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an id the hub library refuses is simply not cached
        return False


def testing_models() -> list[str]:
    """Registered aliases that are not real checkpoints (random weights, for tests and benchmarks)."""
    real = {card.name for card in CARDS}
    return sorted(name for name in list_aliases() if name not in real)


def _size(card: ModelCard) -> str:
    if not card.parameters:
        return "no weights"
    memory = f"{card.weights_gb:.1f} GB" if card.weights_gb >= 0.1 else f"{card.weights_gb * 1000:.0f} MB"
    count = f"{card.parameters / 1000:.1f}B" if card.parameters >= 1000 else f"{card.parameters:g}M"
    return f"{count} parameters, {memory} of weights"


def choices(show_test_models: bool = False) -> list[tuple[str, str]]:
    """(label, model.name) pairs for the picker, in family and size order."""
    pairs = [
        (
            f"{card.title} — {card.good_for} ({'✓ offline' if offline(card.name) else 'downloads once'})",
            card.name,
        )
        for card in CARDS
    ]
    if show_test_models:
        pairs += [(f"test model: {name} (random weights)", name) for name in testing_models()]
    return pairs


def table() -> pd.DataFrame:
    """Every model of the picker side by side: family, size, memory, use, offline here."""
    return pd.DataFrame(
        [
            {
                "model": card.title,
                "model.name": card.name,
                "family": card.family,
                "size": _size(card),
                "good for": card.good_for,
                "offline here": "yes" if offline(card.name) else "downloads once",
            }
            for card in CARDS
        ]
    )


def default_model() -> str:
    return PREFERRED_DEFAULT if offline(PREFERRED_DEFAULT) else "onehot"


def describe(name: str | None) -> str:
    """Markdown about the chosen model: what it is, its size, whether it loads offline here."""
    if not name:
        return "Choose a model."
    card = next((card for card in CARDS if card.name == name), None)
    aliases = list_aliases()
    if card is None:
        what = aliases.get(name, "a Hugging Face hub id or a model folder inside the workspace")
        return f"`model.name: {name}` — {what}"
    where = (
        "available offline here"
        if offline(name)
        else "not on this machine yet: the first run downloads it from the Hugging Face hub (needs internet)"
    )
    return (
        f"**{card.title}** (`model.name: {name}`, family {card.family}) — {card.good_for}. "
        f"{_size(card)}; {where}."
    )


def confine(workspace: Workspace, name: str, key: str = "model.name") -> None:
    """Refuse a model name that would make protfit read outside the workspace.

    Allowed: a model of the picker, a registered alias, or anything that resolves inside the workspace
    (a model folder there; a hub id ``owner/name`` also resolves there, and protfit, run from the
    workspace root, loads the folder if it exists and the hub model otherwise). The message is the
    same whether or not the refused path exists, so it reveals nothing about the machine.
    """
    if name in {card.name for card in CARDS} or name.lower() in list_aliases():
        return
    try:
        workspace.resolve(name)
    except WorkspaceError:
        raise WorkspaceError(
            f"refused: {key} '{name}' is outside the workspace; choose a model from the list, a Hugging "
            f"Face hub id (owner/name) or a model folder inside the workspace ({workspace.root})"
        ) from None
