"""Length-bucketed batches: every sample once per epoch, nothing dropped, reshuffled, little padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from data_helpers import config

from protfit.data import (
    EncodedDataset,
    LengthBucketSampler,
    ProteinCollator,
    TokenizedSequence,
    build_dataloader,
    padding_fraction,
)

RNG = np.random.default_rng(0)
LENGTHS = RNG.integers(5, 400, size=203).tolist()


def _flat(batches: list[list[int]]) -> list[int]:
    return sorted(index for batch in batches for index in batch)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("mode", [{"batch_size": 8}, {"max_tokens": 1000}])
def test_every_sample_exactly_once_per_epoch(mode: dict, shuffle: bool) -> None:
    sampler = LengthBucketSampler(LENGTHS, shuffle=shuffle, seed=1, chunk_batches=4, **mode)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        expected = len(sampler)
        batches = []
        for batch in sampler:
            assert len(sampler) == expected  # also while the epoch is running
            batches.append(batch)
        assert _flat(batches) == list(range(len(LENGTHS)))
        assert expected == len(batches)


def test_fixed_batch_size() -> None:
    batches = list(LengthBucketSampler(LENGTHS, batch_size=8, chunk_batches=4))
    assert sorted(len(batch) for batch in batches)[1:] == [8] * (len(batches) - 1)  # one short batch at most


def test_token_budget_respected_and_over_long_sample_kept() -> None:
    lengths = [*LENGTHS, 5000]  # longer than the whole budget
    sampler = LengthBucketSampler(lengths, max_tokens=1000, chunk_batches=4)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert [len(lengths) - 1] in batches  # its own batch, never dropped
        for batch in batches:
            if len(batch) > 1:
                assert len(batch) * max(lengths[i] for i in batch) <= 1000
    evaluation = list(LengthBucketSampler(lengths, max_tokens=1000, shuffle=False))
    assert evaluation[0] == [len(lengths) - 1]  # longest first in evaluation order


def test_reshuffled_across_epochs_and_deterministic() -> None:
    sampler = LengthBucketSampler(LENGTHS, batch_size=8, seed=3, chunk_batches=4)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second
    assert {tuple(b) for b in first} != {tuple(b) for b in second}  # different batches, not just order
    again = LengthBucketSampler(LENGTHS, batch_size=8, seed=3, chunk_batches=4)
    again.set_epoch(1)
    assert list(again) == second


def test_iterating_without_set_epoch_still_reshuffles() -> None:
    sampler = LengthBucketSampler(LENGTHS, max_tokens=1000, seed=0, chunk_batches=4)
    first = list(sampler)
    upcoming = len(sampler)
    second = list(sampler)
    assert second != first and upcoming == len(second)
    assert first == list(LengthBucketSampler(LENGTHS, max_tokens=1000, seed=0, chunk_batches=4))


def test_evaluation_order_is_fixed_and_sorted() -> None:
    batches = list(LengthBucketSampler(LENGTHS, batch_size=8, shuffle=False))
    order = [LENGTHS[i] for batch in batches for i in batch]
    assert order == sorted(LENGTHS, reverse=True)
    sampler = LengthBucketSampler(LENGTHS, batch_size=8, shuffle=False)
    sampler.set_epoch(5)
    assert list(sampler) == batches


def test_padding_fraction_helper() -> None:
    assert padding_fraction([[4, 4], [2]]) == 0.0
    assert padding_fraction([[1, 3]]) == pytest.approx(1 / 3)
    assert padding_fraction([]) == 0.0


def test_padding_small_on_deeploc_lengths() -> None:
    path = (
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "deeploc_localization" / "train.csv"
    )
    if not path.is_file():
        pytest.skip("shared deeploc data not present")
    lengths = (pd.read_csv(path, usecols=["aa_seq"])["aa_seq"].str.len().clip(upper=1022) + 2).tolist()
    sampler = LengthBucketSampler(lengths, batch_size=16, seed=0)
    naive = padding_fraction([lengths[i : i + 16] for i in range(0, len(lengths), 16)])
    for epoch in range(3):
        sampler.set_epoch(epoch)
        fraction = padding_fraction([[lengths[i] for i in batch] for batch in sampler])
        assert fraction < 0.05, (epoch, fraction, naive)
    assert naive > 0.3  # without bucketing, a third or more of the compute is padding


def _dataset(labels: list | None, problem_type: str = "single_label_classification", num_labels: int = 3):
    tokenized = [TokenizedSequence([0, *range(5, 5 + n), 2], [0, *[1] * n, 0]) for n in (3, 1, 5, 2)]
    frame = pd.DataFrame({"aa_seq": ["A" * 3, "A", "A" * 5, "A" * 2]})
    if labels is not None:
        frame["label"] = pd.Series(labels, dtype=object)
    return EncodedDataset(frame, tokenized, problem_type, num_labels)


def test_collator_shapes_and_padding() -> None:
    dataset = _dataset([0, 2, 1, 1])
    batch = ProteinCollator(pad_token_id=1, problem_type="single_label_classification", num_labels=3)(
        [dataset[0], dataset[2]]
    )
    assert batch["input_ids"].shape == (2, 7) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][0].tolist() == [0, 5, 6, 7, 2, 1, 1]
    assert (
        batch["attention_mask"].dtype == torch.long
        and batch["attention_mask"][0].tolist() == [1] * 5 + [0] * 2
    )
    assert batch["residue_mask"].dtype == torch.bool
    assert batch["residue_mask"][0].tolist() == [False, True, True, True, False, False, False]
    assert batch["labels"].tolist() == [0, 1] and batch["labels"].dtype == torch.long
    assert batch["index"].tolist() == [0, 2]


def test_collator_multi_label_regression_and_unlabelled() -> None:
    multi = _dataset([[0, 2], [1], [0], [1, 2]], "multi_label_classification", 3)
    batch = ProteinCollator(1, "multi_label_classification", 3)([multi[0], multi[1]])
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    regression = _dataset([0.5, -1.0, 2.0, 3.0], "regression", 1)
    batch = ProteinCollator(1, "regression", 1)([regression[0], regression[1]])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [0.5, -1.0]
    unlabelled = _dataset(None)
    assert "labels" not in ProteinCollator(1, "single_label_classification", 3)([unlabelled[0]])


def test_build_dataloader_with_zero_workers_and_token_budget(tmp_path: Path) -> None:
    dataset = _dataset([0, 2, 1, 1])
    collator = ProteinCollator(1, "single_label_classification", 3)
    cfg = config(tmp_path, batch_size=3, num_workers=0)
    loader = build_dataloader(dataset, cfg, shuffle=True, seed=0, collator=collator)
    seen = sorted(i for batch in loader for i in batch["index"].tolist())
    assert seen == [0, 1, 2, 3] and len(loader) == 2
    budget = build_dataloader(
        dataset, cfg.model_copy(update={"max_tokens_per_batch": 8}), shuffle=False, seed=0, collator=collator
    )
    shapes = [tuple(batch["input_ids"].shape) for batch in budget]
    assert all(rows * width <= 8 or rows == 1 for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) == 4


def test_build_dataloader_with_worker_processes(tmp_path: Path) -> None:
    dataset = _dataset([0, 2, 1, 1])
    collator = ProteinCollator(1, "single_label_classification", 3)
    loader = build_dataloader(dataset, config(tmp_path, batch_size=2, num_workers=1), True, 0, collator)
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        assert sorted(i for batch in loader for i in batch["index"].tolist()) == [0, 1, 2, 3]
