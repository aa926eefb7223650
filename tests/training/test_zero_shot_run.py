"""The zero-shot baseline in runs on variant data, and the augmented (one-hot + zero-shot) model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

import protfit
from protfit.config import ConfigError, apply_overrides, build_config
from protfit.models.zero_shot import Reference, ZeroShotError, score_sequences
from protfit.report.baselines import format_baseline_table
from protfit.training.train import train

WILD_TYPE = "MKTAYIAKQRQISFVKSHFS"
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def write_variants(folder: Path, problem: str, classes: int = 2, shorter: int = 0, seed: int = 0) -> Path:
    """Single and double substitutions of WILD_TYPE; the label counts hydrophobic residues (a rule the
    one-hot models can learn). ``shorter`` test sequences lose their last residues."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    seen = {WILD_TYPE}  # each variant once, the wild type never: the reference is their consensus
    for split, count in (("train", 80), ("validation", 30), ("test", 40)):
        sequences: list[str] = []
        while len(sequences) < count:
            letters = list(WILD_TYPE)
            for position in rng.choice(len(letters), size=rng.integers(1, 3), replace=False):
                letters[position] = str(rng.choice(list(RESIDUES)))
            if "".join(letters) not in seen:
                seen.add("".join(letters))
                sequences.append("".join(letters))
        if split == "test":
            sequences[:shorter] = [sequence[:-3] for sequence in sequences[:shorter]]
        value = np.array([sum(residue in "AILMFVW" for residue in s) for s in sequences], dtype=float)
        value += rng.normal(0, 0.3, len(sequences))
        if problem == "regression":
            labels: list = value.tolist()
        else:
            labels = np.digitize(value, np.quantile(value, np.linspace(0, 1, classes + 1)[1:-1])).tolist()
        pd.DataFrame(
            {"name": [f"{split}{i}" for i in range(count)], "aa_seq": sequences, "label": labels}
        ).to_csv(folder / f"{split}.csv", index=False)
    return folder


def config(data: Path, out: Path, problem: str = "regression", *overrides: str):
    raw = {
        "data": {"path": str(data), "problem_type": problem, "batch_size": 16},
        "model": {"name": "tiny-esm2", "method": "freeze", "head": {"hidden_dims": [8]}},
        "train": {"epochs": 1, "progress": False},
        "evaluation": {"bootstrap": {"resamples": 30}},
        "output": {"dir": str(out), "name": "run"},
    }
    return build_config(apply_overrides(raw, list(overrides)))


def summary_of(result) -> dict:
    return json.loads((result.run_dir / "summary.json").read_text())


def test_regression_run_reports_the_zero_shot_baseline_of_its_own_backbone(tmp_path: Path) -> None:
    data = write_variants(tmp_path / "data", "regression")
    summary = summary_of(train(config(data, tmp_path)))
    baselines = summary["baselines"]
    assert {"onehot_linear", "zero_shot", "onehot_zero_shot_linear"} <= set(baselines)
    assert set(baselines["zero_shot"]["metrics"]) == {"spearman", "pearson"}  # scale-free only
    assert "mse, mae, r2 left out" in baselines["zero_shot"]["description"]
    assert summary["skipped_baselines"] == {}
    scored = summary["zero_shot"]
    assert scored["model"] == "tiny-esm2" and scored["reference"]["source"] == "consensus"
    assert scored["reference"]["sequence"] == WILD_TYPE  # the consensus of the substitutions

    test = pd.read_csv(data / "test.csv")
    scores = score_sequences("tiny-esm2", test["aa_seq"].tolist(), Reference(WILD_TYPE, "given", "")).scores
    expected = pd.Series(scores).corr(test["label"], method="spearman")
    assert baselines["zero_shot"]["metrics"]["spearman"]["value"] == pytest.approx(expected)
    results = pd.read_csv(tmp_path / "run" / "test_results.csv")
    assert set(results[results["model"] == "zero_shot"]["metric"]) == {"spearman", "pearson"}


def test_binary_classification_scores_auroc_only(tmp_path: Path) -> None:
    data = write_variants(tmp_path / "data", "single_label_classification")
    result = train(config(data, tmp_path, "single_label_classification"))
    summary = summary_of(result)
    zero_shot = summary["baselines"]["zero_shot"]
    assert set(zero_shot["metrics"]) == {"auroc"}
    assert "accuracy, f1, mcc left out" in zero_shot["description"]
    table = pd.read_csv(result.run_dir / "test_results.csv")
    assert set(table[table["model"] == "zero_shot"]["metric"]) == {"auroc"}


@pytest.mark.parametrize(
    ("problem", "overrides", "reason"),
    [
        ("regression", ["model.name=onehot", "model.pooler=flatten"], "no masked language model"),
        ("single_label_classification", [], "3 classes"),
        ("regression", ["evaluation.baselines.zero_shot=false"], "zero_shot=false"),
    ],
)
def test_skipped_with_a_recorded_reason(
    tmp_path: Path, problem: str, overrides: list[str], reason: str
) -> None:
    data = write_variants(tmp_path / "data", problem, classes=3)
    summary = summary_of(train(config(data, tmp_path, problem, *overrides)))
    assert "zero_shot" not in summary["baselines"]
    assert reason in summary["skipped_baselines"]["zero_shot"]


def test_other_lengths_skip_on_auto_and_use_pseudo_likelihoods_when_on(tmp_path: Path) -> None:
    data = write_variants(tmp_path / "data", "regression", shorter=5)
    auto = summary_of(train(config(data, tmp_path / "auto")))
    assert "are not all the reference's 20" in auto["skipped_baselines"]["zero_shot"]
    forced = summary_of(
        train(config(data, tmp_path / "on", "regression", "evaluation.baselines.zero_shot=true"))
    )
    assert forced["zero_shot"]["method"] == "pseudo-log-likelihood difference"
    assert "zero_shot" in forced["baselines"]
    assert "onehot_zero_shot_linear" not in forced["baselines"]  # no one-hot model across lengths


def test_zero_shot_true_refuses_a_t5_backbone_before_any_run_folder(tmp_path: Path) -> None:
    data = write_variants(tmp_path / "data", "regression")
    with pytest.raises(ZeroShotError, match="t5 encoder"):
        train(
            config(data, tmp_path, "regression", "model.name=tiny-t5", "evaluation.baselines.zero_shot=true")
        )
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="set model.zero_shot_model"):
        config(data, tmp_path, "regression", "model.name=onehot", "evaluation.baselines.zero_shot=true")


def test_augmented_onehot_model_standardises_the_score_and_predicts_like_its_test_split(
    tmp_path: Path,
) -> None:
    data = write_variants(tmp_path / "data", "regression")
    cfg = config(
        data,
        tmp_path,
        "regression",
        "model.name=onehot",
        "model.pooler=flatten",
        "model.extra_features=[zero_shot]",
        "model.zero_shot_model=tiny-esm2",
        "data.max_seq_len=20",
        "train.epochs=2",
    )
    result = train(cfg)
    meta = json.loads((result.run_dir / "model_meta.json").read_text())
    state = meta["extra_features"]["zero_shot"]
    assert state["model"] == "tiny-esm2" and state["reference"]["sequence"] == WILD_TYPE

    train_scores = score_sequences(
        "tiny-esm2", pd.read_csv(data / "train.csv")["aa_seq"].tolist(), Reference(WILD_TYPE, "given", "")
    ).scores
    weights = load_file(result.run_dir / "checkpoints" / "best" / "model.safetensors")
    assert float(weights["feature_scaler.mean"][0]) == pytest.approx(train_scores.mean(), abs=1e-5)
    assert float(weights["feature_scaler.std"][0]) == pytest.approx(train_scores.std(), abs=1e-5)
    assert weights["head.0.weight"].shape[1] == 20 * 21 + 1  # flattened one-hot + the score

    model = protfit.load(result.run_dir)
    test = pd.read_csv(data / "test.csv")
    predicted = model.predict(test)["prediction"].to_numpy()
    saved = pd.read_csv(result.run_dir / "test_predictions.csv")["prediction"].to_numpy()
    assert predicted == pytest.approx(saved, abs=1e-5)
    # the score is an input: another reference gives other features and other predictions
    moved = {"zero_shot": {**state, "reference": {**state["reference"], "sequence": "A" * 20}}}
    model.extra_feature_states = moved
    assert np.abs(model.predict(test)["prediction"].to_numpy() - predicted).max() > 1e-4


def test_baseline_table_shows_a_dash_for_metrics_the_zero_shot_baseline_leaves_out(tmp_path: Path) -> None:
    from protfit.config import BootstrapConfig
    from protfit.report.baselines import fit_zero_shot_baselines

    data = write_variants(tmp_path / "data", "single_label_classification")
    frames = {split: pd.read_csv(data / f"{split}.csv") for split in ("train", "validation", "test")}
    rng = np.random.default_rng(0)
    scores = {name: rng.normal(size=len(frame)) for name, frame in frames.items()}
    baselines = fit_zero_shot_baselines(
        frames,
        scores,
        "single_label_classification",
        2,
        ["accuracy", "auroc"],
        BootstrapConfig(resamples=20),
        "zs",
    )
    row = format_baseline_table(baselines[1].metrics, baselines[:1]).splitlines()[2]
    assert row.split()[:2] == ["zero_shot", "-"]


def test_onehot_feature_beside_a_frozen_backbone_is_unscaled_and_predicts_like_its_test_split(
    tmp_path: Path,
) -> None:
    data = write_variants(tmp_path / "data", "regression", shorter=2)
    cfg = config(
        data,
        tmp_path,
        "regression",
        "model.extra_features=[onehot]",
        "data.max_seq_len=20",
        "train.epochs=3",
        "train.learning_rate=3e-3",
    )
    result = train(cfg)
    weights = load_file(result.run_dir / "checkpoints" / "best" / "model.safetensors")
    hidden = json.loads((result.run_dir / "model_meta.json").read_text())
    assert hidden["extra_features"]["onehot"] == {"length": 20}
    assert weights["head.0.weight"].shape[1] == 32 + 20 * 21  # tiny-esm2's mean-pooled vector + one-hot
    # 0/1 bits pass unscaled: standardising a bit seen once in 80 variants would make it ~9
    assert float(weights["feature_scaler.mean"].abs().max()) == 0.0
    assert float((weights["feature_scaler.std"] - 1).abs().max()) == 0.0

    model = protfit.load(result.run_dir)
    test = pd.read_csv(data / "test.csv")
    predicted = model.predict(test)["prediction"].to_numpy()
    saved = pd.read_csv(result.run_dir / "test_predictions.csv")["prediction"].to_numpy()
    assert predicted == pytest.approx(saved, abs=1e-5)
    # the residues are inputs: a substitution at one position moves the prediction
    moved = test.assign(aa_seq=["W" + sequence[1:] for sequence in test["aa_seq"]])
    assert np.abs(model.predict(moved)["prediction"].to_numpy() - predicted).max() > 1e-4


def test_onehot_feature_without_a_max_seq_len_is_a_config_error(tmp_path: Path) -> None:
    data = write_variants(tmp_path / "data", "regression")
    with pytest.raises(ConfigError, match=r"extra_features=\[onehot\] needs data.max_seq_len"):
        config(data, tmp_path, "regression", "model.extra_features=[onehot]", "data.max_seq_len=null")


def test_onehot_feature_encodes_each_position_and_leaves_out_what_lies_past_max_seq_len() -> None:
    from protfit.models.extra_features import ONEHOT_RESIDUES, onehot_feature

    cfg = config(Path("unused"), Path("unused"), "regression", "data.max_seq_len=3")
    values, state = onehot_feature(cfg, {"x": pd.DataFrame({"aa_seq": ["ACDW", "AZ"]})}, None, False)
    grid = values["x"].reshape(2, 3, len(ONEHOT_RESIDUES) + 1)
    assert grid.sum(axis=(1, 2)).tolist() == [3, 2]  # W past position 3 is left out; a short one pads 0
    assert grid[0].argmax(axis=1).tolist() == [ONEHOT_RESIDUES.index(r) for r in "ACD"]
    assert grid[1, 1, len(ONEHOT_RESIDUES)] == 1  # Z: the 'other' column
    assert state == {"length": 3}


def test_the_diagnosis_reads_the_variants_length_and_whether_the_run_scored_them_zero_shot(tmp_path):
    from protfit.sweep.tune import diagnose

    data = write_variants(tmp_path / "data", "regression")
    cfg = config(data, tmp_path, "regression", "data.max_seq_len=20")  # tiny-esm2, a masked LM
    result = train(cfg)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    diagnosis = diagnose(cfg, result.run_dir, summary)
    assert diagnosis.equal_lengths and diagnosis.length == 20 and diagnosis.zero_shot_scored
    unscored = diagnose(cfg, result.run_dir, {**summary, "baselines": {}})
    assert not unscored.zero_shot_scored
