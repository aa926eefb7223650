"""Checkpoints without pickle: safetensors for every tensor, JSON for everything else.

A checkpoint folder holds `model.safetensors` (only what was trained: see
`protein_model.trainable_state_dict`) and, for resuming, `training_state.safetensors` +
`training_state.json` (optimizer, scheduler, RNG streams, early stopping, epoch/step, and the
training plug-ins' state: tensors under ``plugin/<name>/...``, everything else in the JSON), and
`checkpoint.json`, written last: the run id the checkpoint belongs to and the size of every file,
so its presence marks a complete folder. Folders are written beside their final place
(`last.tmp`) and renamed into it (the previous one moved aside to `last.old` first), so a crash
mid-write never leaves a half-written checkpoint where the previous good one was; a crash between
the two renames is repaired on the next load (:func:`recover_checkpoint`).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

MODEL_FILE = "model.safetensors"
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
MARKER_FILE = "checkpoint.json"
# left in a run's checkpoints/ folder by whatever deleted its checkpoints, saying why (a sweep keeps the
# weights of its best trials only); `missing_reason` reads it
REMOVED_NOTE = "removed.txt"


class CheckpointOwnerError(RuntimeError):
    """A checkpoint that was written by another run than the one resuming from it."""


class CheckpointSpaceError(OSError):
    """A checkpoint that did not fit on its device; the previous checkpoint in its place is kept."""


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{slot}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[slot] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value
    for index, slots in meta["scalars"].items():
        state.setdefault(int(index), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{device}"] = state
    kind, keys, position, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, python_state, gauss_next = random.getstate()
    meta = {
        "numpy": [kind, int(position), int(has_gauss), float(cached)],
        "python": [version, list(python_state), gauss_next],
    }
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = sorted(key for key in tensors if key.startswith("rng.cuda."))
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[key] for key in cuda_states])
    kind, position, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), position, has_gauss, cached))
    version, python_state, gauss_next = meta["python"]
    random.setstate((version, tuple(python_state), gauss_next))


def _split_state(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Nested plug-in state -> JSON with tensors moved into ``tensors`` (referenced by key)."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(value, dict):
        return {str(key): _split_state(item, f"{path}/{key}", tensors) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_split_state(item, f"{path}/{index}", tensors) for index, item in enumerate(value)]
    return value


def _join_state(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        return {key: _join_state(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [_join_state(item, tensors) for item in value]
    return value


def _replace_dir(staging: Path, target: Path) -> None:
    # Rename is atomic on one filesystem; the old folder is moved aside first and removed last, so
    # at every instant one complete checkpoint exists (as `target`, or as `.tmp`/`.old` after a crash
    # between the renames, which recover_checkpoint puts back).
    backup = target.with_name(target.name + ".old")
    if backup.exists():
        shutil.rmtree(backup)
    if target.exists():
        os.replace(target, backup)
    os.replace(staging, target)
    if backup.exists():
        shutil.rmtree(backup)


def _write_marker(staging: Path, run_id: str | None, epoch: int | None) -> None:
    files = {path.name: path.stat().st_size for path in sorted(staging.iterdir()) if path.is_file()}
    (staging / MARKER_FILE).write_text(json.dumps({"run_id": run_id, "epoch": epoch, "files": files}))


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a checkpoint whose writing finished (marker and every file it lists).

    A rename never happens before the marker is written, so a folder without a marker is either a
    staging folder cut off mid-write or half removed, or a checkpoint from before markers existed
    (a plain `last`/`best` folder: trusted when it holds the model weights).
    """
    folder = Path(folder)
    marker = folder / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        files = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(
        (folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items()
    )


def recover_checkpoint(folder: Path) -> bool:
    """Put a checkpoint back in place after a crash between the renames of a replacement.

    When ``folder`` is missing, a complete ``folder.tmp`` (the newer one) or else a complete
    ``folder.old`` is renamed to ``folder``; incomplete leftovers are left for the next save to
    remove. Returns whether ``folder`` exists afterwards.
    """
    folder = Path(folder)
    if folder.is_dir():
        return True
    for candidate in (folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")):
        if candidate.is_dir() and is_complete(candidate):
            os.replace(candidate, folder)
            return True
    return False


def save_checkpoint(
    folder: Path,
    model_state: dict[str, torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    progress: dict[str, Any] | None = None,
    plugins: dict[str, Any] | None = None,
    run_id: str | None = None,
    epoch: int | None = None,
) -> None:
    """Write a checkpoint folder atomically; ``run_id`` (see `report.run_dir.run_id_of`) and the
    ``epoch`` whose weights it holds are recorded in its `checkpoint.json`, so `--resume` can refuse a
    checkpoint of another run and `eval` can say which epoch it evaluated."""
    folder = Path(folder)
    recover_checkpoint(folder)  # a crash-left `.tmp` may be the only good copy: put it back before reuse
    tensors = {MODEL_FILE: {key: value.detach().cpu().contiguous() for key, value in model_state.items()}}
    meta: dict[str, Any] | None = None
    if optimizer is not None:
        optimizer_tensors, optimizer_meta = _flatten_optimizer(optimizer.state_dict())
        rng_tensors, rng_meta = _rng_state()
        plugin_tensors: dict[str, torch.Tensor] = {}
        plugin_meta = _split_state(plugins or {}, "plugin", plugin_tensors)
        tensors[STATE_TENSORS] = {**optimizer_tensors, **rng_tensors, **plugin_tensors}
        meta = {
            "plugins": plugin_meta,
            "optimizer": optimizer_meta,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng_meta,
            "progress": progress or {},
        }
    staging = folder.with_name(folder.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        staging.mkdir(parents=True)
        for name, contents in tensors.items():
            save_file(contents, staging / name)
        if meta is not None:
            (staging / STATE_JSON).write_text(json.dumps(meta))
        _write_marker(
            staging, run_id, epoch
        )  # last: from here on the staging folder is a complete checkpoint
    except (OSError, SafetensorError) as error:
        shutil.rmtree(staging, ignore_errors=True)  # frees the space a half-written copy holds
        if not _out_of_space(error):
            raise
        size = sum(
            tensor.numel() * tensor.element_size() for part in tensors.values() for tensor in part.values()
        )
        raise CheckpointSpaceError(
            f"no space left on the device to write checkpoint {folder} (about {size / 1e6:.1f} MB needed); "
            "the checkpoint already there (if any) is kept: free space, then continue with `protfit train --resume RUN_DIR`"
        ) from error
    _replace_dir(staging, folder)


def remove_checkpoint(folder: Path) -> None:
    """Delete a checkpoint with the staging and backup copies a crash may have left beside it."""
    folder = Path(folder)
    for path in (folder, folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")):
        shutil.rmtree(path, ignore_errors=True)


def missing_reason(checkpoints: Path, name: str) -> str:
    """Why the checkpoint ``name`` of a run's ``checkpoints`` folder is not there, for an error message."""
    note = Path(checkpoints) / REMOVED_NOTE
    if note.is_file():
        return note.read_text().strip()
    if name == "last" and (Path(checkpoints).parent / "summary.json").is_file():
        return "a finished run keeps it only with output.checkpoints.keep_last=true"
    return "was the run interrupted before epoch 1 ended?"


def _out_of_space(error: BaseException) -> bool:
    """A full disk or an exhausted quota; safetensors reports it as a SafetensorError naming the os error."""
    codes = (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, OSError):
        return error.errno in codes
    return any(f"(os error {code})" in str(error) for code in codes)


def checkpoint_run_id(folder: Path) -> str | None:
    """The run id recorded in a checkpoint; None for checkpoints saved without one (or before ids)."""
    marker = Path(folder) / MARKER_FILE
    if not marker.is_file():
        return None
    return json.loads(marker.read_text()).get("run_id")


def checkpoint_epoch(folder: Path) -> int | None:
    """The epoch whose weights a checkpoint holds; None for checkpoints saved without one (or before
    epochs were recorded)."""
    marker = Path(folder) / MARKER_FILE
    if not marker.is_file():
        return None
    return json.loads(marker.read_text()).get("epoch")


def check_checkpoint_owner(folder: Path, run_id: str | None) -> None:
    """Refuse a checkpoint written by another run than ``run_id`` (the resuming run's id).

    A checkpoint or a run without a recorded id (written before run ids existed) is accepted: there
    is nothing to compare.
    """
    recover_checkpoint(folder)
    saved = checkpoint_run_id(folder)
    if run_id is not None and saved is not None and saved != run_id:
        raise CheckpointOwnerError(
            f"checkpoint {folder} belongs to run {saved}, not to this run ({run_id}); it was copied "
            "from another run folder. Start a new run, or copy the whole run folder instead of its checkpoints"
        )


def load_model_state(folder: Path) -> dict[str, torch.Tensor]:
    recover_checkpoint(folder)
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return load_file(path)


def load_training_state(
    folder: Path, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore optimizer, scheduler and RNG streams; return the saved progress and plug-in states."""
    folder = Path(folder)
    recover_checkpoint(folder)
    if not (folder / STATE_JSON).is_file():
        raise FileNotFoundError(f"{folder} holds no training state to resume from")
    tensors = load_file(folder / STATE_TENSORS)
    meta = json.loads((folder / STATE_JSON).read_text())
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(meta["scheduler"])
    _restore_rng(tensors, meta["rng"])
    return meta["progress"], _join_state(meta.get("plugins", {}), tensors)
