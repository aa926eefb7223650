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

_ALIASES: dict[str, Callable[[], Path]] = {}
_ALIAS_HELP: dict[str, str] = {}


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
        try:
            staging.rename(target)
        except OSError:
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def register_alias(name: str, help_text: str) -> Callable[[Callable[[], Path]], Callable[[], Path]]:
    def decorator(resolver: Callable[[], Path]) -> Callable[[], Path]:
        _ALIASES[name] = resolver
        _ALIAS_HELP[name] = help_text
        return resolver

    return decorator


def _load_builtin_aliases() -> None:
    # Imported for their registration side effect; kept lazy so `import protfit` stays light.
    from protfit.models import antiberty, tiny  # noqa: F401


def list_aliases() -> dict[str, str]:
    _load_builtin_aliases()
    return dict(_ALIAS_HELP)


def resolve_model_source(name: str) -> str:
    """Alias -> local folder (built on first use); anything else is returned unchanged."""
    _load_builtin_aliases()
    resolver = _ALIASES.get(name.lower())
    return str(resolver()) if resolver is not None else name
