"""From validated splits to padded tensor batches: dataset, length-bucketing sampler, collator, loader.

Protein lengths vary by two orders of magnitude, so batches are formed from sequences of similar length
(padding stays at a few percent) and padded per batch, never to a global maximum.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from protfit.config import DataConfig
from protfit.data.errors import DataError
from protfit.data.validation import FOLDSEEK_ALPHABET, check_structure_strings

# Structure token ids for the structure-aware adapter; 0 is padding (special tokens, padded positions).
# DSSP's three coil spellings mean one state, so they share one id.
STRUCTURE_VOCABULARIES: dict[str, dict[str, int]] = {
    "foldseek": {letter: index + 1 for index, letter in enumerate(FOLDSEEK_ALPHABET)},
    "ss8": {**{letter: index + 1 for index, letter in enumerate("HBEGITS")}, "-": 8, "C": 8, "L": 8},
}
STRUCTURE_COLUMNS = {"foldseek": "foldseek_seq", "ss8": "ss8_seq"}
_STRUCTURE_NAMES = {"foldseek": "Foldseek 3Di", "ss8": "DSSP 8-state"}


def structure_batch_key(kind: str) -> str:
    """The batch key of a structure input: ``foldseek_ids`` / ``ss8_ids``."""
    return f"{kind}_ids"


def aligned_structure_ids(structure: str, residue_mask: Sequence[int], kind: str) -> list[int]:
    """Structure token ids on the model's token positions: residue i's letter where residue i's token
    sits, 0 on special tokens. ``structure`` must have one letter per residue (validated before)."""
    vocabulary = STRUCTURE_VOCABULARIES[kind]
    letters = iter(structure)
    return [vocabulary[next(letters)] if is_residue else 0 for is_residue in residue_mask]


class TokenizedSequence(NamedTuple):
    """One tokenized protein: ``residue_mask`` is 1 on residue tokens, 0 on special tokens (CLS/EOS)."""

    input_ids: list[int]
    residue_mask: list[int]


class EncodedDataset(Dataset):
    """A split frame paired with its tokenized sequences; item ``i`` is row ``i`` of the frame.

    Items are dicts ``input_ids``, ``residue_mask``, ``label`` (None when the frame has no ``label``
    column) and ``index`` (the row position in the frame, carried through to predictions), and
    ``extra_features`` (K,) when given (model.extra_features, one row per frame row).

    ``structure_inputs`` (``foldseek``, ``ss8``; what ``ModelConfig.structure_inputs`` selects) adds
    ``foldseek_ids`` / ``ss8_ids``: the frame's structure strings as token ids aligned to
    ``input_ids``. A missing column or a string that does not match its sequence is a
    :class:`DataError` naming ``source``.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        tokenized: Sequence[TokenizedSequence],
        problem_type: str,
        num_labels: int,
        *,
        structure_inputs: Sequence[str] = (),
        source: str = "the data",
        extra_features: np.ndarray | None = None,
    ) -> None:
        if len(frame) != len(tokenized):
            raise ValueError(f"{len(frame)} rows but {len(tokenized)} tokenized sequences")
        self.tokenized = list(tokenized)
        self.problem_type = problem_type
        self.num_labels = num_labels
        self.labels: list[Any] | None = frame["label"].tolist() if "label" in frame.columns else None
        self.lengths = [len(item.input_ids) for item in self.tokenized]
        self.structure: dict[str, list[list[int]]] = {
            structure_batch_key(kind): self._structure_ids(frame, kind, source) for kind in structure_inputs
        }
        if extra_features is not None and len(extra_features) != len(frame):
            raise ValueError(f"{len(frame)} rows but {len(extra_features)} rows of extra features")
        self.extra_features = extra_features

    def _structure_ids(self, frame: pd.DataFrame, kind: str, source: str) -> list[list[int]]:
        column = STRUCTURE_COLUMNS[kind]
        if column not in frame.columns:
            raise DataError(
                f"model.ses.structure_inputs includes '{kind}', but there is no {_STRUCTURE_NAMES[kind]} "
                f"column '{column}' here; add it (in data files its name is data.{kind}_column; to the "
                f"Python API pass a DataFrame with aa_seq and {column} columns), or train without it by "
                f"removing '{kind}' from model.ses.structure_inputs",
                file=source,
                field=column,
            )
        residues = [sum(item.residue_mask) for item in self.tokenized]
        # Frames from the loader are validated already; a DataFrame handed to the Python API is not.
        strings = check_structure_strings(
            frame[column].tolist(), residues, kind=kind, file=source, field=column
        )
        return [
            aligned_structure_ids(text, item.residue_mask, kind)
            for text, item in zip(strings, self.tokenized, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.tokenized)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.tokenized[index]
        return {
            "input_ids": item.input_ids,
            "residue_mask": item.residue_mask,
            "label": None if self.labels is None else self.labels[index],
            "index": index,
            **{key: ids[index] for key, ids in self.structure.items()},
            **({} if self.extra_features is None else {"extra_features": self.extra_features[index]}),
        }


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar-length samples, by count (``batch_size``) or by padded-token budget (``max_tokens``).

    With ``shuffle``: indices are shuffled, cut into chunks of ``chunk_batches`` batches, sorted by length
    inside each chunk, cut into batches, and the batch order is shuffled; the chunking keeps batches
    different from epoch to epoch while padding stays small. Without ``shuffle``: the whole set sorted by
    length, longest first (a memory problem shows up on the first batch, not the last). In token mode a
    batch's padded size ``len(batch) * longest`` stays within ``max_tokens``; a sample longer than the
    budget gets a batch of its own. Every index appears exactly once per epoch.

    ``set_epoch(e)`` selects the epoch's order (same seed + epoch = same batches, for resuming); when it is
    not called, each new iteration moves on to the next epoch, so batches never silently repeat.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int | None = None,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        chunk_batches: int = 100,
    ) -> None:
        if (batch_size is None) == (max_tokens is None):
            raise ValueError("give exactly one of batch_size or max_tokens")
        if (batch_size is not None and batch_size < 1) or (max_tokens is not None and max_tokens < 1):
            raise ValueError("batch_size and max_tokens must be positive")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.chunk_batches = chunk_batches
        self.epoch = 0
        self._advance_on_iter = False
        self._iterating = False
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._advance_on_iter = False
        self._iterating = False

    def _chunk_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size * self.chunk_batches  # a multiple: only the last batch can be short
        mean_length = max(1, int(self.lengths.mean())) if len(self.lengths) else 1
        return max(1, self.max_tokens // mean_length) * self.chunk_batches

    def _cut(self, ordered: np.ndarray) -> list[list[int]]:
        """Cut length-ordered indices into batches."""
        if self.batch_size is not None:
            return [
                ordered[i : i + self.batch_size].tolist() for i in range(0, len(ordered), self.batch_size)
            ]
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for index in ordered.tolist():
            length = int(self.lengths[index])
            grown = max(longest, length)
            if current and grown * (len(current) + 1) > self.max_tokens:
                batches.append(current)
                current, grown = [], length
            current.append(index)
            longest = grown
        if current:
            batches.append(current)
        return batches

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batches of one epoch (deterministic in seed and epoch)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        if not self.shuffle:
            # stable sort on -length: ties stay in index order, so evaluation batches never change
            batches = self._cut(np.argsort(-self.lengths, kind="stable"))
        else:
            rng = np.random.default_rng([self.seed, epoch])
            permuted = rng.permutation(len(self.lengths))
            size = self._chunk_size()
            batches = []
            for start in range(0, len(permuted), size):
                chunk = permuted[start : start + size]
                batches.extend(self._cut(chunk[np.argsort(self.lengths[chunk], kind="stable")]))
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (epoch, batches)
        return batches

    def _upcoming_epoch(self) -> int:
        return self.epoch + 1 if self._advance_on_iter else self.epoch

    def __iter__(self) -> Iterator[list[int]]:
        self.epoch = self._upcoming_epoch()
        self._advance_on_iter = True
        self._iterating = True
        yield from self.epoch_batches(self.epoch)
        self._iterating = False

    def __len__(self) -> int:
        """Batches in the epoch being iterated, or else in the epoch the next iteration will use."""
        return len(self.epoch_batches(self.epoch if self._iterating else self._upcoming_epoch()))


class ProteinCollator:
    """Pads a list of dataset items to the longest in the batch.

    Output: ``input_ids`` (B, L) long, ``attention_mask`` (B, L) long, ``residue_mask`` (B, L) bool,
    ``labels`` ((B,) long | (B, K) float multi-hot | (B,) float; absent when items carry no label),
    ``index`` (B,) long, and ``foldseek_ids`` / ``ss8_ids`` (B, L) long (0 = padding) when items carry them.
    """

    def __init__(self, pad_token_id: int, problem_type: str, num_labels: int) -> None:
        self.pad_token_id = pad_token_id
        self.problem_type = problem_type
        self.num_labels = num_labels

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in items)
        input_ids = torch.full((len(items), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
        residue_mask = torch.zeros((len(items), longest), dtype=torch.bool)
        for row, item in enumerate(items):
            length = len(item["input_ids"])
            input_ids[row, :length] = torch.as_tensor(item["input_ids"], dtype=torch.long)
            attention_mask[row, :length] = 1
            residue_mask[row, :length] = torch.as_tensor(item["residue_mask"], dtype=torch.bool)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "residue_mask": residue_mask,
            "index": torch.as_tensor([item["index"] for item in items], dtype=torch.long),
        }
        for key in (structure_batch_key(kind) for kind in STRUCTURE_VOCABULARIES):
            if key in items[0]:
                ids = torch.zeros((len(items), longest), dtype=torch.long)
                for row, item in enumerate(items):
                    ids[row, : len(item[key])] = torch.as_tensor(item[key], dtype=torch.long)
                batch[key] = ids
        add_extra_features(batch, items)
        labels = [item.get("label") for item in items]
        if any(label is not None for label in labels):
            if any(label is None for label in labels):
                raise ValueError("a batch mixes labelled and unlabelled samples")
            batch["labels"] = self._labels(labels)
        return batch

    def _labels(self, labels: list[Any]) -> torch.Tensor:
        if self.problem_type == "single_label_classification":
            return torch.as_tensor(labels, dtype=torch.long)
        if self.problem_type == "regression":
            return torch.as_tensor(labels, dtype=torch.float32)
        multi_hot = torch.zeros((len(labels), self.num_labels), dtype=torch.float32)
        for row, indices in enumerate(labels):
            multi_hot[row, list(indices)] = 1.0
        return multi_hot


def add_extra_features(batch: dict[str, torch.Tensor], items: list[dict[str, Any]]) -> None:
    """``extra_features`` (B, K) float32 from the items that carry them (model.extra_features)."""
    if "extra_features" in items[0]:
        values = np.stack([np.asarray(item["extra_features"], dtype=np.float32) for item in items])
        batch["extra_features"] = torch.from_numpy(values)


def build_dataloader(
    dataset: EncodedDataset, cfg: DataConfig, shuffle: bool, seed: int, collator: ProteinCollator
) -> DataLoader:
    """A DataLoader over length-bucketed batches: token budget when ``max_tokens_per_batch`` is set."""
    sampler = LengthBucketSampler(
        dataset.lengths,
        batch_size=None if cfg.max_tokens_per_batch is not None else cfg.batch_size,
        max_tokens=cfg.max_tokens_per_batch,
        shuffle=shuffle,
        seed=seed,
    )
    # prefetch_factor / persistent_workers are only valid with worker processes; passing them with
    # num_workers=0 is an error in torch, so they are added only when there are workers.
    workers: dict[str, Any] = {"persistent_workers": True} if cfg.num_workers > 0 else {}
    return DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collator, num_workers=cfg.num_workers, **workers
    )


def padding_fraction(batches_of_lengths: Iterable[Sequence[int]]) -> float:
    """Share of padded positions: 1 - real tokens / (batch size x longest), summed over batches."""
    real = padded = 0
    for lengths in batches_of_lengths:
        if len(lengths):
            real += sum(lengths)
            padded += len(lengths) * max(lengths)
    return 0.0 if padded == 0 else 1.0 - real / padded
