"""The Results, Compare and refusal messages as a user sees them in Chromium (Playwright, headless).

The run folders are written as `protfit train` leaves them (tests/webui/webui_runs.py: a run that
ended severe and undertrained, with six pieces of advice), so no training is needed here.
Screenshots go to $PROTFIT_SCREENSHOT_DIR (docs/images for docs/webui.md) or a temporary folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import browser_expect, choose, field, serve, set_number
from webui_runs import ADVICE, write_run

from protfit.data.synthetic import write_synthetic_dataset

expect = browser_expect()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("workspace")
    write_synthetic_dataset(root / "datasets" / "syn", "regression", n_train=40, n_validation=20, n_test=20)
    write_run(root / "runs" / "gb1-lr-0.001", 1e-3, 0.45)
    write_run(root / "runs" / "gb1-lr-0.0001", 1e-4, 0.38818496465682983, verdict="mild")
    with serve(root) as served:
        yield served


def test_results_show_the_runs_own_diagnostics_and_advice(page, shots: Path) -> None:
    choose(page, "open an existing run", "runs/gb1-lr-0.001")
    page.get_by_role("button", name="Open run").click()
    verdict = page.get_by_text("overfitting: severe")
    expect(verdict).to_be_visible()
    expect(page.get_by_text("undertrained", exact=True)).to_be_visible()
    for tip in ADVICE:
        expect(page.get_by_text(tip)).to_be_visible()
    expect(page.get_by_text("– (undefined: constant predictions)").filter(visible=True).first).to_be_visible()
    expect(page.get_by_text("no sign of overfitting")).to_have_count(0)
    expect(page.get_by_text(re.compile(r"\bnan\b"))).to_have_count(0)
    page.get_by_text("Best epoch 5").evaluate("element => element.scrollIntoView({block: 'start'})")
    page.screenshot(path=shots / "webui-results-diagnostics.png", full_page=False)


def test_a_negative_learning_rate_is_refused_in_words(page, shots: Path) -> None:
    choose(page, "Dataset folder", "datasets/syn")
    choose(page, "Problem type", "regression")
    choose(page, "Model", "onehot")
    set_number(page, "Learning rate", -1)
    page.get_by_role("button", name="Preview command").click()
    message = page.get_by_text(
        "Learning rate (train.learning_rate): must be greater than 0, or 'auto' (got -1)"
    )
    expect(message).to_be_visible()
    expect(page.get_by_text("constrained-float")).to_have_count(0)
    message.evaluate("element => element.scrollIntoView({block: 'center'})")
    page.screenshot(path=shots / "webui-error.png", full_page=False)
    set_number(page, "Learning rate", 0.001)


def test_compare_shows_the_recommendation_and_its_reason(page, shots: Path) -> None:
    page.get_by_role("tab", name="Compare").click()
    picker = field(page, "runs or a sweep")
    for run in ("runs/gb1-lr-0.001", "runs/gb1-lr-0.0001"):
        picker.click()
        picker.fill(run)
        expect(page.get_by_role("option", name=run, exact=True)).to_be_visible()
        picker.press("Enter")
    picker.press("Escape")
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_text("✓ protfit compare")).to_be_visible(timeout=120_000)
    expect(
        page.get_by_text(
            "best validation SPEARMAN among runs without severe overfitting; learning_rate 0.0001 "
            "(vs 0.001 in gb1-lr-0.001) gained 0.062 validation SPEARMAN"
        )
    ).to_be_visible()
    # one line per run: the table scrolls sideways instead of breaking words
    cell = page.get_by_text("beats baselines").filter(visible=True).first
    rank = page.get_by_text("★★★★★").filter(visible=True).first
    expect(cell).to_be_visible()
    assert cell.bounding_box()["height"] <= 1.5 * rank.bounding_box()["height"]
    page.get_by_text("Recommendation", exact=True).evaluate(
        "element => element.scrollIntoView({block: 'start'})"
    )
    page.screenshot(path=shots / "webui-compare-reason.png", full_page=False)
