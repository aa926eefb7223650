"""Models: backbones per family, poolers, heads, the ProteinModel and the training methods.

Nothing is imported here: ``protfit.models.sources`` and ``protfit.models.families`` are read while a
config is checked, and importing this package must not pull in torch for that (issue #27). Import
from the modules (``protfit.models.protein_model.build_model``).
"""
