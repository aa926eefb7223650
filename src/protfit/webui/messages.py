"""What the UI says when something is refused: the field in words, its key and what it allows.

Config errors carry one :class:`protfit.config_messages.FieldProblem` per key (the CLI prints the
same words); other errors (a data file's row and field, a path outside the workspace, a failed
command) already speak the user's language and are shown as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

from protfit.config import ConfigError

# The last part of these keys says nothing alone ("name" of what?); the section goes in front.
_GENERIC = {"name", "type", "path", "method", "enabled", "family"}


def field_label(key: str, labels: Mapping[str, str] | None = None) -> str:
    """The field's name in words: ``train.learning_rate`` -> "Learning rate", ``model.name`` ->
    "Model name", ``train.early_stopping.patience`` -> "Early stopping patience"."""
    if labels and key in labels:
        return labels[key]
    parts = key.split(".")
    words = parts[-2:] if len(parts) > 2 or (len(parts) == 2 and parts[-1] in _GENERIC) else parts[-1:]
    text = " ".join(words).replace("_", " ")
    return text[:1].upper() + text[1:]


def describe_error(error: BaseException, labels: Mapping[str, str] | None = None) -> str:
    """``✗ …`` Markdown for a refused action: one bullet per config problem, else the error's text."""
    problems = getattr(error, "problems", ()) if isinstance(error, ConfigError) else ()
    if not problems:
        return f"✗ {error}"
    lines = []
    for problem in problems:
        if problem.kind == "unknown":
            lines.append(f"- `{problem.key}` is not a setting; allowed here: {problem.words}")
        elif not problem.key:
            lines.append(f"- {problem.words}")
        else:
            what = "required: set a value" if problem.kind == "missing" else problem.words
            lines.append(f"- **{field_label(problem.key, labels)}** (`{problem.key}`): {what}")
    count = "a setting" if len(problems) == 1 else f"{len(problems)} settings"
    return f"✗ Please fix {count}:\n" + "\n".join(lines)
