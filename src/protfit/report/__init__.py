"""Everything a run reports: run folder, intervals, sanity baselines, plots."""
