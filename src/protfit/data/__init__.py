"""Data: loading and validating splits, synthetic datasets, batching."""

from protfit.data.batching import (
    EncodedDataset,
    LengthBucketSampler,
    ProteinCollator,
    TokenizedSequence,
    build_dataloader,
    padding_fraction,
)
from protfit.data.errors import DataError
from protfit.data.loading import DatasetSplits, Split, load_dataset_splits, read_sequences, validate_sequences
from protfit.data.synthetic import write_synthetic_dataset

__all__ = [
    "DataError",
    "DatasetSplits",
    "EncodedDataset",
    "LengthBucketSampler",
    "ProteinCollator",
    "Split",
    "TokenizedSequence",
    "build_dataloader",
    "load_dataset_splits",
    "padding_fraction",
    "read_sequences",
    "validate_sequences",
    "write_synthetic_dataset",
]
