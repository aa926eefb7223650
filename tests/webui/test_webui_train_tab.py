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
    checks, classes, sizes, lengths, labels, samples, *_ = tab.preview_data("datasets/syn", *form_values())
    assert "no sequence is shared between splits" in checks
    assert sizes["value"]["sequences"].tolist() == [20, 10, 10] and sizes["visible"]
    assert len(samples["value"]) == 5 and lengths["value"] is not None and labels["value"] is not None
    assert classes["visible"] and classes["value"][["train", "validation", "test"]].sum().tolist() == [
        20,
        10,
        10,
    ]


def test_preview_without_a_problem_type_guesses_it_and_shows_it(tab: train_tab.TrainTab) -> None:
    write_synthetic_dataset(tab.workspace.root / "datasets" / "reg", "regression", 20, 10, 10)
    checks, classes, *_, problem_type, label_names = tab.preview_data("datasets/reg", *form_values(""))
    assert not checks.startswith("✗") and "guessed from the labels: **regression**" in checks
    assert problem_type["value"] == "regression" and label_names["value"] == ""
    assert not classes["visible"]  # no classes in a regression


def test_text_classes_are_named_counted_per_split_and_a_missing_one_warned(tab: train_tab.TrainTab) -> None:
    folder = tab.workspace.root / "datasets" / "names"
    folder.mkdir()
    rows = {"train": ["binder", "non-binder", "weak"] * 3, "validation": ["binder", "non-binder"] * 2}
    for split, labels in rows.items():
        lines = [
            "name,aa_seq,label",
            *(f"s{i},MKTAYIAKQ{'ACDEFGHIK'[i % 9]}R,{label}" for i, label in enumerate(labels)),
        ]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    checks, classes, *_, problem_type, label_names = tab.preview_data("datasets/names", *form_values(""))
    assert problem_type["value"] == "single_label_classification"
    assert label_names["value"] == "[binder, non-binder, weak]"
    table = classes["value"].set_index("class")
    assert table.loc["weak"].tolist() == [3, 0] and table.loc["binder"].tolist() == [3, 2]
    assert "class **weak** has no sequence in validation" in checks


@pytest.mark.parametrize("name", ["/etc", "../../data", "datasets/../../x", "~/models"])
def test_a_model_path_outside_the_workspace_is_refused_without_saying_if_it_exists(
    tab: train_tab.TrainTab, name: str
) -> None:
    values = form_values()
    values[[spec.key for spec in tab.specs].index("model.name")] = name
    message, *_ = tab.preview_command("datasets/syn", *values)
    assert message.startswith(f"✗ refused: model.name '{name}' is outside the workspace")
    assert "exist" not in message
    _, message, *_ = tab.start("datasets/syn", *values)
    assert "refused: model.name" in message
    assert not list((tab.workspace.root / "runs").iterdir())


def test_the_zero_shot_model_is_confined_too(tab: train_tab.TrainTab) -> None:
    values = form_values()
    values[[spec.key for spec in tab.specs].index("model.zero_shot_model")] = "/etc"
    message, *_ = tab.preview_command("datasets/syn", *values)
    assert message.startswith("✗ refused: model.zero_shot_model '/etc' is outside the workspace")


@pytest.mark.parametrize(
    "name", ["onehot", "antiberty", "tiny-esm2", "facebook/esm2_t6_8M_UR50D", "models/mine"]
)
def test_picker_models_aliases_hub_ids_and_workspace_folders_are_accepted(
    tab: train_tab.TrainTab, name: str
) -> None:
    values = form_values()
    values[[spec.key for spec in tab.specs].index("model.name")] = name
    assert tab.raw_config("datasets/syn", values, "x")["model"]["name"] == name


def test_a_refused_upload_is_cleared_and_its_message_keeps_the_patterns(
    tab: train_tab.TrainTab, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    *_, message, box = tab.upload([str(notes)], "label")
    assert box is None and "`train.*`" in message  # backticks: Markdown would eat the asterisks
    source = tab.workspace.root / "datasets" / "syn"
    dataset, problem_type, _, message, box = tab.upload(
        [str(source / "train.csv"), str(source / "validation.csv")], "label"
    )
    assert box is None and message.startswith("uploaded to `datasets/upload-")
    assert dataset["value"] in dataset["choices"]
    assert problem_type["value"] == "single_label_classification"
