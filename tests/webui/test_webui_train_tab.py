"""Train tab handlers without a browser: data checks (starting runs: test_webui_jobs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gradio")

from protfit.data.synthetic import write_synthetic_dataset
from protfit.webui import schema, train_tab
from protfit.webui.jobs import JobRegistry
from protfit.webui.workspace import Workspace


def form_values(problem_type: str = "single_label_classification") -> list[object]:
    values = {spec.key: spec.default for spec in schema.field_specs()}
    values.update({"data.problem_type": problem_type, "model.name": "tiny-esm2"})
    return list(values.values())


@pytest.fixture
def tab(tmp_path: Path) -> train_tab.TrainTab:
    workspace = Workspace(tmp_path / "ws")
    write_synthetic_dataset(workspace.root / "datasets" / "syn", "single_label_classification", 20, 10, 10)
    return train_tab.TrainTab(workspace, JobRegistry(workspace.root))


def test_preview_reports_a_bad_residue_with_file_row_and_field(tab: train_tab.TrainTab) -> None:
    train_csv = tab.workspace.root / "datasets" / "syn" / "train.csv"
    lines = train_csv.read_text().splitlines()
    name, _, label = lines[3].split(",")
    lines[3] = f"{name},MKTAY1AKQR,{label}"
    train_csv.write_text("\n".join(lines) + "\n")
    checks, *_ = tab.preview_data("datasets/syn", *form_values())
    assert checks.startswith("✗ ") and "row 3" in checks and "aa_seq" in checks


def test_preview_shows_sizes_and_checks(tab: train_tab.TrainTab) -> None:
    checks, sizes, lengths, labels, samples = tab.preview_data("datasets/syn", *form_values())
    assert "no sequence is shared between splits" in checks
    assert sizes["sequences"].tolist() == [20, 10, 10]
    assert len(samples) == 5 and lengths is not None and labels is not None
