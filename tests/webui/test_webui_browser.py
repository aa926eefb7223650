"""The web UI driven in a real browser: Playwright + Debian's Chromium, headless.

One app server (bound to 127.0.0.1 on a free port) and one browser page for the whole module; the
tests run in file order and build on each other (the run trained in one is predicted from in another).
Screenshots go to $PROTFIT_SCREENSHOT_DIR (docs/images for the README) or a temporary folder.
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
    field,
    never_stop_early,
    serve,
    set_number,
)

from protfit.config import ConfigError, build_config
from protfit.data.synthetic import write_synthetic_dataset

expect = browser_expect()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = classification_workspace(tmp_path_factory)
    outside = tmp_path_factory.mktemp("outside")
    write_synthetic_dataset(outside, "single_label_classification", n_train=10, n_validation=5, n_test=5)
    (root / "datasets" / "escape").symlink_to(outside, target_is_directory=True)
    with serve(root) as served:
        yield served


def test_preview_data_and_command(page, shots: Path) -> None:
    choose(page, "Dataset folder", "datasets/syn")
    expect(field(page, "Problem type")).to_have_value("single_label_classification")  # guessed
    page.get_by_role("button", name="Preview data").click()
    expect(page.get_by_text("no sequence is shared between splits")).to_be_visible()
    expect(page.get_by_text("datasets/syn/train.csv").first).to_be_visible()
    page.screenshot(path=shots / "webui-train-preview.png", full_page=False)

    page.get_by_label("show test models").check()
    choose(page, "Model", "tiny-esm2")
    choose(page, "Method", "full")
    set_number(page, "Epochs", 2)
    page.get_by_role("button", name="Preview command").click()
    expect(page.get_by_text("valid configuration, saved as")).to_be_visible()
    expect(
        page.get_by_text(re.compile(r"protfit train configs/webui-\d{8}-\d{6}-\w{6}\.yaml"))
    ).to_be_visible()
    expect(page.get_by_text("name: tiny-esm2", exact=True)).to_be_visible()
    page.get_by_text("valid configuration, saved as").evaluate(
        "element => element.scrollIntoView({block: 'start'})"
    )
    page.screenshot(path=shots / "webui-train-command.png", full_page=False)


def test_options_show_only_when_relevant(page) -> None:
    expect(field(page, "Rank r")).to_be_hidden()
    choose(page, "Method", "lora")
    page.get_by_role("button", name="Advanced: every other option").click()
    page.get_by_role("button", name=re.compile(r"^Model\b")).click()
    page.get_by_role("button", name=re.compile(r"^LoRA \(model\.lora\)")).click()
    expect(field(page, "Rank r")).to_be_visible()
    expect(field(page, "AdaLoRA init rank r")).to_be_hidden()
    choose(page, "Method", "full")
    expect(field(page, "Rank r")).to_be_hidden()


def test_refused_value_has_the_config_message(page) -> None:
    with pytest.raises(ConfigError) as refused:
        build_config(
            {
                "data": {"path": "x", "problem_type": "regression"},
                "model": {"name": "x"},
                "train": {"epochs": 0},
            }
        )
    (problem,) = refused.value.problems  # the CLI's words, after the field's name and key
    set_number(page, "Epochs", 0)
    page.get_by_role("button", name="Preview command").click()
    expect(page.get_by_text(f"Epochs (train.epochs): {problem.words}", exact=False)).to_be_visible()
    set_number(page, "Epochs", 2)


def test_start_run_progress_final_metrics_and_csv(page, server, shots: Path, tmp_path: Path) -> None:
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("… running")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("✓ finished")).to_be_visible(timeout=RUN_TIMEOUT)
    # the baseline's row in the results table (gradio keeps hidden copies of table cells in the page)
    expect(page.get_by_text("composition_linear").filter(visible=True).first).to_be_visible()
    expect(page.get_by_text("verdict:", exact=False).first).to_be_visible()
    page.get_by_text("✓ finished").evaluate("element => element.scrollIntoView({block: 'start'})")
    page.screenshot(path=shots / "webui-train-results.png", full_page=False)
    with page.expect_download() as download:
        page.get_by_role("button", name="Results CSV").click()
    saved = tmp_path / "results.csv"
    download.value.save_as(saved)
    assert saved.read_text().splitlines()[0] == "model,metric,value,low,high"
    runs = list((server[1] / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file()


def test_abort_keeps_completed_epochs(page, server) -> None:
    set_number(page, "Epochs", 400)
    never_stop_early(page)  # only Abort ends it
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text(re.compile(r"completed epochs: [1-9]"))).to_be_visible(timeout=RUN_TIMEOUT)
    page.get_by_role("button", name="Abort").click()
    expect(page.get_by_text("■ stopped")).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(r"\d+ completed epochs? kept in"))).to_be_visible()
    run_dir = max((server[1] / "runs").iterdir(), key=lambda path: path.stat().st_mtime)
    history = (run_dir / "history.jsonl").read_text().splitlines()
    assert 1 <= len(history) < 400
    assert (run_dir / "checkpoints" / "last").is_dir()
    assert not (run_dir / "summary.json").exists()

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text(f"resumed: protfit train --resume runs/{run_dir.name}")).to_be_visible()
    expect(page.get_by_text("… running")).to_be_visible(timeout=60_000)
    for _ in range(RUN_TIMEOUT // 500):  # the resumed run adds epochs to the same history
        if len((run_dir / "history.jsonl").read_text().splitlines()) > len(history):
            break
        page.wait_for_timeout(500)
    page.get_by_role("button", name="Abort").click()
    expect(page.get_by_text("■ stopped")).to_be_visible(timeout=60_000)
    resumed = (run_dir / "history.jsonl").read_text().splitlines()
    assert resumed[: len(history)] == history and len(resumed) > len(history)


def test_cli_runs_appear_and_their_settings_load(page, server) -> None:
    first = min((server[1] / "runs").iterdir(), key=lambda path: path.stat().st_mtime)
    page.get_by_role("button", name="↻").first.click()
    choose(page, "open an existing run", f"runs/{first.name}")
    page.get_by_role("button", name="Load its settings").click()
    expect(page.get_by_text(f"settings loaded from runs/{first.name}/config.yaml")).to_be_visible()
    expect(field(page, "Epochs")).to_have_value("2")
    expect(field(page, "Method")).to_have_value("full")


def test_lr_finder_suggests_a_rate_for_the_train_tab(page, shots: Path) -> None:
    page.get_by_role("tab", name="LR finder / Tune").click()
    set_number(page, "steps", 20)
    page.get_by_role("button", name="Run LR finder").click()
    expect(page.get_by_text("✓ suggested learning rate")).to_be_visible(timeout=RUN_TIMEOUT)
    expect(
        page.get_by_role("img", name="loss vs learning rate").or_(page.locator("img[src*='lr_find']")).first
    ).to_be_visible()
    page.get_by_role("button", name="Use the suggested learning rate on the Train tab").click()
    expect(page.get_by_text(re.compile(r"Replace the Train tab's learning rate 0\.001 with"))).to_be_visible()
    page.get_by_role("button", name="Confirm: replace the learning rate").click()
    page.get_by_role("tab", name="Train").click()
    expect(field(page, "Learning rate")).not_to_have_value("0.001")
    set_number(page, "Learning rate", 0.003)


def test_three_trial_sweep(page, server, shots: Path) -> None:
    page.get_by_role("tab", name="LR finder / Tune").click()
    set_number(page, "trials (budget)", 3)
    page.get_by_role("button", name="Start sweep").click()
    expect(page.get_by_text("✓ finished")).to_be_visible(timeout=RUN_TIMEOUT)
    expect(
        page.get_by_text("3 complete, 0 pruned")
        .or_(page.get_by_text(re.compile(r"\d complete, \d pruned, 0 failed")))
        .first
    ).to_be_visible()
    sweep = next((server[1] / "sweeps").iterdir())
    assert len(list((sweep / "trials").glob("trial-*/"))) == 3


def test_three_trial_tune_shows_the_comparison_then_compare_tab(page, server, shots: Path) -> None:
    page.get_by_role("tab", name="LR finder / Tune").click()
    set_number(page, "trials (budget)", 3)
    page.get_by_role("button", name="Start tune").click()
    expect(page.get_by_text("started protfit tune")).to_be_visible()
    expect(page.get_by_text("✓ finished")).to_be_visible(timeout=2 * RUN_TIMEOUT)
    heading = page.get_by_role("heading", name=re.compile("Comparison of the trials"))
    expect(heading).to_be_visible()
    expect(page.get_by_text("★★★★★").filter(visible=True).first).to_be_visible()
    heading.evaluate("element => element.scrollIntoView({block: 'center'})")
    page.screenshot(path=shots / "webui-tune.png", full_page=False)
    tune = next((server[1] / "tunes").iterdir())
    assert len(list((tune / "sweep" / "trials").glob("trial-*/"))) == 3
    assert (tune / "tune.md").is_file()


def test_compare_tab_table_plots_downloads_and_recommended_config(page, server, shots: Path) -> None:
    tune = next((server[1] / "tunes").iterdir())
    page.get_by_role("tab", name="Compare").click()
    choose(page, "runs or a sweep", f"tunes/{tune.name}")
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_text("✓ protfit compare")).to_be_visible(timeout=120_000)
    expect(page.get_by_text("★★★★★").filter(visible=True).first).to_be_visible()
    for name in ("Markdown", "CSV", "HTML (plots)"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    expect(page.get_by_alt_text("comparison plot").first).to_be_visible()
    page.screenshot(path=shots / "webui-compare.png", full_page=False)
    page.get_by_role("button", name="Train the recommended config").click()
    expect(
        page.get_by_text(re.compile(r"settings loaded from comparisons/compare-.*/recommended\.yaml"))
    ).to_be_visible()
    expect(page.get_by_role("tab", name="Train")).to_have_attribute("aria-selected", "true")


def test_predict_from_pasted_sequences(page, server, shots: Path) -> None:
    finished = [path for path in (server[1] / "runs").iterdir() if (path / "summary.json").is_file()]
    page.get_by_role("tab", name="Predict").click()
    choose(page, "run", f"runs/{finished[0].name}")
    page.get_by_label("sequences", exact=True).fill("MKTAYIAKQRQISFVKSHFSRQ\nDEDEDEWWFFKRKRLLAGSTP")
    page.get_by_role("button", name="Predict", exact=True).click()
    expect(page.get_by_text("✓ 2 predictions")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("seq2").first).to_be_visible()
    expect(page.get_by_role("button", name="Download predictions CSV")).to_be_visible()
    page.screenshot(path=shots / "webui-predict.png", full_page=False)

    page.get_by_label("sequences", exact=True).fill("MKTAY1AKQR")
    page.get_by_role("button", name="Predict", exact=True).click()
    expect(page.get_by_text(re.compile(r"protfit predict: error: .*pasted\.fasta, row 1"))).to_be_visible()


def test_path_traversal_refused(page, server) -> None:
    choose(page, "run", "../../etc")
    page.get_by_label("sequences", exact=True).fill("MKTAYIAKQR")
    page.get_by_role("button", name="Predict", exact=True).click()
    expect(page.get_by_text("refused: '../../etc' points outside the workspace")).to_be_visible()

    page.get_by_role("tab", name="Train").click()
    for given, reason in (
        ("../../etc", "points outside the workspace"),
        ("/etc", "is an absolute path"),
        ("datasets/escape", "points outside the workspace"),
    ):
        choose(page, "Dataset folder", given)
        page.get_by_role("button", name="Preview data").click()
        # picking it already says so (the problem type cannot be guessed), and so does Preview data
        expect(page.get_by_text(f"✗ refused: '{given}' {reason}").first).to_be_visible()
    assert json.dumps(sorted(p.name for p in (server[1] / "datasets").iterdir())) == '["escape", "syn"]'
