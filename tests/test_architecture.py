"""Structural rules of the code base: no import cycles, layers import downwards, docs list the registries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from protfit.registry import METHODS, POOLERS, SCHEDULERS, list_registries

SRC = Path(__file__).resolve().parents[1] / "src"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _module_imports() -> dict[str, set[str]]:
    graph = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.parse(path.read_text()).body:  # module level: what runs at import time
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("protfit"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names if alias.name.startswith("protfit")}
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph = _module_imports()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dependency in graph.get(module, ()):
            if state.get(dependency) == "open":
                pytest.fail(f"import cycle: {' -> '.join([*path, dependency])}")
            if dependency not in state:
                visit(dependency, [*path, dependency])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_models_and_data_do_not_import_the_training_layer():
    for module, deps in _module_imports().items():
        if module.startswith(("protfit.models", "protfit.data", "protfit.metrics", "protfit.plugins")):
            upward = sorted(dep for dep in deps if dep.startswith(("protfit.training", "protfit.cli")))
            assert not upward, f"{module} imports {upward}"


def test_every_registry_loads_and_describes_its_entries():
    for name, registry in list_registries().items():
        for entry in registry.entries():
            assert entry.description, f"{name} entry '{entry.name}' has no description"


@pytest.mark.parametrize("registry", [METHODS, POOLERS, SCHEDULERS], ids=lambda r: r.kind)
def test_docs_name_every_registered_entry(registry):
    text = "\n".join(path.read_text() for path in DOCS.glob("*.md"))
    missing = [name for name in registry.names() if f"`{name}`" not in text]
    assert not missing, f"docs/ never mention these {registry.kind}s: {missing}"


def test_components_page_is_the_registries_output():
    from protfit.models.catalog import format_model_catalog

    page = (DOCS / "components.md").read_text()
    assert page == format_model_catalog(markdown=True), (
        "docs/components.md is out of date: run `protfit models --markdown > docs/components.md`"
    )
