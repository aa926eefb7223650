"""RunConfig schema -> option widgets, and widget values -> a validated RunConfig.

The Train tab has no hand-written option widgets: :func:`field_specs` walks ``RunConfig.model_fields``
recursively and describes one widget per leaf field (type, default, limits, ``Literal`` choices,
registry choices, description as help text), so a field added to the config appears in the UI with
no UI code. Values are turned back into the nested dict a YAML file would hold and validated by
:func:`protfit.config.build_config`, so the UI refuses exactly what the CLI refuses, with the same
message.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel

from protfit import config as config_module
from protfit.config import ConfigError
from protfit.registry import METHODS, POOLERS, SCHEDULERS, Registry, list_registries

# Keys the UI sets itself: the dataset picker chooses data.path (explicit file paths could point
# outside the workspace), and every UI run gets its own output folder under the workspace's runs/.
MANAGED_KEYS = {
    "data.path",
    "data.train_file",
    "data.validation_file",
    "data.test_file",
    "output.dir",
    "output.name",
    "output.overwrite",
}
# Registry-backed fields that also accept names outside the registry (model.name: a hub id or a folder).
OPEN_CHOICES = {"model.name"}
# Scheduler settings every schedule reads; the others show only for schedules that list them in `uses`.
SCHEDULER_COMMON = {"name", "warmup_steps", "warmup_ratio"}

Kind = Literal["dropdown", "multiselect", "checkbox", "number", "text", "yaml"]


# Leaf names that say nothing without their section ("Name" of what?): their label names the section.
VAGUE_LEAVES = {"name", "type", "enabled", "dir", "init"}
# Words written as people write them, not as Python names.
WORDS = {
    "lr": "LR",
    "lora": "LoRA",
    "adalora": "AdaLoRA",
    "qlora": "QLoRA",
    "ses": "SES",
    "ema": "EMA",
    "swa": "SWA",
    "sam": "SAM",
    "rdrop": "R-Drop",
    "l2": "L2",
    "sp": "SP",
    "ss8": "SS8",
    "bn": "batch norm",
    "num": "number of",
    "seq": "sequence",
    "len": "length",
    "r": "rank r",
}


def humanise(key: str) -> str:
    """A readable label for a dotted key: ``train.learning_rate`` -> "Learning rate",
    ``train.scheduler.name`` -> "Scheduler name"."""
    parts = key.split(".")
    words = parts[-1].split("_")
    if parts[-1] in VAGUE_LEAVES and len(parts) > 2:
        words = [*parts[-2].split("_"), *words]
    text = " ".join(WORDS.get(word, word) for word in words)
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class FieldSpec:
    """One option widget: ``key`` is the dotted config key (shown in the help text: it is what a
    YAML file or a ``key=value`` override names), ``label`` the readable words."""

    key: str
    kind: Kind
    default: Any  # the widget's initial value
    required: bool
    optional: bool  # None is a valid value (an empty widget means None)
    info: str
    choices: tuple[Any, ...] = ()
    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    allow_custom: bool = False
    title: str | None = None  # the field's own title, when the config gives one

    @property
    def label(self) -> str:
        return self.title or humanise(self.key)

    @property
    def help(self) -> str:
        """The help line under the widget: the key a YAML file would use, then the config's own text."""
        return f"{self.key}: {self.info}" if self.info else self.key

    @property
    def section(self) -> str:
        return self.key.rsplit(".", 1)[0]


def run_config_model() -> type[BaseModel]:
    """Looked up at call time, so a field added to the config (or a test's patched config) shows."""
    return config_module.RunConfig


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1 and len(args) < len(get_args(annotation)):
            return args[0], True
    return annotation, False


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _limits(metadata: list[Any]) -> tuple[float | None, float | None, str]:
    """(minimum, maximum) for the widget (inclusive bounds only) and the range as help text."""
    low = high = None
    words = []
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
            words.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            words.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            high = item.le
            words.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            words.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            words.append(f"at least {item.min_length}")
    return low, high, " and ".join(words)


def yaml_text(value: Any) -> str:
    """A value as the one-line YAML a person would type: ``[64, 32]``, ``0.001``, empty for None."""
    if value is None:
        return ""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _registries_by_key() -> dict[str, Registry]:
    return {registry.config_key: registry for registry in list_registries().values()}


def _leaf_spec(key: str, field: Any, registries: dict[str, Registry]) -> FieldSpec:
    annotation, optional = _strip_optional(field.annotation)
    required = field.is_required()
    default = None if required else field.get_default(call_default_factory=True)
    low, high, limits = _limits(field.metadata)
    info = " ".join(
        part for part in (field.description or "", f"(allowed: {limits})" if limits else "") if part
    )
    common = {"key": key, "required": required, "optional": optional, "info": info, "title": field.title}
    origin, args = get_origin(annotation), get_args(annotation)

    if origin is Literal:
        return FieldSpec(kind="dropdown", default=default, choices=args, **common)
    if origin is list:
        item_type = args[0] if args else Any
        if get_origin(item_type) is Literal:
            return FieldSpec(kind="multiselect", default=default, choices=get_args(item_type), **common)
        if key in registries:
            names = tuple(registries[key].names())
            return FieldSpec(kind="multiselect", default=default or [], choices=names, **common)
        return FieldSpec(kind="yaml", default=yaml_text(default), **common)
    if annotation is bool:
        return FieldSpec(kind="checkbox", default=bool(default), **common)
    if annotation in (int, float):
        return FieldSpec(
            kind="number", default=default, integer=annotation is int, minimum=low, maximum=high, **common
        )
    if annotation is str and key in registries:
        names = registries[key].names()
        if default is not None and default not in names:  # model.family: "auto" is not a family
            names = [default, *names]
        return FieldSpec(
            kind="dropdown", default=default, choices=tuple(names), allow_custom=key in OPEN_CHOICES, **common
        )
    if annotation is str:
        return FieldSpec(kind="text", default=default or "", **common)
    return FieldSpec(kind="yaml", default=yaml_text(default), **common)


def field_specs(model: type[BaseModel] | None = None, prefix: str = "") -> list[FieldSpec]:
    """One spec per leaf field of the config, depth first in declaration order, managed keys left out."""
    model = model or run_config_model()
    registries = _registries_by_key()
    specs: list[FieldSpec] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation, _ = _strip_optional(field.annotation)
        if _is_section(annotation):
            specs.extend(field_specs(annotation, f"{key}."))
        elif key not in MANAGED_KEYS:
            specs.append(_leaf_spec(key, field, registries))
    return specs


def sections(specs: list[FieldSpec]) -> list[str]:
    """Section keys in first-seen order (``data``, ``model``, ``model.head``, ...)."""
    seen: dict[str, None] = {}
    for spec in specs:
        parts = spec.section.split(".")
        for depth in range(1, len(parts) + 1):
            seen.setdefault(".".join(parts[:depth]))
    return list(seen)


# ---- which options matter for the current choices ------------------------------------------------


def _uses(registry: Registry) -> set[str]:
    return {key for entry in registry.entries() for key in entry.options.get("uses", ())}


def controller(key: str) -> tuple[str, Registry, str] | None:
    """(choosing key, its registry, the name the entries' ``uses`` give this key), for options that
    matter only for some choices; None for options that always apply.

    The same rule :func:`protfit.config.ignored_settings` warns by: ``model.lora.*`` and ``model.ses.*``
    (and ``model.embedding_cache``) belong to the methods listing them, ``model.pooler_dropout`` to the
    poolers, and every scheduler setting but the name and warm-up to the schedules listing it.
    """
    if key.startswith("model."):
        rest = key.removeprefix("model.")
        method_uses = _uses(METHODS)
        sections_used = {use.split(".")[0] for use in method_uses if "." in use}
        if rest in method_uses or ("." in rest and rest.split(".")[0] in sections_used):
            return "model.method", METHODS, rest
        if rest in _uses(POOLERS):
            return "model.pooler", POOLERS, rest
    if key.startswith("train.scheduler."):
        rest = key.removeprefix("train.scheduler.")
        if rest not in SCHEDULER_COMMON:
            return "train.scheduler.name", SCHEDULERS, rest
    return None


def switch(key: str) -> str | None:
    """``regularization.<technique>.enabled`` for the other settings of a technique: they show only
    while the technique is on (the config's convention: a technique is on when ``enabled`` is true)."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "regularization" and parts[2] != "enabled":
        return f"regularization.{parts[1]}.enabled"
    return None


def controlling_keys(specs: list[FieldSpec]) -> list[str]:
    keys = {rule[0] for spec in specs if (rule := controller(spec.key)) is not None}
    keys |= {on for spec in specs if (on := switch(spec.key)) is not None}
    return [spec.key for spec in specs if spec.key in keys]


def is_visible(key: str, values: dict[str, Any]) -> bool:
    on = switch(key)
    if on is not None and on in values:
        return bool(values[on])
    rule = controller(key)
    if rule is None:
        return True
    choosing, registry, used = rule
    name = values.get(choosing)
    if name not in registry:
        return False
    return used in registry.entry(name).options.get("uses", ())


# ---- widget values -> config ---------------------------------------------------------------------


def _convert(spec: FieldSpec, value: Any) -> Any:
    if spec.kind == "number":
        if isinstance(value, str):  # an optional number is a text box: empty means None
            value = value.strip()
            value = yaml.safe_load(value) if value else None
        if value is None:
            return None
        if spec.integer and isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if spec.kind == "text":
        return None if value in (None, "") and spec.optional else (value or "")
    if spec.kind == "yaml":
        text = (value or "").strip()
        if not text:
            return None if spec.optional else []
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(
                f"invalid configuration (web UI):\n  - '{spec.key}': not a YAML value ({error.problem}); "
                f"write a list like [64, 32]"
            ) from None
    if spec.kind == "dropdown":
        return None if value in (None, "") else value
    if spec.kind == "multiselect":
        return list(value or [])
    return bool(value)


def values_to_raw(specs: list[FieldSpec], values: list[Any]) -> dict[str, Any]:
    """The nested dict a YAML file would hold: required keys, and every visible value that differs
    from its default (a hidden option — LoRA settings with ``freeze`` — is left out, so it is never
    silently carried along)."""
    by_key = dict(zip([spec.key for spec in specs], values, strict=True))
    raw: dict[str, Any] = {}
    for spec, value in zip(specs, values, strict=True):
        if not is_visible(spec.key, by_key):
            continue
        converted = _convert(spec, value)
        default = _convert(spec, spec.default)
        if converted is None and spec.required:
            continue  # build_config says "missing required key"
        if not spec.required and converted == default:
            continue
        node = raw
        *parents, leaf = spec.key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = converted
    return raw


def build(raw: dict[str, Any]) -> Any:
    """The validated RunConfig; a :class:`ConfigError` carries build_config's message verbatim."""
    return config_module.build_config(raw, "web UI")


def raw_to_values(specs: list[FieldSpec], raw: dict[str, Any]) -> list[Any]:
    """Widget values for a config dict (e.g. a run's config.yaml): the inverse of values_to_raw."""
    values = []
    for spec in specs:
        node: Any = raw
        for part in spec.key.split("."):
            node = node.get(part, spec.default) if isinstance(node, dict) else spec.default
        if node is spec.default:
            values.append(spec.default)
        elif spec.kind == "yaml":
            values.append(yaml_text(node))
        elif spec.kind == "text":
            values.append("" if node is None else str(node))
        else:
            values.append(node)
    return values
