"""Regularizers and the overfitting diagnostics: one training plug-in per technique.

A technique is a config section + a :class:`protfit.plugins.Plugin`, registered together with
``register_regularizer`` (``technique.py``). The built-ins' sections live in ``sections/`` (light
modules the ``PLUGINS`` registry finds by a package scan); their plug-ins live in the modules here
and are imported when a run turns them on. ``config.py`` assembles the ``regularization:`` section
from whatever is registered. Nothing is imported here, so ``import protfit.config`` stays free of torch.
"""
