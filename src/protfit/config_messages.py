"""Pydantic validation errors in the user's words: one :class:`FieldProblem` per config key.

Pydantic reports a value refused by a union field once per member it tried, under locations such as
``train.learning_rate.constrained-float`` and ``train.learning_rate.literal['auto']``, in its own
wording ("Input should be ..."). A person wrote one key; they get one problem for it, with what the
key allows: ``'train.learning_rate': must be greater than 0, or 'auto' (got -1)``. The CLI prints
:meth:`FieldProblem.line`; the web UI puts its own label in front of the same words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ValidationError

# Location parts pydantic adds for the member of a union it tried ("constrained-float",
# "literal['auto']", "function-after[...]", "int"); config keys are snake_case names, never these.
_MEMBER_TAG = re.compile(r"[-\[\]'()]")
_TYPE_TAGS = {"int", "float", "str", "bool", "none", "list", "dict", "tuple", "set"}

_BOUNDS = (
    (annotated_types.Ge, "ge", "at least"),
    (annotated_types.Gt, "gt", "greater than"),
    (annotated_types.Le, "le", "at most"),
    (annotated_types.Lt, "lt", "less than"),
)
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_NUMBER_WORDS = {"must be a whole number", "must be a number"}

_TYPE_WORDS = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list, e.g. [64, 32]",
    "tuple_type": "must be a list, e.g. [64, 32]",
    "set_type": "must be a list, e.g. [64, 32]",
    "dict_type": "must be a section of key: value settings",
    "model_type": "must be a section of key: value settings",
    "model_attributes_type": "must be a section of key: value settings",
}


@dataclass(frozen=True)
class FieldProblem:
    """What is wrong with one key of a config (``key`` is dotted; empty for the whole file)."""

    key: str
    words: str  # "must be greater than 0, or 'auto' (got -1)"; for unknown keys, the keys allowed
    kind: Literal["value", "missing", "unknown"] = "value"

    def line(self) -> str:
        """The CLI's line for it."""
        if self.kind == "unknown":
            return f"unknown key '{self.key}'; allowed here: {self.words}"
        if self.kind == "missing":
            return f"missing required key '{self.key}'"
        return f"'{self.key}': {self.words}" if self.key else self.words


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def error_words(item: dict[str, Any]) -> str:
    """One pydantic error as "must be ..." with the allowed range, without pydantic's wording."""
    kind, ctx = item["type"], item.get("ctx") or {}
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
        "multiple_of": ("a multiple of", "multiple_of"),
    }
    if kind in bounds and bounds[kind][1] in ctx:
        words, name = bounds[kind]
        return f"must be {words} {_number(ctx[name])}"
    if kind == "literal_error" and "expected" in ctx:
        return f"must be {ctx['expected']}"
    if kind in ("too_short", "too_long") and ("min_length" in ctx or "max_length" in ctx):
        bound = "at least" if kind == "too_short" else "at most"
        count = ctx.get("min_length" if kind == "too_short" else "max_length")
        return f"must have {bound} {_plural(int(count), 'item')}"
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    message = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return (
        "must be " + message.removeprefix("Input should be ")
        if message.startswith("Input should be ")
        else message
    )


def field_range(model: type[BaseModel], location: tuple[Any, ...]) -> str:
    """Every bound of a number field in words ("at least 0 and less than 1"), empty when it has
    none: pydantic names only the bound a value broke, a person wants the whole range."""
    for part in location[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    field = model.model_fields.get(str(location[-1])) if location else None
    metadata = field.metadata if field is not None else []
    return " and ".join(
        f"{words} {_number(getattr(item, name))}"
        for item in metadata
        for kind, name, words in _BOUNDS
        if isinstance(item, kind)
    )


def _shown_input(value: Any) -> str:
    # A model-level validator's input is the whole section (for RunConfig: the whole config), which
    # buries the message; only a short scalar says something the message does not.
    if isinstance(value, dict | list | tuple | set) or len(repr(value)) > 80:
        return ""
    return f" (got {value!r})"


def _either(words: list[str]) -> str:
    """The alternatives of a union: "must be greater than 0, or 'auto'"."""
    unique = list(dict.fromkeys(words))
    if all(text.startswith("must be ") for text in unique):
        return "must be " + ", or ".join(text.removeprefix("must be ") for text in unique)
    return "; or ".join(unique)


def validation_problems(
    error: ValidationError,
    allowed_keys: Callable[[tuple[Any, ...]], list[str]],
    messages: dict[str, str] | None = None,
    model: type[BaseModel] | None = None,
) -> list[FieldProblem]:
    """One problem per key (a union's members merged), in pydantic's order. ``messages`` replaces
    the words for some error types (the sweep file's discriminated unions); with the ``model`` that
    was validated, a number out of range or not a number gets the field's whole range."""
    problems: list[FieldProblem] = []
    alternatives: dict[str, tuple[int, list[str], Any]] = {}  # key -> (index in problems, words, input)
    for item in error.errors():
        parts = [
            part
            for part in item["loc"]
            if not (isinstance(part, str) and (_MEMBER_TAG.search(part) or part in _TYPE_TAGS))
        ]
        key = ".".join(str(part) for part in parts)
        if item["type"] == "extra_forbidden":
            problems.append(FieldProblem(key, ", ".join(allowed_keys(item["loc"])), "unknown"))
            continue
        if item["type"] == "missing":
            problems.append(FieldProblem(key, "required", "missing"))
            continue
        words = messages[item["type"]] if messages and item["type"] in messages else error_words(item)
        allowed = (
            field_range(model, item["loc"]) if model is not None and len(parts) == len(item["loc"]) else ""
        )
        if allowed and item["type"] in _RANGE_ERRORS:
            words = f"must be {allowed}"
        elif allowed and words in _NUMBER_WORDS:
            words = f"{words}, {allowed}"
        if len(parts) < len(item["loc"]) and key in alternatives:  # another member of the same union
            index, seen, value = alternatives[key]
            seen.append(words)
            problems[index] = FieldProblem(key, _either(seen) + _shown_input(value))
            continue
        if len(parts) < len(item["loc"]):
            alternatives[key] = (len(problems), [words], item.get("input"))
        problems.append(FieldProblem(key, words + _shown_input(item.get("input"))))
    return problems
