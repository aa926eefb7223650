"""Regularizers and the overfitting diagnostics: one training plug-in per technique.

Each module holds one technique (or a small family) as a :class:`protfit.plugins.Plugin` and its
``PLUGINS`` registry entry ``(cfg) -> Plugin | None``; the config section is
``regularization.<technique>`` (``protfit.regularization.config``). Nothing is imported here, so
``import protfit.config`` stays free of torch; the registry imports the modules on first use.
"""
