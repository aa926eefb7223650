"""The option widgets generated from the config schema, placed where the guided flow needs them.

The common options are placed by the step that needs them (problem type in Data, method in Model,
epochs in Train); every other option goes into "Advanced", grouped by config section. All of them are
generated from :func:`protfit.webui.schema.field_specs`, so a field added to the config appears here.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from protfit.webui import catalog, schema

# Options a first run needs, by the step that shows them; everything else is under "Advanced".
COMMON = {
    "data": ["data.problem_type", "data.label_column", "data.sequence_column", "data.label_names"],
    "model": ["model.name", "model.method", "model.pooler", "model.head.type"],
    "train": ["train.epochs", "train.learning_rate", "data.batch_size"],
}
COMMON_KEYS = {key for keys in COMMON.values() for key in keys}
# An example in the empty box where the generic list example would mislead.
PLACEHOLDERS = {"data.label_names": "e.g. [binder, non-binder]; empty: class indices 0, 1, …"}


def _widget(spec: schema.FieldSpec, visible: bool) -> gr.components.Component:
    common = {"label": spec.label, "info": spec.help, "visible": visible, "min_width": 260}
    if spec.key == "model.name":
        return gr.Dropdown(
            choices=catalog.choices(),
            value=catalog.default_model(),
            allow_custom_value=True,
            **{**common, "label": "Model"},
        )
    if spec.kind == "dropdown":
        return gr.Dropdown(
            choices=list(spec.choices), value=spec.default, allow_custom_value=spec.allow_custom, **common
        )
    if spec.kind == "multiselect":
        return gr.Dropdown(choices=list(spec.choices), value=spec.default, multiselect=True, **common)
    if spec.kind == "checkbox":
        return gr.Checkbox(value=spec.default, **common)
    if spec.kind == "number" and spec.optional:
        # gr.Number cannot be empty (it sends 0), and empty is how a person says None here
        value = "" if spec.default is None else str(spec.default)
        return gr.Textbox(value=value, placeholder="empty: None", **common)
    if spec.kind == "number":
        return gr.Number(
            value=spec.default,
            minimum=spec.minimum,
            maximum=spec.maximum,
            precision=0 if spec.integer else None,
            step=1 if spec.integer else 0.0001,
            **common,
        )
    return gr.Textbox(value=spec.default, placeholder=PLACEHOLDERS.get(spec.key, _yaml_hint(spec)), **common)


def _yaml_hint(spec: schema.FieldSpec) -> str | None:
    return "YAML, e.g. [64, 32]" if spec.kind == "yaml" else None


def _section_label(section: str) -> str:
    """``model.lora`` -> "LoRA (model.lora)": words to read, the key to write; ``data`` -> "Data"."""
    return schema.humanise(section) + (f" ({section})" if "." in section else "")


class OptionForm:
    """The generated option widgets, their placement and their visibility rules."""

    def __init__(self, specs: list[schema.FieldSpec]) -> None:
        self.specs = specs
        self.by_key = {spec.key: spec for spec in specs}
        self.widgets: dict[str, gr.components.Component] = {}
        self.groups: dict[str, gr.Accordion] = {}
        defaults = {spec.key: spec.default for spec in specs}
        self.shown = {spec.key: schema.is_visible(spec.key, defaults) for spec in specs}

    def place(self, keys: list[str]) -> None:
        """The widgets of ``keys`` in one row (the common options of a step)."""
        with gr.Row(equal_height=False):
            for key in keys:
                self.widgets[key] = _widget(self.by_key[key], self.shown[key])

    def place_advanced(self) -> None:
        """Every option not placed yet, one accordion per config section."""
        rest = [spec for spec in self.specs if spec.key not in self.widgets]
        for top in (section for section in schema.sections(rest) if "." not in section):
            with gr.Accordion(_section_label(top), open=False):
                self._render(top, rest)

    def _render(self, section: str, rest: list[schema.FieldSpec]) -> None:
        own = [spec for spec in rest if spec.section == section]
        if own:
            with gr.Row(equal_height=False):
                for spec in own:
                    self.widgets[spec.key] = _widget(spec, self.shown[spec.key])
        children = [s for s in schema.sections(rest) if s.rsplit(".", 1)[0] == section and "." in s]
        for child in children:
            inside = [spec.key for spec in rest if spec.key.startswith(child + ".")]
            visible = any(self.shown[key] for key in inside)
            with gr.Accordion(_section_label(child), open=False, visible=visible) as group:
                self.groups[child] = group
                self._render(child, rest)

    @property
    def components(self) -> list[gr.components.Component]:
        return [self.widgets[spec.key] for spec in self.specs]

    def visibility(self, *values: Any) -> list[Any]:
        """gr.update(visible=...) for every widget, then every sub-section accordion."""
        by_key = dict(zip([spec.key for spec in self.specs], values, strict=True))
        shown = {spec.key: schema.is_visible(spec.key, by_key) for spec in self.specs}
        updates = [gr.update(visible=shown[spec.key]) for spec in self.specs]
        for section in self.groups:
            inside = [key for key in shown if key.startswith(section + ".") and key not in COMMON_KEYS]
            updates.append(gr.update(visible=any(shown[key] for key in inside)))
        return updates

    @property
    def outputs(self) -> list[Any]:
        return [*self.components, *self.groups.values()]

    def wire_visibility(self) -> None:
        for key in schema.controlling_keys(self.specs):
            self.widgets[key].change(self.visibility, self.components, self.outputs, queue=False)
