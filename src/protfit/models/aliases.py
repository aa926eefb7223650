"""Model aliases: short names that resolve to a local Hugging Face-format folder.

An alias (``antiberty``, ``tiny-esm2``) is accepted everywhere a hub id or a local path is. The
resolver may do one-time work (convert weights, build a tiny model) and caches the result under
:func:`cache_root`, so the second use is free.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from protfit.registry import ALIASES

# The one-hot encoder is built in (no folder to resolve); it is listed with the aliases.
ALIASES.add("onehot", None, "built-in one-hot encoder: the no-download baseline")


def cache_root() -> Path:
    """Where converted/built models and embedding caches live (``PROTFIT_CACHE`` overrides)."""
    root = Path(os.environ.get("PROTFIT_CACHE", Path.home() / ".cache" / "protfit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def staged_folder(target: Path, marker: str) -> Iterator[Path]:
    """Yield an empty sibling of ``target`` to fill; when the block succeeds it is renamed into place.

    An interrupted build therefore never looks complete. If another process finished the same build
    first (``target/marker`` exists), its folder is kept and this one discarded.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        if not (staging / marker).is_file():
            raise RuntimeError(
                f"building {target.name} left no {marker} in {staging}: the build is incomplete"
            )
        try:
            staging.rename(target)
        except OSError:
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def register_alias(name: str, help_text: str) -> Callable[[Callable[[], Path]], Callable[[], Path]]:
    """``@register_alias("name", "help")`` on a ``() -> Path`` resolver: an entry of :data:`ALIASES`."""
    return ALIASES.register(name, help_text)


def list_aliases() -> dict[str, str]:
    """Alias name -> one-line help, the built-in one-hot encoder included."""
    return {entry.name: entry.description for entry in ALIASES.entries()}


def resolve_model_source(name: str) -> str:
    """Alias -> local folder (built on first use); anything else is returned unchanged."""
    resolver = ALIASES.get(name.lower()) if name.lower() in ALIASES else None
    return str(resolver()) if resolver is not None else name
