"""Frozen-backbone runs through the embedding cache: computed once, reused with no backbone call,
same quality as running the backbone every batch, and predictions equal to the run's own."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import protfit
from protfit.config import apply_overrides, build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.models.backbone import Backbone
from protfit.training.train import train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic_dataset(
        tmp_path_factory.mktemp("data"), "single_label_classification", n_train=96, n_validation=32, n_test=40
    )


def run(data_dir, out_dir, name, *overrides):
    raw = {
        "data": {"path": str(data_dir), "problem_type": "single_label_classification", "batch_size": 8},
        "model": {
            "name": "tiny-esm2",
            "method": "freeze",
            "pooler": "attention1d",
            "head": {"hidden_dims": [16]},
        },
        "train": {"epochs": 3, "learning_rate": 3e-3, "progress": False},
        "evaluation": {"bootstrap": {"resamples": 20}, "baselines": {"enabled": False}},
        "output": {"dir": str(out_dir), "name": name},
    }
    return train(build_config(apply_overrides(raw, list(overrides))))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A cache of this module's own, so the first run is a guaranteed miss whatever ran before."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROTFIT_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("runs")
    first = run(data_dir, out, "first")
    calls = []
    original = Backbone.forward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Backbone, "forward", lambda self, *a: calls.append(1) or original(self, *a))
        second = run(data_dir, out, "second")
        second_calls = len(calls)
    uncached = run(data_dir, out, "uncached", "model.embedding_cache=false")
    return {"first": first, "second": second, "second_calls": second_calls, "uncached": uncached}


def test_second_run_reuses_the_cache_without_running_the_backbone(runs):
    first, second = runs["first"].summary["embedding_cache"], runs["second"].summary["embedding_cache"]
    assert first["misses"] == 3 and first["hits"] == 0 and first["kind"] == "residues"
    assert second["hits"] == 3 and second["misses"] == 0 and second["size_mb"] > 0
    assert runs["second_calls"] == 0
    stored = json.loads((runs["second"].run_dir / "summary.json").read_text())["embedding_cache"]
    assert stored["splits"]["train"]["hit"] is True


def test_cache_off_runs_the_backbone_and_trains_to_the_same_quality(runs):
    assert runs["uncached"].summary["embedding_cache"] is None
    cached, uncached = runs["first"].summary, runs["uncached"].summary
    # same batches, same seed: only float16 rounding of the features separates the two runs
    for with_cache, without in zip(cached["history"], uncached["history"], strict=True):
        assert with_cache["train_loss"] == pytest.approx(without["train_loss"], rel=0.05)
        assert with_cache["padding_fraction"] == pytest.approx(without["padding_fraction"])
    assert cached["test_metrics"]["accuracy"]["value"] == pytest.approx(
        uncached["test_metrics"]["accuracy"]["value"], abs=0.1
    )
    assert runs["second"].summary["test_metrics"] == cached["test_metrics"]


@pytest.mark.parametrize("name", ["first", "uncached"])
def test_loaded_model_predicts_exactly_the_runs_test_predictions(runs, data_dir, name):
    run_dir = runs[name].run_dir
    original = pd.read_csv(run_dir / "test_predictions.csv")
    predicted = protfit.load(run_dir).predict(pd.read_csv(data_dir / "test.csv")["aa_seq"].tolist())
    columns = [column for column in original.columns if column.startswith("prob_")] + ["prediction"]
    for column in columns:
        expected = original[column].to_numpy().astype(np.float32)
        assert np.array_equal(predicted[column].to_numpy().astype(np.float32), expected), column


def test_new_sequences_are_predicted_live_without_writing_the_cache(runs, cache_dir):
    entries = set((cache_dir / "embeddings").iterdir())
    table = protfit.load(runs["first"].run_dir).predict(["MKTAYIAKQRQISFVKSHFSRQ", "KRKRKRKRDE"])
    assert len(table) == 2 and table[[c for c in table if c.startswith("prob_")]].notna().all().all()
    assert set((cache_dir / "embeddings").iterdir()) == entries
