"""The Model step's catalog: every registered family and alias has its place, test models are apart,
the default loads offline here."""

from __future__ import annotations

import pytest

from protfit.models.aliases import list_aliases
from protfit.registry import FAMILIES
from protfit.webui import catalog


def test_every_card_names_a_registered_family_and_every_family_example_is_a_card() -> None:
    names = {card.name for card in catalog.CARDS}
    for card in catalog.CARDS:
        assert card.family in FAMILIES
    for entry in FAMILIES.entries():
        examples = [
            example.strip().removesuffix(" (alias)") for example in entry.options["examples"].split(",")
        ]
        assert set(examples) <= names, entry.name


def test_test_models_are_kept_out_of_the_main_list_but_reachable() -> None:
    main = [name for _, name in catalog.choices()]
    assert {"tiny-esm2", "tiny-bert", "tiny-t5", "esm2-8m-random"} <= set(catalog.testing_models())
    assert not set(catalog.testing_models()) & set(main)
    assert set(main) | set(catalog.testing_models()) >= set(list_aliases())
    with_tests = [name for _, name in catalog.choices(show_test_models=True)]
    assert with_tests[: len(main)] == main and "tiny-esm2" in with_tests


def test_the_default_loads_offline() -> None:
    assert catalog.offline(catalog.default_model())
    assert catalog.offline("onehot")


def test_description_gives_size_memory_and_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "offline", lambda name: False)
    text = catalog.describe("facebook/esm2_t33_650M_UR50D")
    assert "ESM-2 650M" in text and "651M parameters, 2.6 GB of weights" in text
    assert "first run downloads it" in text
    monkeypatch.setattr(catalog, "offline", lambda name: True)
    assert "available offline here" in catalog.describe("onehot") and "no weights" in catalog.describe(
        "onehot"
    )


def test_the_table_lists_every_model_with_its_size_and_availability() -> None:
    table = catalog.table()
    assert table["model.name"].tolist() == [card.name for card in catalog.CARDS]
    row = table.set_index("model.name").loc["onehot"]
    assert (row["size"], row["offline here"]) == ("no weights", "yes")
