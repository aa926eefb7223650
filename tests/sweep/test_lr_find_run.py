"""The range test on real runs: every method, the embedding cache for freeze, train.learning_rate=auto."""

import json

import pytest
import torch
import yaml

from protfit.cli import main
from protfit.config import ConfigError, apply_overrides, build_config
from protfit.training.lr_range_test import RangeTestResult, RangeTestSettings, run_range_test
from protfit.training.setup import setup_run
from protfit.training.train import train


def run_config(base_config, tmp_path, *overrides):
    raw = {**base_config(), "output": {"dir": str(tmp_path), "name": "run"}}
    raw["train"]["progress"] = False
    return build_config(apply_overrides(raw, list(overrides)))


@pytest.mark.parametrize(
    ("model", "method"), [("onehot", "full"), ("tiny-esm2", "freeze"), ("tiny-esm2", "lora")]
)
def test_suggestion_inside_the_range_and_the_run_untouched(base_config, tmp_path, model, method):
    cfg = run_config(base_config, tmp_path, f"model.name={model}", f"model.method={method}")
    parts = setup_run(cfg)
    before = {key: value.clone() for key, value in parts.unwrapped_model.state_dict().items()}
    groups_lr = [group["lr"] for group in parts.optimizer.param_groups]
    rng = torch.get_rng_state()
    settings = RangeTestSettings(start_lr=1e-6, end_lr=10.0, num_steps=30)
    result = run_range_test(parts, parts.optimizer, cfg.train.learning_rate, settings)
    assert 1e-6 <= result.suggestion <= 10.0
    assert result.extra["embedding_cache"] == (method == "freeze")
    after = parts.unwrapped_model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert [group["lr"] for group in parts.optimizer.param_groups] == groups_lr
    assert not parts.optimizer.state_dict()["state"]  # no Adam moments left behind
    assert torch.equal(torch.get_rng_state(), rng)


def test_train_with_auto_learning_rate_records_the_suggestion(base_config, tmp_path):
    cfg = run_config(base_config, tmp_path, "train.learning_rate=auto", "train.epochs=1")
    result = train(cfg)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    found = summary["lr_find"]
    assert found["rule"] == "steepest" and found["start_lr"] <= found["suggested_lr"] <= found["end_lr"]
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["train"]["learning_rate"] == pytest.approx(found["suggested_lr"])
    history = summary["history"]
    assert history[0]["lr"] <= found["suggested_lr"] * (1 + 1e-6)  # the schedule runs from the suggestion
    assert (result.run_dir / "lr_find.png").is_file() and (result.run_dir / "lr_find.csv").is_file()


def test_auto_is_resolved_before_any_plugin_is_built_and_the_config_is_left_as_given(base_config, tmp_path):
    # layer-wise LR decay multiplies the rate when its parameter groups are built: it must get a number
    cfg = run_config(
        base_config,
        tmp_path,
        "model.name=tiny-esm2",
        "train.learning_rate=auto",
        "train.epochs=1",
        "regularization.layerwise_lr.enabled=true",
        "regularization.layerwise_lr.decay=0.5",
    )
    given = cfg.model_copy(deep=True)
    result = train(cfg)
    assert cfg == given and cfg.train.learning_rate == "auto"
    suggestion = json.loads((result.run_dir / "summary.json").read_text())["lr_find"]["suggested_lr"]
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["train"]["learning_rate"] == pytest.approx(suggestion)
    assert saved["regularization"]["layerwise_lr"] == {**given.regularization.layerwise_lr.model_dump()}


def test_setup_of_an_auto_config_builds_the_run_from_the_resolved_config(base_config, tmp_path):
    cfg = run_config(base_config, tmp_path, "train.learning_rate=auto", "train.epochs=1")
    parts = setup_run(cfg)
    assert parts.cfg is not cfg and parts.cfg.train.learning_rate == parts.lr_find.suggestion
    assert {group["lr"] for group in parts.optimizer.param_groups} == {parts.lr_find.suggestion}
    assert parts.cfg.model_dump(exclude={"train"}) == cfg.model_dump(exclude={"train"})


def test_learning_rate_accepts_a_number_or_auto_only(base_config, tmp_path):
    with pytest.raises(ConfigError, match="train.learning_rate"):
        run_config(base_config, tmp_path, "train.learning_rate=fast")
    with pytest.raises(ConfigError, match="train.learning_rate"):
        run_config(base_config, tmp_path, "train.learning_rate=-1")


def test_lr_find_command(base_config, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(base_config()))
    out = tmp_path / "lr"
    code = main(
        [
            "lr-find",
            str(config),
            "train.progress=false",
            "--num-steps",
            "25",
            "--rule",
            "min_div_10",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "suggested learning rate" in printed and "minimum smoothed loss, divided by 10" in printed
    # the command to use it repeats the overrides the suggestion was measured with
    use = next(line for line in printed.splitlines() if line.startswith("use it: "))
    assert use.startswith(f"use it: protfit train {config} train.progress=false train.learning_rate=")
    lines = (out / "lr_find.csv").read_text().splitlines()
    assert lines[0] == "lr,loss,smoothed_loss" and 2 <= len(lines) <= 26
    assert (out / "lr_find.png").stat().st_size > 1000
    assert json.loads((out / "lr_find.json").read_text())["rule"] == "min_div_10"
    assert main(["lr-find", str(config), "--start-lr", "1", "--end-lr", "0.1", "-o", str(out)]) == 2


def test_lr_find_command_warns_when_the_curve_cannot_be_trusted(base_config, tmp_path, capsys, monkeypatch):
    from protfit.sweep import lr_find as module

    flat = RangeTestResult(
        learning_rates=[1e-4, 1e-2, 1.0],
        losses=[1.0, 1.0, 9.0],
        smoothed_losses=[1.0, 1.0, 9.0],
        suggestion=0.1,
        rule="divergence_div_10",
        stopped="diverged at lr 1",
        start_lr=1e-4,
        end_lr=1.0,
        num_steps=3,
        extra={"requested_rule": "steepest"},
    )
    monkeypatch.setattr(module, "lr_find", lambda *args, **kwargs: (flat, tmp_path))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(base_config()))
    assert main(["lr-find", str(config)]) == 0
    assert "WARNING: the loss curve is too flat or noisy to trust" in capsys.readouterr().out


def test_too_few_range_test_steps_are_warned_about_before_any_work(
    base_config, tmp_path, caplog, monkeypatch
):
    from protfit.sweep import lr_find as module

    monkeypatch.setattr(module, "setup_run", lambda cfg: (_ for _ in ()).throw(RuntimeError("built")))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(base_config()))
    with caplog.at_level("WARNING", logger="protfit"), pytest.raises(RuntimeError, match="built"):
        module.lr_find(str(config), settings=module.RangeTestSettings(num_steps=3))
    assert "3 steps are too few for the range test" in caplog.text
