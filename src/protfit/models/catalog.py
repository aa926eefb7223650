"""What `protfit models` prints, and docs/components.md: every registry's entries, read from the registries."""

from __future__ import annotations

from protfit.registry import (
    FAMILIES,
    FEATURES,
    HEADS,
    METHODS,
    METRICS,
    PLUGINS,
    POOLERS,
    SCHEDULERS,
    Registry,
)

SECTIONS: list[tuple[str, Registry]] = [
    ("Training methods (model.method)", METHODS),
    ("Poolers (model.pooler)", POOLERS),
    ("Heads (model.head.type)", HEADS),
    ("Extra features (model.extra_features)", FEATURES),
    ("Schedulers (train.scheduler.name)", SCHEDULERS),
    ("Metrics (evaluation.metrics)", METRICS),
    ("Training plug-ins", PLUGINS),
]


def format_model_catalog(markdown: bool = False) -> str:
    """The catalog as terminal text, or (``markdown``) as the body of docs/components.md."""
    from protfit.models.aliases import list_aliases

    if markdown:
        return _markdown(list_aliases())
    lines = ["Model families (detected from the model's config.json; force with model.family=...):", ""]
    for entry in FAMILIES.entries():
        lines += [
            f"  {entry.name:<7} {entry.item}: {entry.description}",
            f"          e.g. {entry.options['examples']}",
            f"          tokenization: {entry.options['tokenization']}",
            f"          needs: {entry.options['needs']}",
        ]
    lines += ["", "Aliases (work offline once their package is installed):", ""]
    lines += [f"  {name:<10} {help_text}" for name, help_text in sorted(list_aliases().items())]
    for title, registry in SECTIONS:
        if len(registry):
            lines += ["", f"{title}:", registry.describe()]
    lines += [
        "",
        "Any Hugging Face hub id or local folder of these architectures also works (hub needs internet).",
    ]
    return "\n".join(lines)


def _what(registry: Registry, entry) -> str:
    if registry is METRICS:  # one meaning per problem type
        meanings = "; ".join(
            f"{problem.replace('_classification', '')}: {text.split(': ', 1)[1]}"
            for problem, text in entry.item.descriptions.items()
        )
        return f"{meanings} ({entry.description})"
    return entry.description


def _markdown(aliases: dict[str, str]) -> str:
    lines = [
        "# Components",
        "",
        "Generated from protfit's registries by `protfit models --markdown > docs/components.md`",
        "(a test keeps this page equal to that output).",
        "",
        "## Model families (model.family)",
        "",
        "| family | architecture | models | tokenization | needs |",
        "|---|---|---|---|---|",
    ]
    for entry in FAMILIES.entries():
        options = entry.options
        lines.append(
            f"| `{entry.name}` | {entry.item} | {entry.description}; e.g. {options['examples']} | "
            f"{options['tokenization']} | {options['needs']} |"
        )
    lines += ["", "## Aliases (model.name)", "", "| alias | what |", "|---|---|"]
    lines += [f"| `{name}` | {text} |" for name, text in sorted(aliases.items())]
    for title, registry in SECTIONS:
        if not len(registry):
            continue
        lines += ["", f"## {title}", "", "| name | what |", "|---|---|"]
        lines += [f"| `{entry.name}` | {_what(registry, entry)} |" for entry in registry.entries()]
    return "\n".join(lines) + "\n"
