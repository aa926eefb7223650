"""Hyper-parameter sweeps (Optuna) and the learning-rate range test.

- ``config.py``  SweepConfig: the sweep file (base run config, search space, sampler, pruner, objective)
- ``space.py``   search-space parameters -> Optuna suggestions and run-config overrides
- ``presets.py`` ready-made search spaces with documented ranges
- ``study.py``   the sweep: preparing it, the worker loop, worker processes, resume, run_sweep
- ``storage.py`` the Optuna storage, sampler, pruner, the study's trial slots, claims and heartbeats
- ``report.py``  the live trial line, trials.csv, best.json, the final table and Optuna's plots
- ``retention.py`` which trials keep their weights (the best ones); the others' checkpoints are deleted
- ``lr_find.py`` ``protfit lr-find`` (the range test itself is ``protfit.training.lr_range_test``)
"""
