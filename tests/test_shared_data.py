"""Real public data from ../shared/data: a freeze and a full run of a small ESM2-architecture model."""

import json
from pathlib import Path

import pytest

from protfit.config import apply_overrides, build_config
from protfit.training.train import train

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RUN_FILES = [
    "config.yaml",
    "history.csv",
    "history.jsonl",
    "model_stats.json",
    "data_report.json",
    "test_results.csv",
    "test_predictions.csv",
    "summary.json",
    "loss.png",
    "metrics.png",
    "checkpoints/best/model.safetensors",
]


def run(task: str, problem: str, tmp_path: Path, *overrides: str) -> dict:
    if not (SHARED / task).is_dir():
        pytest.skip(f"{SHARED / task} not present")
    raw = {
        "data": {"path": str(SHARED / task), "problem_type": problem},
        "model": {"name": "tiny-esm2"},
        "train": {"epochs": 1, "progress": False},
        "evaluation": {"bootstrap": {"resamples": 200}},
        "output": {"dir": str(tmp_path), "name": task},
    }
    result = train(build_config(apply_overrides(raw, list(overrides))))
    for name in RUN_FILES:
        assert (result.run_dir / name).exists(), name
    return json.loads((result.run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_freeze_run_on_deeploc_with_token_budget(tmp_path):
    summary = run(
        "deeploc_localization",
        "single_label_classification",
        tmp_path,
        "model.method=freeze",
        "model.pooler=light_attention",
        "data.max_tokens_per_batch=16000",
        "data.unknown_residues=map_to_x",
    )
    assert summary["history"][0]["padding_fraction"] < 0.05
    assert set(summary["test_metrics"]) == {"accuracy", "f1", "mcc", "auroc"}
    assert "composition_linear" in summary["baselines"]


@pytest.mark.slow
def test_full_run_on_gb1(tmp_path):
    summary = run(
        "flip_gb1_two_vs_rest",
        "regression",
        tmp_path,
        "model.method=full",
        "data.max_seq_len=64",
        "data.batch_size=32",
    )
    assert "onehot_linear" in summary["baselines"]  # equal-length sequences: position-aware baseline
    assert summary["test_metrics"]["spearman"]["low"] <= summary["test_metrics"]["spearman"]["value"]


@pytest.mark.slow
def test_zero_shot_antiberty_ranks_flab_d44_binding_variants():
    """AntiBERTy (antibody-pretrained) scores single substitutions of an antibody Fv zero-shot:
    a weak but real signal (docs/quality.md: Spearman 0.139 on this test split)."""
    from importlib.util import find_spec

    import pandas as pd
    from scipy.stats import spearmanr

    from protfit.models.zero_shot import ZeroShotScorer, choose_reference

    folder = SHARED / "flab_d44_binding"
    if not folder.is_dir() or find_spec("antiberty") is None:
        pytest.skip("flab_d44_binding data or the antiberty package not present")
    train_frame, test = (pd.read_csv(folder / f"{split}.csv") for split in ("train", "test"))
    reference = choose_reference(train_frame["aa_seq"].tolist())
    assert reference.source == "consensus" and len(reference.sequence) == 222
    result = ZeroShotScorer("antiberty").score(test["aa_seq"].tolist(), reference)
    assert set(result.methods) == {"masked_marginal"} and set(result.substitutions) <= {0, 1}
    assert spearmanr(result.scores, test["label"]).statistic == pytest.approx(0.139, abs=0.002)
