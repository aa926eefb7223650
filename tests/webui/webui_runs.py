"""Run folders as `protfit train` leaves them (config.yaml, history.jsonl, summary.json,
test_results.csv), written without training: the Results and Compare tabs only read these files.
The numbers are those of a 5-epoch run that ended severe and undertrained, with six pieces of advice."""

from __future__ import annotations

import json
from pathlib import Path

from protfit.config import build_config, save_config

ADVICE = [
    "train fewer weights: regularization.freeze_layers.enabled=true (bottom layers), or model.method=lora",
    "stay near the pretrained weights: regularization.l2_sp.enabled=true",
    "layer-wise LR decay: regularization.layerwise_lr.enabled=true",
    "average the weights: regularization.ema.enabled=true (or regularization.swa)",
    "more epochs: validation was still improving at the last epoch (train.epochs)",
    "drop out more: model.head.dropout=0.3",
]


def write_run(folder: Path, learning_rate: float, final_spearman: float, verdict: str = "severe") -> Path:
    folder.mkdir(parents=True)
    config = build_config(
        {
            "data": {"path": "datasets/gb1", "problem_type": "regression"},
            "model": {"name": "tiny-esm2", "method": "full"},
            "train": {"epochs": 5, "learning_rate": learning_rate},
            "output": {"dir": str(folder.parent), "name": folder.name},
        }
    )
    save_config(config, folder / "config.yaml")
    history = []
    for epoch in range(1, 6):
        val = final_spearman * epoch / 5
        history.append(
            {
                "epoch": epoch,
                "train_loss": 1.2 / epoch,
                "val_loss": 1.0 - 0.05 * epoch,
                "val_spearman": val,
                "val_pearson": val * 0.9,
                "val_mse": 1.0 - 0.05 * epoch,
                "val_mae": 0.8 - 0.03 * epoch,
                "val_r2": val * 0.5,
                "train_spearman": min(0.99, val + 0.2 * epoch / 5),
                "gap_metric": 0.2 * epoch / 5,
                "gap_loss": 0.1 * epoch,
                "overfitting": "none" if epoch < 3 else verdict,
                "lr": learning_rate,
                "epoch_time_s": 12.5,
            }
        )
    (folder / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    test = {"value": final_spearman - 0.01, "low": final_spearman - 0.08, "high": final_spearman + 0.06}
    summary = {
        "run_dir": str(folder),
        "monitor": "spearman",
        "monitor_mode": "max",
        "best_epoch": 5,
        "best_val_metric": final_spearman,
        "best_val_loss": 0.75,
        "selected_by": "val_spearman",
        "epochs_run": 5,
        "stopped_early": False,
        "history": history,
        "diagnostics": {
            "best_epoch": 5,
            "gap_loss": 0.5,
            "gap_metric": 0.2,
            "train_metric": min(0.99, final_spearman + 0.2),
            "verdict": verdict,
            "verdict_at_best_epoch": verdict,
            "undertrained": True,
            "advice": ADVICE,
            "collapsed": False,
            "collapse": [],
        },
        "test_metrics": {"spearman": test},
        "wall_time_s": 81.23456,
        "baselines": {
            "constant": {
                "description": "predicts the training mean",
                "metrics": {"spearman": {"value": None, "low": None, "high": None}},
            },
            "onehot_linear": {
                "description": "ridge regression on one-hot residues (same length), alpha=10",
                "metrics": {"spearman": {"value": 0.2912345, "low": 0.21, "high": 0.37}},
            },
        },
        "verdict": "model beats every baseline (intervals do not overlap)",
        "warnings": [],
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    parts = {"backbone": (9_336, 9_336), "pooler": (0, 0), "head": (8_449, 8_449)}
    stats = {
        "total": 17_785,
        "trainable": 17_785,
        "components": {
            name: {"total": total, "trainable": trainable} for name, (total, trainable) in parts.items()
        },
    }
    (folder / "model_stats.json").write_text(json.dumps(stats))
    (folder / "test_results.csv").write_text(
        "model,metric,value,low,high\n"
        f"model,spearman,{test['value']},{test['low']},{test['high']}\n"
        "constant,spearman,,,\n"
        "onehot_linear,spearman,0.2912345,0.21,0.37\n"
    )
    return folder
