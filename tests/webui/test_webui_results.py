"""The Results of a run folder: the run's own summary.json verdicts, rounded numbers, and undefined
values with their reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from protfit.webui import results

# An excerpt of a real summary.json (a 5-epoch run that ended severe and undertrained)
SUMMARY = {
    "monitor": "spearman",
    "monitor_mode": "max",
    "best_epoch": 5,
    "best_val_metric": 0.38818496465682983,
    "epochs_run": 5,
    "stopped_early": False,
    "wall_time_s": 81.23456,
    "verdict": "model beats every baseline (intervals do not overlap)",
    "warnings": ["2 validation sequences are also in the training split"],
    "baselines": {
        "constant": {"description": "predicts the training mean", "metrics": {}},
        "onehot_linear": {"description": "ridge regression on one-hot residues, alpha=10", "metrics": {}},
    },
    "diagnostics": {
        "best_epoch": 5,
        "gap_metric": 0.41234,
        "verdict": "severe",
        "verdict_at_best_epoch": "mild",
        "undertrained": True,
        "advice": [f"tip number {index}" for index in range(6)],
        "collapsed": False,
        "collapse": [],
    },
}
HISTORY = [  # validation loss lowest at epoch 2: a reading of the curves would say "overfitting"
    {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": loss, "val_spearman": 0.1 * epoch}
    for epoch, loss in enumerate([0.9, 0.5, 0.6, 0.7, 0.8], start=1)
]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in HISTORY))
    (tmp_path / "test_results.csv").write_text(
        "model,metric,value,low,high\n"
        "model,spearman,0.38818496465682983,0.30123456,0.46987654\n"
        "model,mse,0.000123456,0.0001,0.00015\n"
        "constant,spearman,,,\n"
        "constant,mse,1.5,1.4,1.6\n"
        "onehot_linear,spearman,nan,nan,nan\n"
        "onehot_linear,mse,1.2,nan,nan\n"
    )
    return tmp_path


def test_results_show_the_runs_own_diagnostics_and_every_piece_of_advice(run_dir: Path) -> None:
    text = results.summary_text(run_dir)
    assert "**overfitting: severe**" in text and "mild at the best epoch" in text
    assert "**undertrained**" in text
    assert all(f"- tip number {index}" in text for index in range(6))
    assert "baselines verdict: model beats every baseline" in text
    assert "⚠ 2 validation sequences" in text
    # rounded, and nothing read off the curves
    assert "0.388" in text and "0.38818496465682983" not in text and "81.23 s" in text
    assert "no sign of overfitting" not in text and "lowest at epoch" not in text
    assert not hasattr(results, "overfitting_verdict")


def test_undefined_metrics_show_a_dash_and_the_reason(run_dir: Path) -> None:
    table = results.results_table(run_dir).set_index("model")
    assert table.loc["model", "spearman"] == "0.388 [0.301, 0.470]"
    assert table.loc["model", "mse"] == "0.0001235 [0.0001, 0.00015]"
    assert table.loc["constant", "spearman"] == "– (undefined: constant predictions)"
    assert table.loc["onehot_linear", "spearman"] == (
        "– (undefined: constant predictions or a single class in the test labels)"
    )
    assert table.loc["onehot_linear", "mse"] == "1.200 (no interval: undefined on most resamples)"
    assert "nan" not in table.to_csv()


def test_the_metric_legend_sits_beside_the_curves() -> None:
    history = [
        {"epoch": epoch, "train_loss": 1.0, "val_loss": 1.0, **{f"val_m{i}": 0.1 * i for i in range(6)}}
        for epoch in (1, 2, 3)
    ]
    for figure in (results.metric_plot(history), results.loss_plot(history)):
        axis = figure.axes[0]
        figure.canvas.draw()
        legend = axis.get_legend().get_window_extent()
        assert legend.x0 >= axis.get_window_extent().x1  # right of the plotting area, not on it
