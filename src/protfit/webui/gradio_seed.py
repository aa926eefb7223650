"""Keep gradio from writing into its installed package.

On import, gradio reads a random "hash seed" (it salts the names of cached files) from
``<gradio package>/hash_seed.txt`` and writes that file when it is missing: a write into the
installation, which may be read-only or shared between users. Gradio reads no setting for this path,
only the module global ``gradio.utils.HASH_SEED_PATH`` (gradio 6.31), so this import hook sets that
global to a file in protfit's cache as soon as ``gradio.utils`` has run and before anything calls it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any


def seed_file() -> str:
    from protfit.models.aliases import cache_root

    folder = cache_root() / "gradio"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / "hash_seed.txt")


class _RedirectHashSeed(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "gradio.utils":
            return None
        sys.meta_path.remove(self)  # once is enough
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run_module(module)
            module.HASH_SEED_PATH = seed_file()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Redirect the seed file, unless gradio was imported before protfit.webui (then it is too late)."""
    if "gradio.utils" not in sys.modules and not any(isinstance(f, _RedirectHashSeed) for f in sys.meta_path):
        sys.meta_path.insert(0, _RedirectHashSeed())
