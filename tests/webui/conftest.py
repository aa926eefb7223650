"""Fixtures the browser test modules share: one headless Chromium, one page on the module's ``server``
(each module defines its own, seeding its workspace, with browser_helpers.serve) and the screenshot folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, open_page


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(server: tuple[str, Path], browser) -> Iterator[object]:
    """One page for the whole module: its tests run in file order and build on each other."""
    page = open_page(browser, server[0])
    yield page
    page.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $PROTFIT_SCREENSHOT_DIR (docs/images for the docs) or a temporary folder."""
    folder = Path(os.environ.get("PROTFIT_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
