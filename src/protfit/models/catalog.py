"""What `protfit models` prints: families, aliases, methods, poolers and what works offline (from the registries)."""

from __future__ import annotations

from protfit.registry import FAMILIES, METHODS, PLUGINS, POOLERS, SCHEDULERS


def format_model_catalog() -> str:
    lines = ["Model families (detected from the model's config.json; force with model.family=...):", ""]
    for entry in FAMILIES.entries():
        lines += [
            f"  {entry.name:<7} {entry.item}: {entry.description}",
            f"          e.g. {entry.options['examples']}",
            f"          tokenization: {entry.options['tokenization']}",
            f"          needs: {entry.options['needs']}",
        ]
    from protfit.models.aliases import list_aliases

    lines += ["", "Aliases (work offline once their package is installed):", ""]
    lines += [f"  {name:<10} {help_text}" for name, help_text in sorted(list_aliases().items())]
    for title, registry in (
        ("Training methods (model.method)", METHODS),
        ("Poolers (model.pooler)", POOLERS),
        ("Schedulers (train.scheduler.name)", SCHEDULERS),
        ("Training plug-ins", PLUGINS),
    ):
        if len(registry):
            lines += ["", f"{title}:", registry.describe()]
    lines += [
        "",
        "Any Hugging Face hub id or local folder of these architectures also works (hub needs internet).",
    ]
    return "\n".join(lines)
