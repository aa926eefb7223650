"""`protfit compare` on hand-made run folders: ranks, verdicts, stars, differing keys, refusals, HTML."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from protfit.cli import main
from protfit.config import build_config, load_config, save_config
from protfit.report.compare import CompareError, compare_runs, recommendation_reason
from protfit.report.compare_html import write_outputs

BASE = {
    "data": {"path": "data/task", "problem_type": "single_label_classification", "num_labels": 3},
    "model": {"name": "tiny-esm2", "method": "freeze", "head": {"dropout": 0.3}},
    "train": {"epochs": 20, "learning_rate": 1e-5, "early_stopping": {"monitor": "accuracy"}},
    "data_batch": 80,
}


def make_run(
    root: Path,
    name: str,
    *,
    dropout: float,
    epochs: int = 20,
    val: list[float],
    train: list[float] | None = None,
    verdict: str | None = None,
    test: float | None = 0.4,
    problem_type: str = "single_label_classification",
    constant_accuracy: float = 0.34,
) -> Path:
    """A run folder as the recipe writes it: config.yaml, history.jsonl/.csv, summary.json."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    raw = json.loads(json.dumps({k: v for k, v in BASE.items() if k != "data_batch"}))
    raw["data"]["batch_size"] = 80
    raw["data"]["problem_type"] = problem_type
    if problem_type == "regression":
        raw["data"].pop("num_labels")
        raw["train"]["early_stopping"]["monitor"] = "spearman"
    raw["model"]["head"]["dropout"] = dropout
    raw["train"]["epochs"] = epochs
    raw["output"] = {"dir": str(root), "name": name}
    save_config(build_config(raw), run_dir / "config.yaml")
    monitor = raw["train"]["early_stopping"]["monitor"]
    history = []
    for epoch, value in enumerate(val, start=1):
        record = {
            "epoch": epoch,
            "train_loss": 1.0 - 0.05 * epoch,
            "val_loss": 1.1 - 0.02 * epoch,
            f"val_{monitor}": value,
            "lr": 1e-5,
            "padding_fraction": 0.1,
            "epoch_time_s": 2.0,
            "best": False,
        }
        if train is not None:
            record[f"train_{monitor}"] = train[epoch - 1]
            record["train_eval_loss"] = 0.9 - 0.05 * epoch
            record["gap_loss"] = record["val_loss"] - record["train_eval_loss"]
            record["gap_metric"] = train[epoch - 1] - value
            record["overfitting"] = verdict
        history.append(record)
    best = max(range(len(val)), key=lambda i: val[i]) + 1
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    summary = {
        "run_dir": str(run_dir),
        "monitor": monitor,
        "monitor_mode": "max",
        "best_epoch": best,
        "best_val_metric": val[best - 1],
        "epochs_run": len(val),
        "stopped_early": False,
        "history": history,
        "test_loss": 1.0,
        "test_metrics": {monitor: {"value": test, "low": test - 0.02, "high": test + 0.02}},
        "baselines": {
            "constant": {
                "description": "",
                "metrics": {monitor: {"value": constant_accuracy, "low": 0.3, "high": 0.38}},
            }
        },
        "verdict": "model beats the best baseline (constant) by +0.060 accuracy; intervals do not overlap",
        "warnings": [],
        "wall_time_s": 42.0,
    }
    if train is not None:
        summary["diagnostics"] = {
            "best_epoch": best,
            "gap_loss": history[best - 1]["gap_loss"],
            "gap_metric": history[best - 1]["gap_metric"],
            "train_metric": train[best - 1],
            "verdict": verdict,
            "undertrained": False,
            "advice": [],
        }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture
def tuning_log(tmp_path: Path) -> Path:
    """The hand-run tuning log of the issue, plus a tie: Try4 equals Try3 to 4 decimals, larger gap."""
    root = tmp_path / "runs"
    make_run(
        root,
        "Try1",
        dropout=0.3,
        epochs=50,
        val=[0.40, 0.419, 0.41],
        train=[0.9, 1.0, 1.0],
        verdict="severe",
        test=0.399,
    )
    make_run(root, "Try3", dropout=0.8, val=[0.42, 0.435], train=[0.65, 0.710], verdict="mild", test=0.437)
    make_run(root, "Try4", dropout=0.7, val=[0.42, 0.43501], train=[0.7, 0.80], verdict="mild", test=0.45)
    make_run(root, "Try6", dropout=0.9, val=[0.40, 0.411], train=[0.55, 0.568], verdict="none", test=0.39)
    return root


def test_ranks_verdicts_stars_and_differing_keys(tuning_log: Path) -> None:
    comparison = compare_runs([tuning_log])
    by_name = {row.name: row for row in comparison.rows}
    # severe (Try1) and underfit (Try6) runs follow the healthy ones, by validation value
    assert [row.name for row in comparison.rows] == ["Try3", "Try4", "Try1", "Try6"]
    # a tie at 4 decimals (0.4350 vs 0.43501) goes to the smaller gap, even though Try4 tests better
    assert by_name["Try3"].rank == 1 and by_name["Try4"].rank == 2
    assert {name: row.verdict for name, row in by_name.items()} == {
        "Try1": "severe",
        "Try3": "mild",
        "Try4": "mild",
        "Try6": "underfit",  # train accuracy 0.568 < 0.34 + 0.5 * (1 - 0.34) = 0.67
    }
    assert {name: row.stars for name, row in by_name.items()} == {"Try3": 5, "Try4": 4, "Try6": 1, "Try1": 2}
    assert comparison.keys == ["model.head.dropout", "train.epochs"]  # output.name differs, ignored
    assert by_name["Try3"].train_metric == pytest.approx(0.710)
    assert by_name["Try3"].gap == pytest.approx(0.275)


def test_recommendation_reason_and_yaml_that_train_accepts(tuning_log: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["compare", str(tuning_log), "--recommend", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Try3" in printed and "★★★★★" in printed
    assert "best validation ACCURACY among runs without severe overfitting or underfitting" in printed
    assert "closed the gap from 0.36 to 0.27" in printed  # dropout 0.8 vs 0.7 in Try4
    recommended = out / "recommended.yaml"
    config = load_config(recommended)  # what `protfit train recommended.yaml` validates first
    assert config.model.head.dropout == 0.8 and config.output.name is None
    assert (out / "compare.md").read_text().count("\n| ") == 4  # header + separator lines start with |
    csv = (out / "compare.csv").read_text().splitlines()
    assert csv[0].startswith("rank,stars,run,run_dir,model.head.dropout,train.epochs")
    assert len(csv) == 5


def test_reason_names_the_flaw_when_every_run_has_one(tmp_path: Path) -> None:
    make_run(tmp_path, "a", dropout=0.1, val=[0.40, 0.42], train=[0.9, 1.0], verdict="severe")
    make_run(tmp_path, "b", dropout=0.2, val=[0.40, 0.41], train=[0.9, 1.0], verdict="severe")
    reason = recommendation_reason(compare_runs([tmp_path]))
    assert reason.startswith("best validation ACCURACY, but every run has severe overfitting;")


def test_markdown_format_and_test_never_ranks(tuning_log: Path, capsys) -> None:
    assert (
        main(
            [
                "compare",
                *(str(p) for p in sorted(tuning_log.iterdir())),
                "--format",
                "markdown",
                "-o",
                str(tuning_log / "cmp"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("| ")]
    assert lines[0].startswith(
        "| rank | stars | run | model.head.dropout | train.epochs | val accuracy (best)"
    )
    assert lines[1].startswith("| 1 | ★★★★★ | Try3 | 0.8 | 20 | 0.4350")
    assert "0.437 [0.417, 0.457]" in lines[1]
    assert "test columns are shown, never used to rank" in printed


def test_mixed_tasks_are_refused(tmp_path: Path) -> None:
    a = make_run(tmp_path, "classify", dropout=0.1, val=[0.5], train=[0.8], verdict="none")
    b = make_run(
        tmp_path, "regress", dropout=0.1, val=[0.5], train=[0.8], verdict="none", problem_type="regression"
    )
    with pytest.raises(
        CompareError, match="different tasks or metrics.*single_label_classification.*regression"
    ):
        compare_runs([a, b])
    assert main(["compare", str(a), str(b)]) == 2
    # the same task where one config leaves the label count to inference: compared
    c = make_run(tmp_path, "inferred", dropout=0.2, val=[0.6], train=[0.8], verdict="none")
    raw = yaml.safe_load((c / "config.yaml").read_text())
    raw["data"]["num_labels"] = None
    (c / "config.yaml").write_text(yaml.safe_dump(raw))
    (c / "model_meta.json").write_text(json.dumps({"num_labels": 3}))
    assert [row.name for row in compare_runs([a, c]).rows] == ["inferred", "classify"]
    (c / "model_meta.json").write_text(json.dumps({"num_labels": 4}))
    with pytest.raises(CompareError, match="num_labels 4, monitor accuracy: inferred"):
        compare_runs([a, c])


def test_old_runs_without_diagnostics_say_na_and_use_the_loss_gap(tmp_path: Path) -> None:
    a = make_run(tmp_path, "old-a", dropout=0.1, val=[0.5, 0.6])
    b = make_run(tmp_path, "old-b", dropout=0.5, val=[0.55, 0.58])
    comparison = compare_runs([a, b])
    assert [row.name for row in comparison.rows] == ["old-a", "old-b"]
    assert all(row.verdict == "n/a" and row.train_metric is None for row in comparison.rows)
    # validation loss minus the running training loss at the best epoch: (1.1-0.04) - (1-0.1)
    assert comparison.rows[0].gap_loss == pytest.approx(0.16)
    assert comparison.rows[0].gap_loss_source == "train_loss"
    assert [row.stars for row in comparison.rows] == [5, 1]


def test_fallback_gap_rule_without_a_verdict(tmp_path: Path) -> None:
    a = make_run(tmp_path, "memorised", dropout=0.1, val=[0.8], train=[1.0], verdict=None)
    b = make_run(tmp_path, "mild", dropout=0.2, val=[0.8], train=[0.9], verdict=None)
    c = make_run(tmp_path, "close", dropout=0.3, val=[0.8], train=[0.83], verdict=None)
    by_name = {row.name: row for row in compare_runs([a, b, c]).rows}
    assert by_name["memorised"].verdict == "severe"  # train 1.0 and gap 0.2 > 0.15
    assert by_name["mild"].verdict == "mild"  # gap 0.10
    assert by_name["close"].verdict == "none"  # gap 0.03
    assert by_name["close"].rank == 1  # same validation value: the smallest gap wins


def test_sweep_folder_and_unfinished_trial(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    make_run(sweep / "trials", "trial-0000", dropout=0.1, val=[0.5, 0.6], train=[0.7, 0.8], verdict="none")
    make_run(
        sweep / "trials" / "trial-0001",
        "seed-0",
        dropout=0.2,
        val=[0.55, 0.62],
        train=[0.7, 0.8],
        verdict="none",
    )
    pruned = make_run(sweep / "trials", "trial-0002", dropout=0.3, val=[0.3], train=[0.7], verdict="none")
    (pruned / "summary.json").unlink()
    comparison = compare_runs([sweep])
    assert [row.name for row in comparison.rows] == ["trial-0001/seed-0", "trial-0000", "trial-0002"]
    assert comparison.rows[2].best_val == pytest.approx(0.3) and not comparison.rows[2].finished
    assert any("not finished" in note for note in comparison.notes)
    assert comparison.sweeps == [sweep]


def test_runs_from_different_environments_get_a_note_naming_what_differs(tmp_path: Path) -> None:
    from protfit.report.run_dir import environment

    recorded = environment("cpu", 1, 1)
    runs = {
        name: make_run(tmp_path, name, dropout=d, val=[0.5, 0.6])
        for name, d in zip("abc", (0.1, 0.2, 0.3), strict=True)
    }
    for name, torch_version in (("a", "2.13.0+cpu"), ("b", "2.13.0+cpu"), ("c", "2.12.0+cpu")):
        env = json.loads(json.dumps(recorded))
        env["packages"]["torch"] = torch_version
        (runs[name] / "run.json").write_text(json.dumps({"run_id": name, "environment": env}))
    (note,) = [note for note in compare_runs([tmp_path]).notes if "environments" in note]
    assert "torch 2.13.0+cpu (a, b) vs 2.12.0+cpu (c)" in note
    assert "numpy" not in note and "python" not in note  # only what differs is named
    # the same environment everywhere (or none recorded: older runs): no note
    (runs["c"] / "run.json").write_text((runs["a"] / "run.json").read_text())
    assert not [note for note in compare_runs([tmp_path]).notes if "environments" in note]


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes["src"])
        if tag == "a" and attributes.get("href", "").startswith("#"):
            self.links.append(attributes["href"][1:])
        if "id" in attributes:
            self.ids.append(attributes["id"])
        if tag == "tr":
            self.rows += 1


def test_html_report_is_self_contained_and_links_its_plots(tuning_log: Path, tmp_path: Path) -> None:
    written = write_outputs(compare_runs([tuning_log]), tmp_path / "report")
    page = _Images()
    page.feed(written["html"].read_text())
    assert len(page.images) >= 3  # validation curves, train vs validation, parallel coordinates
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.links and set(page.links) <= set(page.ids)
    assert page.rows == 1 + 4  # header + one row per run
    assert (
        yaml.safe_load((tmp_path / "report" / "recommended.yaml").read_text())["model"]["head"]["dropout"]
        == 0.8
    )


def test_sweep_with_an_optuna_study_gets_optuna_plots(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    sweep = tmp_path / "sweep"
    (sweep / "trials").mkdir(parents=True)
    (sweep / "sweep.yaml").write_text(yaml.safe_dump({"study": {"name": "demo", "storage": None}}))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="demo", storage=f"sqlite:///{sweep / 'study.db'}", direction="maximize"
    )
    for index, (dropout, value) in enumerate([(0.1, 0.5), (0.3, 0.6), (0.5, 0.65), (0.7, 0.55)]):
        trial = study.ask()
        trial.suggest_float("model.head.dropout", 0.0, 0.9)
        trial.suggest_float("train.learning_rate", 1e-4, 1e-2, log=True)
        study.tell(trial, value)
        make_run(
            sweep / "trials", f"trial-{index:04d}", dropout=dropout, val=[value], train=[0.8], verdict="none"
        )
    written = write_outputs(compare_runs([sweep]), tmp_path / "out")
    page = _Images()
    page.feed(written["html"].read_text())
    text = written["html"].read_text()
    assert "Parameter importance (Optuna" in text and "Parallel coordinates (Optuna)" in text
    assert len(page.images) == 5


def test_a_run_that_fell_back_to_loss_is_compared_on_the_configured_metric(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", dropout=0.1, val=[0.5, 0.6], train=[0.8, 0.8], verdict="none")
    b = make_run(tmp_path, "b", dropout=0.2, val=[0.7, 0.55], train=[0.8, 0.8], verdict="none")
    summary = json.loads((b / "summary.json").read_text())
    summary.update(monitor="loss", monitor_mode="min", best_epoch=2, best_val_metric=0.9)
    (b / "summary.json").write_text(json.dumps(summary))
    rows = compare_runs([a, b]).rows
    assert [(row.name, row.best_epoch, row.best_val) for row in rows] == [("b", 1, 0.7), ("a", 2, 0.6)]
