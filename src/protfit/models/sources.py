"""What a ``model.name`` points to (an alias, a local model folder or a Hugging Face hub id), checked
in well under a second and before anything is created: no torch or transformers here, so
``protfit train`` with a mistyped model name answers at once (issue #27).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import socket
import threading
from pathlib import Path

from protfit.models.aliases import list_aliases
from protfit.registry import FAMILIES


class ModelError(ValueError):
    """A model that cannot be loaded or combined as configured; the message says what to change."""


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def not_found_message(name: str, reason: str) -> str:
    aliases = ", ".join(sorted(list_aliases()))
    return (
        f"model '{name}' could not be found locally or downloaded from the Hugging Face hub ({reason}). "
        f"Give a hub id (e.g. facebook/esm2_t6_8M_UR50D), a local model folder with config.json, "
        f"or an alias: {aliases}"
    )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = ("1", "ON", "YES", "TRUE")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(flag.upper() in _TRUE for flag in flags)


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an id the hub library refuses is simply not cached
        return False


def hub_reachable(timeout: float = 1.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds.

    Without this, an uncached hub id offline costs transformers' retries (~20 s of warnings) before
    the error; name resolution has no timeout of its own, hence the thread.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    address = (
        endpoint.hostname or "huggingface.co",
        endpoint.port or (80 if endpoint.scheme == "http" else 443),
    )
    answered: list[bool] = []

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=timeout):
            answered.append(True)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answered)


def _suggestions(name: str) -> str:
    candidates = {alias.lower(): alias for alias in list_aliases()}
    for entry in FAMILIES.entries():
        for example in entry.options["examples"].split(","):
            example = example.strip()
            if "/" in example:
                candidates[example.lower()] = example
                candidates[example.split("/", 1)[1].lower()] = example
    close = difflib.get_close_matches(name.lower(), list(candidates), n=3, cutoff=0.4)
    matches = list(dict.fromkeys(candidates[match] for match in close))
    return f"did you mean {' or '.join(matches)}? " if matches else ""


def resolve_model_or_fail(name: str) -> str:
    """Check that ``model.name`` can be loaded, in well under a second and before anything is created.

    Accepts an alias (built later on first use), an existing model folder, and a hub id that is in the
    local Hugging Face cache, or of the form ``owner/name`` while the hub is reachable (and
    HF_HUB_OFFLINE unset). Returns the kind: ``alias``, ``folder`` or ``hub``. Anything else is a
    :class:`ModelError` with close names (difflib) and the aliases; nothing is downloaded or built.
    """
    aliases = sorted(list_aliases())
    if name.lower() in aliases:
        return "alias"
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
        return "folder"
    if looks_like_path(name):
        raise ModelError(f"model folder {path} does not exist (model.name = '{name}')")
    if _in_hub_cache(name):
        return "hub"
    if not _HUB_ID.match(name):
        raise ModelError(
            f"model '{name}' is not an alias, a local model folder or a Hugging Face hub id (owner/name); "
            f"{_suggestions(name)}aliases: {', '.join(aliases)} (`protfit models` lists the families)"
        ) from None
    if _hub_offline():
        raise ModelError(
            not_found_message(name, "not in the local Hugging Face cache, and HF_HUB_OFFLINE is set")
        ) from None
    if not hub_reachable():
        raise ModelError(
            not_found_message(name, "not in the local Hugging Face cache, and the hub cannot be reached")
        ) from None
    return "hub"
