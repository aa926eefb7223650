"""User plug-in modules from the command line: --plugins, recorded in the run folder, imported again by
eval / predict / export, a clear message when one is gone; the protfit.plugins entry-point group."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import textwrap

import pandas as pd
import pytest
import yaml

from protfit import registry
from protfit.cli import main
from protfit.data.synthetic import write_synthetic_dataset
from protfit.registry import POOLERS, Registry

MODULE = "user_pooler_module"
POOLER = textwrap.dedent(
    """
    from torch import nn

    from protfit.registry import POOLERS


    class FirstResidue(nn.Module):
        def __init__(self, hidden_size):
            super().__init__()
            self.output_dim = hidden_size

        def forward(self, hidden, residue_mask):
            first = residue_mask.long().argmax(dim=1)
            return hidden[range(len(hidden)), first]


    @POOLERS.register("first_residue", "the first residue's state", uses=())
    def first_residue(hidden_size, cfg):
        return FirstResidue(hidden_size)
    """
)


@pytest.fixture
def fresh_process(tmp_path, monkeypatch):
    """The user module on the path, and a way to forget it as a new process would not know it."""
    POOLERS.names()
    builtins = dict(POOLERS._entries)
    monkeypatch.setattr(POOLERS, "_entries", dict(builtins))
    monkeypatch.setattr(registry, "_plugin_modules", [])
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(POOLER)
    monkeypatch.syspath_prepend(str(folder))

    def forget() -> None:
        sys.modules.pop(MODULE, None)
        monkeypatch.setattr(POOLERS, "_entries", dict(builtins))
        monkeypatch.setattr(registry, "_plugin_modules", [])

    yield folder, forget
    sys.modules.pop(MODULE, None)


def test_a_user_pooler_round_trips_train_eval_predict_export(fresh_process, tmp_path, capsys):
    folder, forget = fresh_process
    data = write_synthetic_dataset(
        tmp_path / "data", "regression", seed=4, n_train=60, n_validation=20, n_test=20
    )
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"path": str(data), "problem_type": "regression", "batch_size": 16},
                "model": {"name": "tiny-esm2", "method": "freeze", "pooler": "first_residue"},
                "train": {"epochs": 1, "progress": False},
                "evaluation": {"bootstrap": {"resamples": 10}, "baselines": {"enabled": False}},
                "output": {"dir": str(tmp_path / "runs"), "name": "run"},
            }
        )
    )
    assert main(["train", str(config)]) == 2  # the pooler is unknown without its module
    assert "unknown pooler 'first_residue'" in capsys.readouterr().err
    assert main(["train", str(config), "--plugins", MODULE]) == 0
    run = tmp_path / "runs" / "run"
    assert json.loads((run / "model_meta.json").read_text())["plugin_modules"] == [MODULE]

    forget()  # eval, predict and export import the recorded module themselves
    assert main(["eval", str(run), "--split", "test", "-o", str(tmp_path / "eval")]) == 0
    forget()
    assert main(["predict", str(run), str(data / "test.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")["prediction"].to_numpy()
    assert predicted == pytest.approx(
        pd.read_csv(run / "test_predictions.csv")["prediction"].to_numpy(), abs=1e-5
    )
    forget()
    assert main(["export", str(run), str(tmp_path / "exported")]) == 0
    forget()
    assert (
        main(["predict", str(tmp_path / "exported"), str(data / "test.csv"), "-o", str(tmp_path / "e.csv")])
        == 0
    )
    assert pd.read_csv(tmp_path / "e.csv")["prediction"].to_numpy() == pytest.approx(predicted, abs=1e-4)

    forget()
    (folder / f"{MODULE}.py").unlink()  # the module is gone: one line naming it and where it was recorded
    capsys.readouterr()
    assert main(["predict", str(run), str(data / "test.csv"), "-o", str(tmp_path / "q.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        f"protfit predict: error: plug-in module '{MODULE}' (recorded in {run / 'model_meta.json'})"
    )
    assert "cannot be imported" in error and len(error.splitlines()) == 1


def test_a_missing_plugins_module_is_one_clear_line(capsys):
    assert main(["train", "run.yaml", "--plugins", "no_such_protfit_plugin"]) == 2
    assert capsys.readouterr().err.strip() == (
        "protfit train: error: plug-in module 'no_such_protfit_plugin' (--plugins) cannot be imported: No "
        "module named 'no_such_protfit_plugin'; install it or put its folder on PYTHONPATH"
    )


def test_modules_of_the_entry_point_group_are_imported_when_a_registry_loads(fresh_process, monkeypatch):
    point = importlib.metadata.EntryPoint(name="mine", value=MODULE, group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group: [point] if group == registry.ENTRY_POINT_GROUP else [],
    )
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    Registry("thing", "x.thing").names()
    assert "first_residue" in POOLERS and registry.plugin_modules() == [MODULE]


def test_the_web_ui_passes_its_plugin_modules_to_the_runs_it_starts(monkeypatch):
    from protfit.webui.jobs import plugins_option

    monkeypatch.setattr(registry, "_plugin_modules", [])
    assert plugins_option() == []
    monkeypatch.setattr(registry, "_plugin_modules", ["lab.poolers", "lab.losses"])
    assert plugins_option() == ["--plugins", "lab.poolers,lab.losses"]
