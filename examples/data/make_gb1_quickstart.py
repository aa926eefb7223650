"""Write examples/data/gb1_quickstart/: a small, seeded subset of FLIP GB1 `three_vs_rest`.

Run from anywhere: ``python examples/data/make_gb1_quickstart.py`` (reads ``../shared/data`` relative to the
repository root unless ``--source`` says otherwise). Same seed and source -> byte-identical files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = REPO_ROOT / ".." / "shared" / "data" / "flip_gb1_three_vs_rest"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "gb1_quickstart"
SIZES = {"train": 600, "validation": 150, "test": 500}
SEED = 0


def make_subset(source: Path, output: Path, seed: int = SEED) -> dict[str, int]:
    output.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, size in SIZES.items():
        # dtype=str keeps every label exactly as FLIP wrote it (no float re-formatting).
        frame = pd.read_csv(source / f"{split}.csv", dtype=str)[["aa_seq", "label"]]
        subset = frame.sample(n=min(size, len(frame)), random_state=seed).sort_index()
        subset.to_csv(output / f"{split}.csv", index=False, lineterminator="\n")
        written[split] = len(subset)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="FLIP three_vs_rest folder")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    if not (args.source / "train.csv").is_file():
        parser.error(f"{args.source} has no train.csv; point --source at the flip_gb1_three_vs_rest folder")
    for split, count in make_subset(args.source.resolve(), args.output, args.seed).items():
        print(f"{split}: {count} rows -> {args.output / f'{split}.csv'}")


if __name__ == "__main__":
    main()
