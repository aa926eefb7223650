"""`protfit export`: a run as a standalone Hugging Face model that predicts what the run predicts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file
from transformers import AutoModel

import protfit
from protfit.cli import main
from protfit.config import build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.export import export_run
from protfit.models.sources import ModelError

CASES = {
    "lora": ("tiny-esm2", "lora"),
    "dora": ("tiny-esm2", "dora"),
    "adalora": ("tiny-esm2", "adalora"),
    "ia3": ("tiny-esm2", "ia3"),
    "full": ("tiny-esm2", "full"),
    "freeze": ("tiny-esm2", "freeze"),
    "t5-lora": ("tiny-t5", "lora"),
    "bert-ia3": ("tiny-bert", "ia3"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = write_synthetic_dataset(
        root / "data", "regression", n_train=32, n_validation=16, n_test=16, seed=5, min_len=20, max_len=40
    )
    folders = {}
    for case, (name, method) in CASES.items():
        raw = {
            "data": {"path": str(data), "problem_type": "regression", "batch_size": 8},
            "model": {"name": name, "method": method, "pooler": "attention1d", "head": {"hidden_dims": [8]}},
            "train": {"epochs": 1, "learning_rate": 1e-2, "progress": False},
            "evaluation": {"bootstrap": {"resamples": 10}, "baselines": {"enabled": False}},
            # keep_last: `export --checkpoint last` is tested too
            "output": {"dir": str(root / "runs"), "name": case, "checkpoints": {"keep_last": True}},
        }
        folders[case] = protfit.train(build_config(raw)).run_dir
    sequences = pd.read_csv(data / "test.csv")["aa_seq"].tolist()
    return folders, sequences


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_exported_model_predicts_like_the_run_without_peft(runs, case, tmp_path):
    folders, sequences = runs
    out = export_run(folders[case], tmp_path / "exported")

    for name in ["config.yaml", "model_meta.json", "export.json", "checkpoints/best/model.safetensors"]:
        assert (out / name).is_file(), name
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["method"] == "freeze"
    assert config["model"]["name"] == "backbone"  # resolved against the export folder: movable
    head_weights = load_file(out / "checkpoints/best/model.safetensors")
    assert head_weights and all(key.startswith(("pooler.", "head.")) for key in head_weights)

    # the backbone folder is a plain transformers model: adapters merged, no peft names left
    encoder_weights = load_file(out / "backbone" / "model.safetensors")
    assert not [key for key in encoder_weights if "lora" in key or "ia3" in key or "base_layer" in key]
    assert AutoModel.from_pretrained(out / "backbone") is not None

    original = protfit.load(folders[case]).outputs(sequences)
    moved = out.rename(tmp_path / "moved_elsewhere")
    exported = protfit.load(moved).outputs(sequences)
    assert np.allclose(exported, original, atol=1e-5, rtol=0), np.abs(exported - original).max()


@pytest.mark.slow
def test_training_changed_the_exported_weights(runs, tmp_path):
    # an export that silently dropped the adapters would still load; the merged weights must differ
    folders, _ = runs
    base = load_file(export_run(folders["freeze"], tmp_path / "freeze") / "backbone" / "model.safetensors")
    merged = load_file(export_run(folders["lora"], tmp_path / "lora") / "backbone" / "model.safetensors")
    query = [key for key in merged if key.endswith("attention.self.query.weight")]
    assert query and all(not np.array_equal(merged[k].numpy(), base[k].numpy()) for k in query)
    untouched = [key for key in merged if key.endswith("attention.output.dense.weight")]
    assert untouched and all(np.array_equal(merged[k].numpy(), base[k].numpy()) for k in untouched)


@pytest.mark.slow
def test_cli_export_refuses_to_overwrite_unless_asked(runs, tmp_path, capsys):
    folders, _ = runs
    out = tmp_path / "cli"
    assert main(["export", str(folders["lora"]), str(out)]) == 0
    assert "AutoModel.from_pretrained" in capsys.readouterr().out
    assert main(["export", str(folders["lora"]), str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["export", str(folders["ia3"]), str(out), "--overwrite", "--checkpoint", "last"]) == 0
    assert json.loads((out / "export.json").read_text())["method"] == "ia3"
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert main(["export", str(folders["lora"]), str(precious), "--overwrite"]) == 2
    assert "not an earlier protfit export" in capsys.readouterr().err
    assert (precious / "notes.txt").is_file()

    fasta = tmp_path / "seqs.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n>b\nACDEFGHIKLMNPQ\n")
    assert main(["predict", str(out), str(fasta), "-o", str(tmp_path / "pred.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "pred.csv")) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"method": "qlora"}, "export of a qlora run is not supported"),
        ({"name": "onehot", "method": "freeze"}, "onehot baseline has no transformer weights"),
    ],
)
def test_unexportable_runs_are_refused_with_a_reason(runs, tmp_path, edit, message):
    folders, _ = runs
    run = shutil.copytree(folders["lora"], tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"].update(edit)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ModelError, match=message):
        export_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_of_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a protfit run folder"):
        export_run(tmp_path, tmp_path / "out")
