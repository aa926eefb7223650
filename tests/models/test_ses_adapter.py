"""The structure-aware adapter (model.method=ses_adapter): what trains, shapes, errors, and that it learns
a label that only the structure strings carry, end to end through training, loading and prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import protfit
from protfit.cli import main
from protfit.config import build_config
from protfit.data.batching import EncodedDataset, ProteinCollator
from protfit.data.errors import DataError
from protfit.data.loading import read_sequences
from protfit.data.validation import FOLDSEEK_ALPHABET, STANDARD_RESIDUES
from protfit.models.methods import apply_method
from protfit.models.protein_model import build_model, load_trainable_state_dict, trainable_state_dict
from protfit.models.ses_adapter import SesAdapter

FRAME = pd.DataFrame(
    {
        "aa_seq": ["MKTAYIAKQR", "ACDEF", "WYVTSRQP"],
        "foldseek_seq": ["DVVLPDDQKW", "PCSQV", "ACDEFGHI"],
        "ss8_seq": ["HHHHEE-CLT", "GIBSS", "--CCLLHE"],
    }
)
SES = {"embedding_dim": 32, "num_heads": 2}


def _ses_model(make_config, name="tiny-esm2", pooler="mean", **ses):
    cfg = make_config(name=name, method="ses_adapter", pooler=pooler, ses={**SES, **ses})
    return apply_method(build_model(cfg, 2), cfg, total_steps=1), cfg


def _inputs(model, cfg, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
    backbone = model.backbone
    dataset = EncodedDataset(
        frame,
        backbone.tokenize(frame["aa_seq"].tolist()),
        "single_label_classification",
        2,
        structure_inputs=cfg.model.structure_inputs,
    )
    batch = ProteinCollator(backbone.pad_token_id, "single_label_classification", 2)(
        [dataset[index] for index in range(len(dataset))]
    )
    return {key: value for key, value in batch.items() if key != "index"}


def test_only_adapter_pooler_and_head_train_and_the_backbone_stays_put(make_config):
    model, cfg = _ses_model(make_config, pooler="attention1d")
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"adapter", "pooler", "head"}
    assert all(p.requires_grad for p in model.adapter.parameters())
    before = {key: value.clone() for key, value in model.backbone.state_dict().items()}
    adapter_before = {key: value.clone() for key, value in model.adapter.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    assert not model.backbone.training  # frozen backbone: eval mode, no dropout
    model(**_inputs(model, cfg, FRAME)).pow(2).mean().backward()
    optimizer.step()
    assert all(torch.equal(before[key], value) for key, value in model.backbone.state_dict().items())
    assert any(not torch.equal(adapter_before[k], v) for k, v in model.adapter.state_dict().items())
    assert any(key.startswith("adapter.") for key in trainable_state_dict(model))


@pytest.mark.parametrize("pooler", ["mean", "attention1d", "light_attention", "cls", "flatten"])
def test_every_pooler_works_with_a_batch_of_one(pooler, make_config):
    model, cfg = _ses_model(make_config, pooler=pooler)
    model.train()  # dropout active, as in the last (short) batch of a training epoch
    logits = model(**_inputs(model, cfg, FRAME.iloc[[1]].reset_index(drop=True)))
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    logits.sum().backward()


@pytest.mark.parametrize(("name", "inputs"), [("tiny-bert", ["ss8"]), ("tiny-t5", ["foldseek"])])
def test_other_families_and_a_single_structure_input(name, inputs, make_config):
    model, cfg = _ses_model(make_config, name=name, structure_inputs=inputs)
    batch = _inputs(model, cfg, FRAME)
    assert {key for key in batch if key.endswith("_ids") and key != "input_ids"} == {f"{inputs[0]}_ids"}
    assert model(**batch).shape == (3, 2)


def test_padding_and_batch_neighbours_do_not_change_a_prediction(make_config):
    model, cfg = _ses_model(make_config, pooler="attention1d")
    model.eval()
    together = model(**_inputs(model, cfg, FRAME))
    alone = torch.cat(
        [model(**_inputs(model, cfg, FRAME.iloc[[i]].reset_index(drop=True))) for i in range(3)]
    )
    assert torch.allclose(together, alone, atol=1e-5)


def test_the_structure_changes_the_output(make_config):
    model, cfg = _ses_model(make_config)
    model.eval()
    other = FRAME.assign(foldseek_seq=["W" * 10, "W" * 5, "W" * 8])
    assert not torch.allclose(model(**_inputs(model, cfg, FRAME)), model(**_inputs(model, cfg, other)))


def test_a_batch_without_the_structure_ids_is_refused_clearly(make_config):
    model, cfg = _ses_model(make_config)
    batch = _inputs(model, cfg, FRAME)
    del batch["ss8_ids"]
    with pytest.raises(ValueError, match=r"lacks \['ss8_ids'\]"):
        model(**batch)
    with pytest.raises(ValueError, match="divisible|even"):
        SesAdapter(32, ["foldseek"], embedding_dim=6, num_heads=4)


def test_checkpoint_round_trip_restores_the_adapter(make_config):
    model, cfg = _ses_model(make_config)
    state = {key: value + 0.01 for key, value in trainable_state_dict(model).items()}
    fresh, _ = _ses_model(make_config)
    load_trainable_state_dict(fresh, state)
    model.eval(), fresh.eval()
    load_trainable_state_dict(model, state)
    batch = _inputs(model, cfg, FRAME)
    assert torch.equal(model(**batch), fresh(**batch))


# --------------------------------------------------------------------------- end to end

SIGNAL = ("ACDE", "VWYP")  # 3Di letters enriched in class 0 / class 1


def write_structure_dataset(out: Path, seed: int = 0, drop: tuple[str, ...] = ()) -> Path:
    """Random residues and random ss8; the label shows only in the Foldseek 3Di composition."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 120), ("validation", 30), ("test", 40)):
        records = []
        for index, label in enumerate(rng.permutation(np.arange(count) % 2)):
            length = int(rng.integers(15, 31))
            foldseek = rng.choice(list(FOLDSEEK_ALPHABET), length)
            enriched = rng.random(length) < 0.5
            foldseek[enriched] = rng.choice(list(SIGNAL[label]), int(enriched.sum()))
            records.append(
                {
                    "name": f"{split}_{index}",
                    "aa_seq": "".join(rng.choice(list(STANDARD_RESIDUES), length)),
                    "foldseek_seq": "".join(foldseek),
                    "ss8_seq": "".join(rng.choice(list("HBEGITS-"), length)),
                    "label": int(label),
                }
            )
        pd.DataFrame(records).drop(columns=list(drop)).to_csv(out / f"{split}.csv", index=False)
    return out


def _config(data: Path, out: Path, method: str, **extra) -> dict:
    return {
        "data": {"path": str(data), "problem_type": "single_label_classification", "batch_size": 8},
        "model": {"name": "tiny-esm2", "method": method, "head": {"hidden_dims": [16]}, "ses": {**SES}},
        "train": {
            "epochs": 4,
            "learning_rate": 3e-3,
            "progress": False,
            "early_stopping": {"patience": None},
        },
        "evaluation": {"bootstrap": {"resamples": 20}, "baselines": {"enabled": False}},
        "output": {"dir": str(out), "name": method},
        **extra,
    }


@pytest.fixture(scope="module")
def structure_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ses")
    # no name column: the peer tool's structure adapter demanded one; names are optional here
    data = write_structure_dataset(root / "data", drop=("name",))
    runs = {
        method: protfit.train(build_config(_config(data, root, method)))
        for method in ("ses_adapter", "freeze")
    }
    return runs, data


@pytest.mark.slow
def test_the_adapter_learns_a_structure_only_label_that_freeze_cannot(structure_runs):
    runs, _ = structure_runs
    ses, plain = runs["ses_adapter"].summary, runs["freeze"].summary
    losses = [record["train_loss"] for record in ses["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert ses["test_metrics"]["accuracy"]["value"] >= 0.85
    assert ses["test_metrics"]["mcc"]["value"] >= 0.7
    # residues are random: without the structure the same recipe stays near chance (40 test rows)
    assert plain["test_metrics"]["accuracy"]["value"] <= 0.7
    assert abs(plain["test_metrics"]["mcc"]["value"]) <= 0.4


@pytest.mark.slow
def test_saved_run_predicts_identically_from_python_and_the_cli(structure_runs, tmp_path):
    runs, data = structure_runs
    run_dir = runs["ses_adapter"].run_dir
    original = pd.read_csv(run_dir / "test_predictions.csv")
    model = protfit.load(run_dir)
    from_file = model.predict(read_sequences(data / "test.csv", model.config.data))
    # a DataFrame goes to predict() unvalidated, and write_predictions needs its 'name' column
    from_frame = model.predict(pd.read_csv(data / "test.csv").assign(name=original["name"]))
    assert main(["predict", str(run_dir), str(data / "test.csv"), "-o", str(tmp_path / "cli.csv")]) == 0
    from_cli = pd.read_csv(tmp_path / "cli.csv")
    for column in ("prob_0", "prob_1"):
        expected = original[column].to_numpy().astype(np.float32)
        for table in (from_file, from_frame, from_cli):
            assert np.array_equal(table[column].to_numpy().astype(np.float32), expected), column
    assert (from_file["prediction"] == original["prediction"]).all()


@pytest.mark.slow
def test_prediction_requires_the_structure_columns(structure_runs, tmp_path, capsys):
    runs, data = structure_runs
    run_dir = runs["ses_adapter"].run_dir
    model = protfit.load(run_dir)
    with pytest.raises(DataError, match="'foldseek_seq'"):
        model.predict(["MKTAYIAKQR"])
    lacking = tmp_path / "no_ss8.csv"
    pd.read_csv(data / "test.csv").drop(columns=["ss8_seq"]).to_csv(lacking, index=False)
    assert main(["predict", str(run_dir), str(lacking), "-o", str(tmp_path / "out.csv")]) == 2
    error = capsys.readouterr().err
    assert "'ss8_seq'" in error and "model.ses.structure_inputs" in error
    assert not (tmp_path / "out.csv").exists()


def test_training_data_without_a_selected_structure_column_stops_before_training(tmp_path):
    data = write_structure_dataset(tmp_path / "data", drop=("ss8_seq",))
    with pytest.raises(DataError) as error:
        protfit.train(build_config(_config(data, tmp_path, "ses_adapter")))
    message = str(error.value)
    assert message.startswith(f"{data / 'train.csv'}, field 'ss8_seq'")
    assert "model.ses.structure_inputs" in message
    assert not (tmp_path / "ses_adapter" / "checkpoints" / "last").exists()  # no epoch ran


def test_misaligned_structure_strings_stop_a_ses_run_with_the_row(tmp_path):
    data = write_structure_dataset(tmp_path / "data")
    validation = pd.read_csv(data / "validation.csv")
    validation.loc[2, "foldseek_seq"] += "A"
    validation.to_csv(data / "validation.csv", index=False)
    with pytest.raises(DataError, match=r"validation\.csv, row 3, field 'foldseek_seq': .*must match 1:1"):
        protfit.train(build_config(_config(data, tmp_path, "ses_adapter")))
