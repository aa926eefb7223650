"""The biologist's path in a real browser, with no option typed by hand: upload the split files, the
problem type is guessed, preview, pick a model from the list, train with the defaults, read the
results, predict. Also: a refused upload does not block the next one, and model.name stays inside the
workspace. One server and one page for the module; the tests run in file order."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import RUN_TIMEOUT, browser_expect, field, serve

from protfit.data.synthetic import write_synthetic_dataset

expect = browser_expect()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with serve(tmp_path_factory.mktemp("workspace")) as served:  # empty: the data comes as an upload
        yield served


@pytest.fixture(scope="module")
def measurements(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A biologist's files: sequences with a measured number, already split."""
    folder = tmp_path_factory.mktemp("my-data")
    write_synthetic_dataset(folder, "regression", n_train=60, n_validation=20, n_test=20)
    return folder


def test_a_refused_upload_does_not_block_the_next_one(page, measurements: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a split file\n")
    files = page.locator("input[type=file]").first
    files.set_input_files(str(notes))
    expect(page.get_by_text("✗ refused upload 'notes.txt'")).to_be_visible()
    expect(page.locator("code", has_text="train.*").first).to_be_visible()  # the pattern, not emphasis
    files.set_input_files([str(measurements / f"{split}.csv") for split in ("train", "validation", "test")])
    expect(page.get_by_text(re.compile(r"uploaded to datasets/upload-"))).to_be_visible()


def test_upload_preview_train_results_predict_without_typing(page, server, shots: Path) -> None:
    # 1 Data: the problem type was guessed from the uploaded labels; nothing shown before a preview
    expect(field(page, "Problem type")).to_have_value("regression")
    expect(page.get_by_text("guessed from the labels")).to_be_visible()
    expect(page.get_by_text("split sizes")).to_be_hidden()
    page.get_by_role("button", name="Preview data").click()
    expect(page.get_by_text("Data checks")).to_be_visible()
    expect(page.get_by_text("split sizes")).to_be_visible()

    # 2 Model: a real model is preselected; test models stay out of the list; one-hot picked by clicking
    picker = field(page, "Model")
    expect(picker).not_to_have_value("")
    picker.click()
    expect(page.get_by_role("option", name=re.compile(r"^ESM-2 650M"))).to_be_visible()
    expect(page.get_by_role("option", name=re.compile("tiny-"))).to_have_count(0)
    page.get_by_role("heading", name="2 · Model").evaluate(
        "element => element.scrollIntoView({block: 'start'})"
    )
    page.screenshot(path=shots / "webui-model-picker.png", full_page=False)
    page.get_by_role("option", name=re.compile(r"^One-hot")).click()
    expect(page.get_by_text("model.name: onehot")).to_be_visible()

    # 3 Train with the defaults, 4 Results
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("✓ finished")).to_be_visible(timeout=RUN_TIMEOUT)
    expect(page.get_by_text("test metrics (95% bootstrap intervals)")).to_be_visible()
    expect(page.get_by_role("button", name="Results CSV")).to_be_visible()
    (run,) = (server[1] / "runs").iterdir()
    assert (run / "summary.json").is_file()

    # Predict from that run, chosen from the list
    page.get_by_role("tab", name="Predict").click()
    field(page, "run").click()
    page.get_by_role("option", name=f"runs/{run.name}").click()
    page.get_by_label("sequences", exact=True).fill("MKTAYIAKQRQISFVKSHFSRQ\nDEDEDEWWFFKRKRLLAGSTP")
    page.get_by_role("button", name="Predict", exact=True).click()
    expect(page.get_by_text("✓ 2 predictions")).to_be_visible(timeout=60_000)


def test_a_model_path_outside_the_workspace_is_refused(page, server) -> None:
    page.get_by_role("tab", name="Train").click()
    picker = field(page, "Model")
    for given in ("/etc", "../../data"):
        picker.fill(given)
        picker.press("Enter")
        page.get_by_role("button", name="Preview command").click()
        expect(page.get_by_text(f"✗ refused: model.name '{given}' is outside the workspace")).to_be_visible()
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("✗ refused: model.name '../../data' is outside the workspace")).to_be_visible()
    assert len(list((server[1] / "runs").iterdir())) == 1  # only the run of the previous test
