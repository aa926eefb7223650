"""Jobs belong to the workspace, seen in a real browser: a double click starts one run, Start stays
disabled while it runs, a reloaded page and a second page follow the run and can abort it; Predict
lists a sweep trial trained after the page was opened and notes inputs outside the training data.

Its own app server and workspace (module scope); the helpers (browser_helpers.py) and fixtures
(conftest.py) are those of the other browser modules, the screenshots go to $PROTFIT_SCREENSHOT_DIR.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import (
    RUN_TIMEOUT,
    browser_expect,
    choose,
    classification_workspace,
    never_stop_early,
    open_page,
    serve,
    set_number,
)

import protfit
from protfit.config import build_config

expect = browser_expect()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with serve(classification_workspace(tmp_path_factory)) as served:
        yield served


def test_double_click_reload_and_second_page_follow_one_run(browser, server, shots: Path) -> None:
    url, root = server
    page = open_page(browser, url)
    choose(page, "Dataset folder", "datasets/syn")
    choose(page, "Problem type", "single_label_classification")
    choose(page, "Model", "onehot")
    set_number(page, "Epochs", 100000)  # a one-hot epoch of 40 sequences takes ~0.1 s: only Abort ends it
    page.get_by_role("button", name="Advanced: every other option").click()
    never_stop_early(page)  # only Abort ends it
    start = page.get_by_role("button", name="Start", exact=True)
    start.dblclick()
    expect(start).to_be_disabled()
    expect(page.get_by_text("… running")).to_be_visible(timeout=60_000)
    [record] = list((root / "jobs").glob("[!.]*.json"))
    name = json.loads(record.read_text())["id"]
    assert [path.name for path in (root / "configs").glob("*.yaml")] == [f"{name}.yaml"]
    written = (root / "configs" / f"{name}.yaml").read_text()
    assert "patience: null" in written, f"the cleared Patience did not reach the run:\n{written}"
    expect(page.get_by_text(f"protfit train configs/{name}.yaml").first).to_be_visible()  # command pane
    expect(page.get_by_text(re.compile(r"completed epochs: [1-9]"))).to_be_visible(timeout=RUN_TIMEOUT)
    expect(start).to_be_disabled()

    page.reload()
    expect(page.get_by_text("… running")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_disabled()
    second = open_page(browser, url)
    # the page-load event re-attaches; on a busy machine its first progress tick can take a while
    expect(second.get_by_text("… running")).to_be_visible(timeout=90_000)
    second.get_by_role("button", name="Abort", exact=True).click()
    expect(second.get_by_text("■ stopped")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("■ stopped")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    assert len(list((root / "runs").iterdir())) == 1

    second.get_by_role("tab", name="Jobs").click()
    expect(second.get_by_text("aborted").filter(visible=True).first).to_be_visible()
    expect(second.get_by_text(f"runs/{name}").filter(visible=True).first).to_be_visible()
    second.screenshot(path=shots / "webui-jobs.png", full_page=False)
    second.close()
    page.close()


def test_predict_lists_a_sweep_trial_and_notes_inputs_outside_the_training_data(
    browser, server, shots: Path
) -> None:
    url, root = server
    page = open_page(browser, url)
    raw = {  # a sweep trial written after the page was opened: the picker lists it when the tab opens
        "data": {"path": str(root / "datasets" / "syn"), "problem_type": "single_label_classification"},
        "model": {"name": "onehot", "method": "full"},
        "train": {"epochs": 1, "progress": False},
        "evaluation": {"bootstrap": {"resamples": 10}},
        "output": {"dir": str(root / "sweeps" / "s1" / "trials"), "name": "trial-0000"},
    }
    protfit.train(build_config(raw))
    page.get_by_role("tab", name="Predict").click()
    choose(page, "run", "sweeps/s1/trials/trial-0000")
    page.get_by_label("sequences", exact=True).fill("MKV\n" + "MKTAYIAKQRQISFVKSHFSRQ" * 30)
    page.get_by_role("button", name="Predict", exact=True).click()
    expect(page.get_by_text("✓ 2 predictions")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("2 of 2 sequences lie outside the training data")).to_be_visible()
    # gradio keeps hidden copies of table cells in the page
    note = page.get_by_text(re.compile(r"length 3 outside training lengths")).filter(visible=True)
    expect(note.first).to_be_visible()
    page.screenshot(path=shots / "webui-predict-domain.png", full_page=False)
    page.close()
