"""What the browser test modules share: finding a widget by its label, choosing, typing a number."""

from __future__ import annotations

import re
import shutil
import socket

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
RUN_TIMEOUT = 240_000  # ms: a tiny run, on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
