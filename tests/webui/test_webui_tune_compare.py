"""What the LR finder / Tune and Compare tabs read from the folders `protfit sweep`, `tune` and `compare` write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("gradio")

from protfit.webui.compare_tab import plots_html
from protfit.webui.tune_tab import best_text, range_test_text, trials_table, tune_report


def test_live_trials_then_the_final_table(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    done, running = sweep / "trials" / "trial-0000", sweep / "trials" / "trial-0001"
    for folder in (done, running):
        folder.mkdir(parents=True)
        (folder / "history.jsonl").write_text('{"epoch": 1, "val_loss": 0.5}\n')
    (done / "summary.json").write_text(json.dumps({"monitor": "mcc", "best_val_metric": 0.7}))
    live = trials_table(sweep)
    assert live[["trial", "epochs", "state"]].values.tolist() == [
        ["trial-0000", 1, "finished"],
        ["trial-0001", 1, "running or pruned"],
    ]
    assert live["best"].tolist() == ["0.7", "–"]
    (sweep / "trials.csv").write_text(
        "trial,state,value,train.learning_rate,run_dir\n0,complete,0.52174919,0.004679311629512162,x\n1,pruned,,0.001,y\n"
    )
    final = trials_table(sweep)
    assert list(final.columns) == ["trial", "state", "value", "train.learning_rate"]
    assert final.values.tolist() == [[0, "complete", "0.5217", "0.004679"], [1, "pruned", "–", "0.001"]]
    (sweep / "best.json").write_text(
        json.dumps(
            {
                "best": {
                    "trial": 0,
                    "monitor": "mcc",
                    "value": 0.7,
                    "params": {"train.learning_rate": 0.00123},
                },
                "counts": {"complete": 1, "pruned": 1, "fail": 0},
                "n_trials": 2,
                "wall_time_s": 3.2,
            }
        )
    )
    assert "1 complete, 1 pruned, 0 failed" in best_text(sweep)
    assert "train.learning_rate=0.00123" in best_text(sweep)


def test_tune_report_shows_the_closing_table_and_the_comparison(tmp_path: Path) -> None:
    assert tune_report(tmp_path) == ("", None)
    (tmp_path / "compare").mkdir()
    (tmp_path / "tune.md").write_text("## Tuned vs untuned\n")
    (tmp_path / "compare" / "compare.md").write_text(
        "| rank | stars |\n|---|---|\n| 1 | ★★★★★ |\n\n- selection by validation mcc only\n"
    )
    report, comparison = tune_report(tmp_path)
    assert (
        report.index("Tuned vs untuned")
        < report.index("Comparison of the trials")
        < report.index("- selection")
    )
    assert comparison.values.tolist() == [["1", "★★★★★"]]


def test_comparison_plots_are_inline_images_only(tmp_path: Path) -> None:
    page = tmp_path / "compare.html"
    page.write_text('<img src="data:image/png;base64,iVBORw0KGgo="><img src="https://example.org/x.png">')
    html = plots_html(page)
    assert html.count("<img") == 1 and "example.org" not in html
    assert plots_html(tmp_path / "missing.html") == ""


def test_the_lr_finder_warns_when_its_curve_cannot_be_trusted() -> None:
    found = {
        "suggested_lr": 0.0614,
        "rule": "divergence_div_10",
        "rule_description": "last learning rate of the ramp divided by 10",
        "steps_run": 100,
        "stopped": "diverged at lr 0.614",
        "trusted": True,
        "note": None,
    }
    assert "⚠" not in range_test_text(found)
    note = "the loss curve is too flat or noisy to trust (...)"
    assert range_test_text({**found, "trusted": False, "note": note}).endswith(f"⚠ {note}")


def test_the_suggested_rate_replaces_the_train_tabs_only_after_confirmation() -> None:
    from protfit.webui.tune_tab import ask_to_use, use_suggestion

    found = {"suggested_lr": 0.061437, "rule": "steepest", "trusted": True, "note": None}
    box, text, _ = ask_to_use(found, "0.001")
    assert box["visible"] is True
    assert "**0.001** with **0.06144**" in text and "⚠" not in text
    note = "the loss curve is too flat or noisy to trust; the rate comes from the noise rule"
    _, untrusted, _ = ask_to_use({**found, "trusted": False, "note": note}, "0.001")
    assert f"⚠ The range test could not be trusted: {note}" in untrusted
    value, box, _ = use_suggestion(found)
    assert value == "0.06144" and box["visible"] is False
    box, _, status = ask_to_use(None, "0.001")
    assert box["visible"] is False and status.startswith("✗ no suggestion yet")


def test_compare_md_becomes_a_table_with_its_notes() -> None:
    from protfit.webui.tables import markdown_table

    table, notes = markdown_table(
        "| rank | run | model.head.hidden_dims |\n|---|---|---|\n| 1 | a\\|b | [64, 32] |\n\n- selection by validation"
    )
    assert table.columns.tolist() == ["rank", "run", "model.head.hidden_dims"]
    assert table.values.tolist() == [["1", "a|b", "[64, 32]"]]
    assert notes == "- selection by validation"
    assert markdown_table("") == (None, "")


@pytest.fixture
def compare_tab(tmp_path: Path):
    from webui_runs import write_run

    from protfit.webui.compare_tab import CompareTab
    from protfit.webui.jobs import JobRegistry
    from protfit.webui.train_tab import TrainTab
    from protfit.webui.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    write_run(workspace.root / "runs" / "lr-1e-3", 1e-3, 0.45)
    write_run(workspace.root / "runs" / "lr-1e-4", 1e-4, 0.38818496465682983, verdict="mild")
    return CompareTab(workspace, TrainTab(workspace, JobRegistry(workspace.root)))


def test_compare_shows_the_recommendation_and_its_reason(compare_tab) -> None:
    status, recommendation, table, notes, plots, *downloads, recommended = compare_tab.compare(
        ["runs/lr-1e-3", "runs/lr-1e-4"]
    )
    assert status.startswith("✓ `protfit compare runs/lr-1e-3 runs/lr-1e-4")
    assert "(SPEARMAN 0.3882 on validation, run lr-1e-4)" in recommendation
    assert (
        "**Why**: best validation SPEARMAN among runs without severe overfitting; learning_rate 0.0001 "
        "(vs 0.001 in lr-1e-3) gained 0.062 validation SPEARMAN"
    ) in recommendation
    assert table["visible"] is True
    table = table["value"]
    assert table["run"].tolist() == ["lr-1e-4", "lr-1e-3"]
    assert table.loc[0, "val spearman (best)"] == "0.3882" and table.loc[1, "overfitting"] == "severe"
    assert notes.startswith("- selection by validation spearman only")
    assert "comparison plot" in plots and len(downloads) == 3 and recommended.endswith("recommended.yaml")


def test_compare_of_a_run_that_died_early_is_a_message(compare_tab) -> None:
    died = compare_tab.workspace.root / "runs" / "died"
    died.mkdir()
    (died / "config.yaml").write_text(
        (compare_tab.workspace.root / "runs" / "lr-1e-3" / "config.yaml").read_text()
    )
    result = compare_tab.compare(["runs/died"])
    assert len(result) == 9
    assert result[0].startswith("✗ protfit compare: error: runs/died holds no run folders")


def test_without_a_recommended_config_the_tab_says_why(tmp_path: Path) -> None:
    from protfit.webui.compare_tab import recommendation_text

    printed = "| rank | run |\n\nno run has a validation value: nothing to recommend\n"
    assert recommendation_text(tmp_path / "recommended.yaml", printed) == (
        "**No recommendation**: no run has a validation value: nothing to recommend"
    )
