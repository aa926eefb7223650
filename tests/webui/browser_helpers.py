"""What the browser test modules share: an app server on a free port, opening a page, finding a widget by
its label, choosing, typing a number. The shared fixtures (``browser``, ``page``, ``shots``) are in
conftest.py; each module's own ``server`` fixture seeds its workspace and calls :func:`serve`."""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from protfit.data.synthetic import write_synthetic_dataset

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
RUN_TIMEOUT = 240_000  # ms: a tiny run, on a busy 2-core machine


def browser_expect():
    """Playwright's ``expect``; skips the calling module where Playwright, Gradio or Debian's Chromium
    is missing (call it at module level)."""
    playwright = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("gradio")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed", allow_module_level=True)
    return playwright.expect


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, Path]]:
    """The web UI app on the workspace ``root``, bound to 127.0.0.1 on a free port: (its URL, ``root``)."""
    from protfit.webui.app import build_app, launch_options
    from protfit.webui.workspace import Workspace

    workspace = Workspace(root)
    app = build_app(workspace)
    app.queue(default_concurrency_limit=8)
    options = launch_options(workspace, port=free_port())
    assert options["server_name"] == "127.0.0.1"
    app.launch(**options, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{options['server_port']}/", workspace.root
    finally:
        app.protfit_jobs.stop_all()
        app.close()


def classification_workspace(factory) -> Path:
    """A new workspace (from pytest's ``tmp_path_factory``) with a two-class synthetic data set in
    ``datasets/syn``: 40 training, 20 validation and 20 test sequences."""
    root = factory.mktemp("workspace")
    write_synthetic_dataset(
        root / "datasets" / "syn", "single_label_classification", n_train=40, n_validation=20, n_test=20
    )
    return root


def open_page(browser, url: str):
    """A new page on the app at ``url``, once its Train tab has loaded."""
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.set_default_timeout(30_000)
    page.goto(url)
    page.get_by_role("button", name="Preview data").wait_for()
    return page


def field(page, label: str):
    """The widget labelled ``label`` (a text box's accessible name also holds its help text)."""
    with_help = page.get_by_role("textbox", name=re.compile("^" + re.escape(label) + r"( |$)"))
    return page.get_by_label(label, exact=True).or_(with_help)


def choose(page, label: str, value: str) -> None:
    box = field(page, label)
    box.click()
    box.fill(value)
    option = page.get_by_role("option", name=value, exact=True)
    described = page.get_by_role("option", name=value)  # the model picker's options describe the model
    if option.count():
        option.first.click()
    elif described.count():
        described.first.click()
    else:  # a name the dropdown allows without listing (a hub id, a typed path)
        box.press("Enter")
    box.press("Escape")


def set_number(page, label: str, value: object) -> None:
    box = field(page, label)
    box.fill("" if value is None else str(value))
    box.press("Tab")


def never_stop_early(page) -> None:
    """Open Advanced's Train › Early stopping section and clear Patience: only Abort ends the run."""
    page.get_by_role("button", name=re.compile(r"^Train\b(?! the)")).click()  # Advanced's section
    page.get_by_role("button", name=re.compile(r"^Early stopping \(train\.early_stopping\)")).click()
    box = field(page, "Patience")
    box.wait_for(state="visible")
    # the sections opened above render their fields; a value typed while they still rendered was lost
    # now and then (the run then stopped early with the default patience): let them settle first
    page.wait_for_timeout(1_000)
    set_number(page, "Patience", None)
    from playwright.sync_api import expect

    expect(box).to_have_value("")
