"""Fixtures shared by the whole suite (keep this small; folder-specific ones live next to their tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def protfit_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One model cache per test session: tiny models are built once, and ~/.cache is never touched."""
    cache = str(tmp_path_factory.mktemp("protfit-cache"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROTFIT_CACHE", cache)
        yield cache
