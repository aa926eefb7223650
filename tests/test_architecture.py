"""Structural rules of the code base: no import cycles, layers import downwards, docs list the registries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from protfit.registry import METHODS, POOLERS, SCHEDULERS, list_registries

SRC = Path(__file__).resolve().parents[1] / "src"
DOCS = Path(__file__).resolve().parents[1] / "docs"


# The layers, bottom first (docs/architecture.md, "Layers"): a module imports only modules of its own
# layer or of layers below, at module level or inside a function. A module belongs to the layer of the
# longest prefix listed. Plug-ins (regularization) sit above training: they build on the step protocol
# and training's evaluation helpers, and training reaches them only through the PLUGINS registry.
LAYERS: list[tuple[str, ...]] = [
    ("protfit.registry",),
    ("protfit.metrics",),
    (
        "protfit.config",
        "protfit.config_messages",
        "protfit.regularization.config",
        "protfit.regularization.technique",
        "protfit.regularization.sections",
    ),
    ("protfit.plugins", "protfit.data"),
    ("protfit.models",),
    ("protfit.report",),
    ("protfit.training",),
    ("protfit.regularization",),
    ("protfit.sweep",),
    ("protfit.inference", "protfit.export"),
    ("protfit.webui",),
    ("protfit.cli",),
    ("protfit.__main__", "protfit"),
]


def _layer(module: str) -> int:
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer of LAYERS"
    return max(matches)[1]


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """Import nodes under ``if TYPE_CHECKING:``: they never run, so they are no dependency."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped |= set(ast.walk(statement))
    return skipped


def _module_imports() -> dict[str, set[str]]:
    """Every protfit import of every module: module level and inside functions (what runs when called)."""
    modules = {
        ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for path in SRC.rglob("*.py")
    }
    graph = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        skipped = _type_checking_only(tree)
        deps = set()
        for node in ast.walk(tree):
            if node in skipped:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("protfit"):
                # `from protfit.models import sources` depends on the module protfit.models.sources
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules
                deps |= submodules or {node.module}
            elif isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names if alias.name.startswith("protfit")}
        graph[name] = deps - {name}
    return graph


def test_no_import_cycles():
    graph = _module_imports()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dependency in sorted(graph.get(module, ())):
            if state.get(dependency) == "open":
                pytest.fail(f"import cycle: {' -> '.join([*path, dependency])}")
            if dependency not in state:
                visit(dependency, [*path, dependency])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_every_import_points_to_the_same_or_a_lower_layer():
    upward = [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {dependency} ({LAYERS[_layer(dependency)][0]})"
        for module, deps in sorted(_module_imports().items())
        for dependency in sorted(deps)
        if _layer(dependency) > _layer(module)
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


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
