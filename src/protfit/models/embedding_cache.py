"""Embedding cache: a frozen backbone's outputs, computed once and stored on disk.

With ``method: freeze`` the language model never changes, so its output for a sequence never
changes either; yet the backbone forward pass is nearly all of the compute. The cache runs it once
per sequence set and stores the result under ``cache_root()/embeddings/<entry>/`` as float16 numpy
arrays that are memory-mapped back; every later epoch, run and sweep trial on the same model, data
and settings trains the pooler and head on the stored arrays without running the backbone at all.

What is stored depends on the pooler:

- ``pooled`` (N, D): when the pooler is a fixed function (no parameters, no submodules) whose output
  is no wider than one residue state: ``mean``, ``cls``. One vector per sequence, the smallest cache.
- ``residues`` (total tokens, H) + per-sequence lengths and residue masks: when the pooler learns
  (``attention1d``, ``light_attention``) or its output is wider than the sequence's own states
  (``flatten``: max_seq_len x H per sequence). All token positions are kept, special tokens included,
  so batches equal the live path's batches position for position.

An entry is keyed by everything its numbers depend on: the model name and resolved source, a
fingerprint of the backbone weights (a changed checkpoint in the same folder invalidates), the layer
(the last hidden state), ``data.max_seq_len``, the compute precision, the stored kind (and pooler for
``pooled``) and a hash of the token ids of the sequences in order (the exact backbone input: the
sequences, their truncation and the tokenizer's rules). Entries are written into a temporary folder
and renamed into place, so an interrupted build never looks complete. Values beyond the float16 range
(65504) switch that entry to float32 instead of overflowing to inf.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from protfit.config import DataConfig, RunConfig
from protfit.data.batching import (
    LengthBucketSampler,
    ProteinCollator,
    TokenizedSequence,
    add_extra_features,
    build_dataloader,
)
from protfit.models.aliases import cache_root, resolve_model_source, staged_folder
from protfit.models.protein_model import ProteinModel

FeatureKind = Literal["pooled", "residues"]
CACHE_FORMAT = 1
LAYER = "last_hidden_state"


def uses_embedding_cache(model: ProteinModel, cfg: RunConfig) -> bool:
    """True when the backbone is frozen with nothing between it and the pooler, and the cache is on.

    A structure adapter or a method that trains the backbone (full, LoRA, ...) changes the features
    every step, so there is nothing to cache; the one-hot encoder is cheaper to compute than to read.
    """
    return (
        cfg.model.embedding_cache
        and not model.backbone_trainable
        and model.adapter is None
        and model.backbone.encoder is not None
    )


def feature_kind(model: ProteinModel) -> FeatureKind:
    """``pooled`` for fixed poolers no wider than a residue state (mean, cls), else ``residues``."""
    pooler = model.pooler
    fixed = next(pooler.parameters(), None) is None and next(pooler.children(), None) is None
    return "pooled" if fixed and pooler.output_dim <= model.backbone.hidden_size else "residues"


def weights_fingerprint(module: nn.Module) -> str:
    """Hash of every parameter and buffer (names, dtypes, shapes, bytes).

    Memoised on the module while no tensor was replaced or modified in place (torch bumps a tensor's
    version counter on every in-place write, loading a state dict included), so repeated lookups
    cost nothing; the first call reads each byte once (~1 s per GB).
    """
    state = module.state_dict()
    versions = tuple((name, tensor.data_ptr(), tensor._version) for name, tensor in state.items())
    memo = getattr(module, "_protfit_weights_fingerprint", None)
    if memo is not None and memo[0] == versions:
        return memo[1]
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    fingerprint = digest.hexdigest()
    module._protfit_weights_fingerprint = (versions, fingerprint)
    return fingerprint


def sequences_hash(tokenized: Sequence[TokenizedSequence]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for item in tokenized:
        ids = np.asarray(item.input_ids, dtype=np.int64)
        digest.update(np.int64(len(ids)).tobytes())
        digest.update(ids.tobytes())
        digest.update(np.asarray(item.residue_mask, dtype=np.int8).tobytes())
    return digest.hexdigest()


@dataclass
class CachedFeatures:
    """One cache entry, memory-mapped. ``features`` is (N, D) for ``pooled`` and (total tokens, H)
    for ``residues``, where sequence i occupies rows ``offsets[i]:offsets[i + 1]``."""

    folder: Path
    kind: FeatureKind
    features: np.ndarray
    lengths: np.ndarray  # tokens per sequence (special tokens included), as the live batches have them
    residue_mask: np.ndarray | None
    hit: bool
    seconds: float
    size_bytes: int

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)])

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def open(cls, folder: Path, hit: bool, seconds: float) -> CachedFeatures:
        meta = json.loads((folder / "meta.json").read_text())
        features = np.load(folder / "features.npy", mmap_mode="r")
        lengths = np.load(folder / "lengths.npy")
        residue_mask = (
            np.load(folder / "residue_mask.npy", mmap_mode="r") if meta["kind"] == "residues" else None
        )
        expected_rows = len(lengths) if meta["kind"] == "pooled" else int(lengths.sum())
        if features.shape[0] != expected_rows or (
            residue_mask is not None and len(residue_mask) != expected_rows
        ):
            raise ValueError(f"cache entry {folder} is inconsistent")
        size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
        return cls(folder, meta["kind"], features, lengths, residue_mask, hit, seconds, size)


class EmbeddingCache:
    """Cache entries of one model's frozen backbone under the settings of one run."""

    def __init__(self, model: ProteinModel, cfg: RunConfig, root: Path | None = None) -> None:
        self.model = model
        self.kind = feature_kind(model)
        self.root = (root or cache_root()) / "embeddings"
        source = resolve_model_source(cfg.model.name)
        local = Path(source).expanduser()
        backbone = model.backbone
        self.identity: dict[str, Any] = {
            "format": CACHE_FORMAT,
            "model": cfg.model.name,
            "source": str(local.resolve()) if local.is_dir() else source,
            "family": backbone.family,
            "style": backbone.style,
            "weights": weights_fingerprint(backbone),
            "layer": LAYER,
            "max_seq_len": cfg.data.max_seq_len,
            "precision": cfg.train.mixed_precision,
            "kind": self.kind,
            "pooler": cfg.model.pooler if self.kind == "pooled" else None,
        }
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(cfg.model.name.rstrip("/")).name)[:40]
        self._prefix = f"{slug}-{self.kind}"

    def key(self, tokenized: Sequence[TokenizedSequence]) -> dict[str, Any]:
        return {**self.identity, "sequences": sequences_hash(tokenized), "count": len(tokenized)}

    def folder(self, tokenized: Sequence[TokenizedSequence]) -> Path:
        payload = json.dumps(self.key(tokenized), sort_keys=True).encode()
        return self.root / f"{self._prefix}-{hashlib.blake2b(payload, digest_size=12).hexdigest()}"

    def lookup(self, tokenized: Sequence[TokenizedSequence]) -> CachedFeatures | None:
        """The stored entry for exactly these sequences (in this order), or None; never computes."""
        folder = self.folder(tokenized)
        if not (folder / "meta.json").is_file():
            return None
        try:
            return CachedFeatures.open(folder, hit=True, seconds=0.0)
        except (OSError, ValueError, KeyError):
            # A damaged entry (disk full, files deleted by hand) is rebuilt, not trusted.
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def get_or_build(
        self,
        tokenized: Sequence[TokenizedSequence],
        data_cfg: DataConfig,
        device: torch.device | str = "cpu",
        autocast: Callable[[], AbstractContextManager] = nullcontext,
        description: str = "sequences",
        progress: bool = False,
    ) -> CachedFeatures:
        """Read the entry for these sequences, or run the backbone once over them and store it."""
        found = self.lookup(tokenized)
        if found is not None:
            return found
        started = time.perf_counter()
        folder = self.folder(tokenized)
        with staged_folder(folder, marker="meta.json") as staging:
            for dtype in (np.float16, np.float32):
                if self._write(staging, tokenized, data_cfg, device, autocast, dtype, description, progress):
                    break
            meta = {"key": self.key(tokenized), "kind": self.kind, "dtype": np.dtype(dtype).name}
            (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        return CachedFeatures.open(folder, hit=False, seconds=time.perf_counter() - started)

    @torch.no_grad()
    def _write(
        self,
        folder: Path,
        tokenized: Sequence[TokenizedSequence],
        data_cfg: DataConfig,
        device: torch.device | str,
        autocast: Callable[[], AbstractContextManager],
        dtype: type[np.floating],
        description: str,
        progress: bool,
    ) -> bool:
        """Run the backbone over ``tokenized`` in length-sorted batches; False if float16 overflowed."""
        model, backbone = self.model, self.model.backbone
        lengths = np.asarray([len(item.input_ids) for item in tokenized], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        rows = len(tokenized) if self.kind == "pooled" else int(offsets[-1])
        width = model.pooler.output_dim if self.kind == "pooled" else backbone.hidden_size
        features = np.lib.format.open_memmap(folder / "features.npy", "w+", dtype, (rows, width))
        np.save(folder / "lengths.npy", lengths)
        if self.kind == "residues":
            mask = np.lib.format.open_memmap(folder / "residue_mask.npy", "w+", np.bool_, (rows,))
            for index, item in enumerate(tokenized):
                mask[offsets[index] : offsets[index + 1]] = np.asarray(item.residue_mask, dtype=bool)
            mask.flush()
        # The evaluation batching of the run (length-sorted, same batch size or token budget): memory
        # use is what the user configured for training, which needs more than this no-grad pass.
        sampler = LengthBucketSampler(
            lengths,
            batch_size=None if data_cfg.max_tokens_per_batch is not None else data_cfg.batch_size,
            max_tokens=data_cfg.max_tokens_per_batch,
            shuffle=False,
        )
        collator = ProteinCollator(backbone.pad_token_id, "regression", 1)
        was_training = backbone.training
        backbone.to(device).eval()
        try:
            for batch_indices in tqdm(
                sampler.epoch_batches(0),
                desc=f"embedding cache: {description}",
                disable=not progress,
                leave=False,
                dynamic_ncols=True,
            ):
                items = [
                    {
                        "input_ids": tokenized[i].input_ids,
                        "residue_mask": tokenized[i].residue_mask,
                        "label": None,
                        "index": i,
                    }
                    for i in batch_indices
                ]
                batch = collator(items)
                with autocast():
                    hidden = backbone(batch["input_ids"].to(device), batch["attention_mask"].to(device))
                    if self.kind == "pooled":
                        hidden = model.pooler(hidden, batch["residue_mask"].to(device))
                values = hidden.float().to(torch.float16 if dtype == np.float16 else torch.float32)
                if not torch.isfinite(values).all() and torch.isfinite(hidden).all():
                    return False  # beyond the float16 range: the caller retries in float32
                values = values.cpu().numpy()
                for row, index in enumerate(batch_indices):
                    if self.kind == "pooled":
                        features[index] = values[row]
                    else:
                        features[offsets[index] : offsets[index + 1]] = values[row, : lengths[index]]
        finally:
            backbone.train(was_training)
        features.flush()
        return True


class CachedFeatureDataset(Dataset):
    """Items of a cache entry plus the split's labels; ``lengths`` drive the same length bucketing as
    the token batches, so a cached run sees the same batches, step for step, as an uncached one."""

    def __init__(
        self, features: CachedFeatures, labels: list[Any] | None, extra_features: np.ndarray | None = None
    ) -> None:
        if labels is not None and len(labels) != len(features):
            raise ValueError(f"{len(features)} cached sequences but {len(labels)} labels")
        self.extra_features = extra_features
        self.folder = features.folder
        self.kind = features.kind
        self.lengths = features.lengths.tolist()
        self.offsets = features.offsets
        self.labels = labels
        self._features: np.ndarray | None = features.features
        self._residue_mask: np.ndarray | None = features.residue_mask

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into data-loader workers: reopen the memory maps there instead of copying arrays.
        return {**self.__dict__, "_features": None, "_residue_mask": None}

    def _arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._features is None:
            self._features = np.load(self.folder / "features.npy", mmap_mode="r")
            if self.kind == "residues":
                self._residue_mask = np.load(self.folder / "residue_mask.npy", mmap_mode="r")
        return self._features, self._residue_mask

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        features, residue_mask = self._arrays()
        item: dict[str, Any] = {"label": None if self.labels is None else self.labels[index], "index": index}
        if self.extra_features is not None:
            item["extra_features"] = self.extra_features[index]
        if self.kind == "pooled":
            item["pooled"] = features[index]
        else:
            start, end = self.offsets[index], self.offsets[index + 1]
            item["hidden_states"] = features[start:end]
            item["residue_mask"] = residue_mask[start:end]
        return item


class CachedFeatureCollator:
    """Cached items -> model inputs: ``pooled`` (B, D), or ``hidden_states`` (B, L, H) zero-padded
    with ``residue_mask`` (B, L) bool; float32 (the head's dtype; autocast still applies). The masks
    of ``pooled`` batches are (B, 1) ones: they only feed the loop's padding statistics, and the head
    sees no padding there. Labels are encoded by :class:`ProteinCollator`."""

    def __init__(self, problem_type: str, num_labels: int) -> None:
        self._labels = ProteinCollator(0, problem_type, num_labels)._labels

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        size = len(items)
        if "pooled" in items[0]:
            batch = {
                "pooled": torch.from_numpy(np.stack([item["pooled"] for item in items]).astype(np.float32)),
                "attention_mask": torch.ones((size, 1), dtype=torch.long),
                "residue_mask": torch.ones((size, 1), dtype=torch.bool),
            }
        else:
            longest = max(len(item["hidden_states"]) for item in items)
            width = items[0]["hidden_states"].shape[1]
            hidden = torch.zeros((size, longest, width), dtype=torch.float32)
            residue_mask = torch.zeros((size, longest), dtype=torch.bool)
            attention_mask = torch.zeros((size, longest), dtype=torch.long)
            for row, item in enumerate(items):
                length = len(item["hidden_states"])
                hidden[row, :length] = torch.from_numpy(np.asarray(item["hidden_states"], dtype=np.float32))
                residue_mask[row, :length] = torch.from_numpy(np.array(item["residue_mask"], dtype=bool))
                attention_mask[row, :length] = 1
            batch = {"hidden_states": hidden, "residue_mask": residue_mask, "attention_mask": attention_mask}
        batch["index"] = torch.as_tensor([item["index"] for item in items], dtype=torch.long)
        add_extra_features(batch, items)
        labels = [item["label"] for item in items]
        if any(label is not None for label in labels):
            batch["labels"] = self._labels(labels)
        return batch


def cached_loaders(
    model: ProteinModel, cfg: RunConfig, loaders: dict[str, DataLoader], accelerator: Any
) -> tuple[dict[str, DataLoader], dict[str, Any]]:
    """Replace token loaders by loaders over cached features (computed now where missing).

    Each new loader keeps its token loader's sampler settings (shuffle, seed, batch size or token
    budget) over the same lengths, so the batches are the same. Returns the loaders and the report
    stored as ``summary["embedding_cache"]``; the report is printed once.
    """
    cache = EmbeddingCache(model, cfg)
    entries: dict[str, CachedFeatures] = {}
    replaced: dict[str, DataLoader] = {}
    for name, loader in loaders.items():
        dataset = loader.dataset
        entries[name] = cache.get_or_build(
            dataset.tokenized,
            cfg.data,
            accelerator.device,
            accelerator.autocast,
            description=f"{name} split",
            progress=cfg.train.progress,
        )
        sampler = loader.batch_sampler
        features_dataset = CachedFeatureDataset(entries[name], dataset.labels, dataset.extra_features)
        collator = CachedFeatureCollator(cfg.data.problem_type, dataset.num_labels)
        replaced[name] = build_dataloader(
            features_dataset, cfg.data, shuffle=sampler.shuffle, seed=sampler.seed, collator=collator
        )
    report = cache_report(cache, entries)
    print(format_cache_report(report))
    return replaced, report


def cached_loader_if_present(model: ProteinModel, cfg: RunConfig, dataset: Any) -> DataLoader | None:
    """For prediction: a loader over the stored entry of exactly these sequences, when the run used
    the cache and the entry exists (e.g. the test split: predictions then equal the run's own test
    predictions bit for bit). Never computes an entry: a per-residue cache of a large prediction set
    could fill the disk, and a single pass gains nothing from it."""
    if not uses_embedding_cache(model, cfg):
        return None
    found = EmbeddingCache(model, cfg).lookup(dataset.tokenized)
    if found is None:
        return None
    collator = CachedFeatureCollator(cfg.data.problem_type, dataset.num_labels)
    return build_dataloader(
        CachedFeatureDataset(found, dataset.labels, dataset.extra_features),
        cfg.data,
        shuffle=False,
        seed=0,
        collator=collator,
    )


def cache_report(cache: EmbeddingCache, entries: dict[str, CachedFeatures]) -> dict[str, Any]:
    splits = {
        name: {
            "hit": entry.hit,
            "entry": entry.folder.name,
            "size_mb": round(entry.size_bytes / 1e6, 3),
            "build_s": round(entry.seconds, 3),
        }
        for name, entry in entries.items()
    }
    return {
        "kind": cache.kind,
        "root": str(cache.root),
        "hits": sum(entry.hit for entry in entries.values()),
        "misses": sum(not entry.hit for entry in entries.values()),
        "size_mb": round(sum(entry.size_bytes for entry in entries.values()) / 1e6, 3),
        "splits": splits,
    }


def format_cache_report(report: dict[str, Any]) -> str:
    parts = [
        f"{name} hit" if entry["hit"] else f"{name} computed in {entry['build_s']:.1f}s"
        for name, entry in report["splits"].items()
    ]
    return (
        f"embedding cache ({report['kind']} features): {', '.join(parts)}; "
        f"{report['size_mb']:.1f} MB on disk in {report['root']}"
    )
