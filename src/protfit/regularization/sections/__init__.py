"""The built-in regularizers' config sections and registrations, one module per plug-in module.

The ``PLUGINS`` registry imports every module here (a package scan: a new module is found without a
list). They import no torch, so checking a config stays fast; each names its plug-in as
``"protfit.regularization.<module>:<Class>"``, imported when a run turns it on.
"""
