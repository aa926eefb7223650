"""Hyper-parameter sweeps (Optuna) and the learning-rate range test.

- ``config.py``  SweepConfig: the sweep file (base run config, search space, sampler, pruner, objective)
- ``space.py``   search-space parameters -> Optuna suggestions and run-config overrides
- ``presets.py`` ready-made search spaces with documented ranges
- ``study.py``   the study: storage, trial slots, workers, pruning callback, resume, final table
- ``lr_find.py`` the learning-rate range test
"""
