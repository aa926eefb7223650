"""One generic registry for every pluggable component (timm's pattern).

Methods, poolers, heads, schedulers, metrics, model families, aliases, training plug-ins
(regularizers) and experiment trackers each live in a :class:`Registry`. A component registers with one decorator::

    @POOLERS.register("mean", "average of the residue states")
    def mean_pooler(hidden_size, cfg): ...

``protfit models``, the docs and the web UI list entries from here, and the config validates names
against it at the edge (an unknown ``model.pooler`` is a config error before any backbone loads).

Checking a name imports nothing heavy, so a config error answers in a fraction of a second (issue
#27): a registry whose built-in modules import torch declares the names they register
(``builtin_names``), and ``check`` reads that list; the modules are imported only when an entry is
used. Importing them verifies the list both ways, so a missed name fails the first test that loads
the registry instead of being refused (or accepted) by the config.

Why the registries are declared here and not in the modules that fill them: each registry names the
packages (or modules) that hold its built-in entries and imports them on first use; a package is
scanned, every module in it imported, so a new module there is found without being listed anywhere.
So no module needs an import at its bottom for a side effect, nothing imports a layer above it to be
registered, and ``import protfit.registry`` (what the config does) stays free of torch until a name
is actually looked up.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown name; the message lists the choices and the closest match."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    item: T
    description: str
    options: dict[str, Any] = field(default_factory=dict)


def import_package(name: str) -> list[str]:
    """Import ``name`` and, when it is a package, every module in it (subpackages are not entered);
    the names of the modules imported."""
    module = importlib.import_module(name)
    names = [name]
    for found in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if not found.ispkg:
            names.append(f"{name}.{found.name}")
            importlib.import_module(names[-1])
    return names


# ---- user plug-in modules ----------------------------------------------------------------------------

# Installed packages add components through this entry-point group (`[project.entry-points."protfit.plugins"]
# my_name = "my_package.protfit_plugins"`); each is imported the first time any registry loads.
ENTRY_POINT_GROUP = "protfit.plugins"
_plugin_modules: list[str] = []  # imported by --plugins, a run's record or an entry point, in order
_entry_points_loaded = False


class PluginModuleError(ImportError):
    """A plug-in module cannot be imported; the message names it and where it was asked for."""


def load_plugin_modules(names: Iterable[str], source: str = "--plugins") -> None:
    """Import each user plug-in module (its decorators register its components) and remember it, so
    the run folder can record it and `protfit eval` / `predict` / `export` import it again."""
    for name in (name.strip() for name in names):
        if not name or name in _plugin_modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise PluginModuleError(
                f"plug-in module '{name}' ({source}) cannot be imported: {error}; install it or put its "
                "folder on PYTHONPATH"
            ) from None
        _plugin_modules.append(name)


def plugin_modules() -> list[str]:
    """The user plug-in modules imported in this process (what a run folder records)."""
    return list(_plugin_modules)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        load_plugin_modules([point.module], f"entry point '{point.name}' of {ENTRY_POINT_GROUP}")


class Registry(Generic[T]):
    """Named entries of one kind, filled by decorators in the packages (or modules) of ``builtin_packages``."""

    def __init__(
        self,
        kind: str,
        config_key: str,
        builtin_packages: Iterable[str] = (),
        builtin_names: Iterable[str] | None = None,
    ) -> None:
        self.kind = kind  # "pooler": used in messages
        self.config_key = config_key  # "model.pooler": the config key that names an entry
        self._packages = tuple(builtin_packages)
        self._modules: set[str] = set()  # the modules the scan imported
        # None: the built-in modules are light, and importing them is how the names are known.
        self._builtin_names = None if builtin_names is None else frozenset(builtin_names)
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        self._listeners: list[Callable[[Entry[T]], None]] = []

    @property
    def loaded(self) -> bool:
        return self._loaded

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # set first: a module being imported may look itself up
        for package in self._packages:
            self._modules.update(import_package(package))
        _load_entry_points()
        if self._builtin_names is not None:
            self._check_declared(self._builtin_names)

    def subscribe(self, listener: Callable[[Entry[T]], None]) -> None:
        """Call ``listener(entry)`` for each entry added after the built-ins loaded (a user plug-in
        module imported later): the run config adds a regularizer's section this way."""
        self._listeners.append(listener)

    def _check_declared(self, declared: frozenset[str]) -> None:
        builtin = {
            name
            for name, entry in self._entries.items()
            if getattr(entry.item, "__module__", None) in self._modules
        }
        undeclared = sorted(builtin - declared)
        missing = sorted(declared - set(self._entries))
        if undeclared or missing:
            raise RegistryError(
                f"the built-in {self.kind} names declared in protfit/registry.py do not match "
                f"{', '.join(self._packages)}: registered but not declared {undeclared}, declared but not "
                f"registered {missing}; update builtin_names"
            )

    def register(self, name: str, description: str = "", **options: Any) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", "one line", option=value)``."""

        def decorator(item: T) -> T:
            self.add(name, item, description or _first_line(item), **options)
            return item

        return decorator

    def add(self, name: str, item: T, description: str = "", **options: Any) -> None:
        if name in self._entries and self._entries[name].item is not item:
            raise RegistryError(f"{self.kind} '{name}' is registered twice")
        entry = Entry(name, item, description, dict(options))
        self._entries[name] = entry
        if self._loaded:
            for listener in self._listeners:
                listener(entry)

    def setdefault(self, name: str, make: Callable[[], T], description: str = "") -> T:
        """The entry ``name``, added from ``make()`` if absent (for entries built up by several
        registrations, like a metric with one implementation per problem type)."""
        if name not in self._entries:
            self.add(name, make(), description)
        return self._entries[name].item

    def entry(self, name: str) -> Entry[T]:
        self._load_builtins()
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).item

    def check(self, name: str) -> str:
        """``name`` if registered, else a :class:`RegistryError` naming the config key and the choices.

        Imports no built-in module when the registry declares its built-in names."""
        if name not in self.known_names():
            raise RegistryError(self.unknown_message(name))
        return name

    def known_names(self) -> list[str]:
        """Every name, from the declared built-in names when there are (no import), else ``names()``."""
        if self._builtin_names is None:
            return self.names()
        return sorted(self._builtin_names | set(self._entries))

    def unknown_message(self, name: str) -> str:
        choices = self.known_names()
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{self.config_key}: unknown {self.kind} '{name}'{hint}; choose from {', '.join(choices)}"

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def describe(self) -> str:
        """One line per entry: name and description (what `protfit models` and the docs print)."""
        entries = self.entries()
        width = max((len(entry.name) for entry in entries), default=0)
        return "\n".join(f"  {entry.name:<{width}}  {entry.description}" for entry in entries)


def _first_line(item: Any) -> str:
    doc = getattr(item, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


# ---- the registries --------------------------------------------------------------------------------

# The config checks these names; their packages import torch (and peft, transformers), hence the
# declared names. A package is scanned: a new module in protfit/models is found without a list.
METHODS: Registry = Registry(
    "training method",
    "model.method",
    ("protfit.models",),
    ("freeze", "full", "lora", "dora", "adalora", "ia3", "qlora", "ses_adapter"),
)
POOLERS: Registry = Registry(
    "pooler",
    "model.pooler",
    ("protfit.models",),
    ("mean", "attention1d", "light_attention", "cls", "flatten"),
)
HEADS: Registry = Registry("head", "model.head.type", ("protfit.models",), ("mlp",))
SCHEDULERS: Registry = Registry(
    "scheduler",
    "train.scheduler.name",
    ("protfit.training",),
    ("none", "constant", "linear", "cosine", "cosine_with_restarts", "polynomial", "step"),
)
# Per-sequence features concatenated to the pooled vector (model.extra_features); each entry is
# ``(cfg, frames, state, progress) -> (values per split, state)``, with options ``width(cfg)`` (columns
# per sequence, default 1) and ``standardize`` (default True).
FEATURES: Registry = Registry(
    "extra feature",
    "model.extra_features",
    ("protfit.models.zero_shot", "protfit.models.extra_features"),
    ("zero_shot", "onehot"),
)
# Light modules (torch is imported inside the functions that compute or build); the config reads
# their names by importing them, so these name modules, not a package that also holds heavy ones.
METRICS: Registry = Registry("metric", "evaluation.metrics", ("protfit.metrics",))
FAMILIES: Registry = Registry("model family", "model.family", ("protfit.models.families",))
ALIASES: Registry = Registry(
    "model alias", "model.name", ("protfit.models.aliases", "protfit.models.tiny", "protfit.models.antiberty")
)
# Training plug-ins built from the config: every regularizer found in protfit.regularization.sections
# (each registers its config section with a builder that returns None while the section is off) and
# the experiment trackers. Both are light modules: the config assembles its `regularization:` section
# from this registry.
PLUGINS: Registry = Registry(
    "training plug-in", "regularization", ("protfit.regularization.sections", "protfit.report.trackers")
)
# Experiment trackers (output.trackers); each is also a PLUGINS entry that adds it when named.
TRACKERS: Registry = Registry("experiment tracker", "output.trackers", ("protfit.report.trackers",))


def list_registries() -> dict[str, Registry]:
    return {
        "methods": METHODS,
        "poolers": POOLERS,
        "heads": HEADS,
        "features": FEATURES,
        "schedulers": SCHEDULERS,
        "metrics": METRICS,
        "families": FAMILIES,
        "aliases": ALIASES,
        "plugins": PLUGINS,
        "trackers": TRACKERS,
    }
