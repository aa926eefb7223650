"""The regularization section: every technique off by default, diagnostics on; impossible combinations
refused at config validation, before any data or model loads."""

from __future__ import annotations

import pytest
from reg_helpers import R, make_config

from protfit.config import ConfigError, RunConfig, ignored_settings
from protfit.registry import PLUGINS


def test_defaults_leave_every_technique_off_but_the_diagnostics(tmp_path):
    cfg = make_config(tmp_path, tmp_path)
    assert cfg.regularization.enabled() == []
    assert cfg.regularization.diagnostics.enabled
    # one registry entry per config sub-section (the other plug-ins are the experiment trackers)
    regularizers = {name for name in PLUGINS.names() if not name.startswith("tracker:")}
    assert regularizers == set(type(cfg.regularization).model_fields)


def test_every_field_is_described():
    section = RunConfig.model_fields["regularization"].annotation
    for name, field in section.model_fields.items():
        for key, sub in field.annotation.model_fields.items():
            assert sub.description, f"regularization.{name}.{key} has no description"


@pytest.mark.parametrize(
    ("overrides", "method", "problem", "message"),
    [
        (
            [R + "swa.enabled=true", R + "ema.enabled=true"],
            "full",
            "single_label_classification",
            "enable one",
        ),
        ([R + "label_smoothing.enabled=true"], "full", "regression", "for classification"),
        (
            [R + "privacy.enabled=true"],
            "full",
            "single_label_classification",
            "supports model.method=freeze only",
        ),
        ([R + "privacy.enabled=true"], "lora", "single_label_classification", "Opacus cannot compute"),
        (
            [R + "privacy.enabled=true", R + "sam.enabled=true"],
            "freeze",
            "single_label_classification",
            "cannot be combined with sam",
        ),
        ([R + "l2_sp.enabled=true"], "freeze", "single_label_classification", "keeps the backbone frozen"),
        (
            [R + "adversarial.enabled=true"],
            "freeze",
            "single_label_classification",
            "keeps the backbone frozen",
        ),
        (
            [R + "dropout.enabled=true", R + "dropout.hidden=0.2"],
            "freeze",
            "single_label_classification",
            "eval mode",
        ),
        (
            [R + "dropout.enabled=true", R + "dropout.layerwise_step=0.1"],
            "full",
            "single_label_classification",
            "needs the bottom",
        ),
        ([R + "augmentation.enabled=true"], "full", "single_label_classification", "every \\*_prob is 0"),
        ([R + "freeze_layers.enabled=true"], "adalora", "regression", "scores every adapter by its gradient"),
        (
            [R + "gradual_unfreezing.enabled=true"],
            "adalora",
            "regression",
            "scores every adapter by its gradient",
        ),
        (
            [R + "dropout.enabled=true", R + "dropout.hidden=1.5"],
            "full",
            "single_label_classification",
            "less than 1",
        ),
        (
            [R + "emma.enabled=true"],
            "full",
            "single_label_classification",
            "unknown key 'regularization.emma'",
        ),
    ],
)
def test_impossible_combinations_are_refused(tmp_path, overrides, method, problem, message):
    with pytest.raises(ConfigError, match=message):
        make_config(tmp_path, tmp_path, *overrides, method=method, problem=problem)


def test_settings_of_a_technique_that_is_off_are_reported(tmp_path):
    cfg = make_config(tmp_path, tmp_path, R + "ema.decay=0.5", R + "sam.enabled=true", R + "sam.rho=0.1")
    assert ignored_settings(cfg) == [("regularization.ema.decay", "regularization.ema.enabled is false")]
