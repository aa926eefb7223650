"""`protfit export RUN_DIR OUT_DIR`: a trained run as a standalone Hugging Face-format model.

OUT_DIR/
  backbone/                     save_pretrained of the encoder with the adapters merged in, + tokenizer
                                (loads with plain transformers: AutoModel.from_pretrained(OUT_DIR/backbone))
  checkpoints/best/model.safetensors   pooler and head weights
  config.yaml                   the run's config with model.name = backbone (the folder beside it), method freeze
  model_meta.json               labels and target scaling, copied from the run
  export.json                   where it came from (run folder, checkpoint, method)

OUT_DIR is itself a run folder, so ``protfit.load(OUT_DIR)`` / ``protfit predict OUT_DIR ...`` work
and predict what the adapter model predicts (up to float rounding of the merge), without peft.
LoRA, DoRA, AdaLoRA and IA3 adapters are merged into the base weights (``merge_and_unload``); freeze
and full runs save their (trained) backbone as it is. `model.name: backbone` is resolved against the
export folder by `protfit.load`, so the folder can be moved as a whole.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from peft import PeftModel

from protfit.config import RunConfig, build_config, load_config, save_config
from protfit.inference import load
from protfit.models.backbone import quiet_transformers
from protfit.models.methods import freeze
from protfit.models.protein_model import trainable_state_dict
from protfit.models.sources import ModelError
from protfit.report.run_dir import CONFIG_FILE, load_run_plugins, write_json
from protfit.training.checkpoint import save_checkpoint

BACKBONE_DIR = "backbone"


def _exported_config(config: RunConfig, backbone_dir: Path, family: str) -> RunConfig:
    raw: dict[str, Any] = config.model_dump(mode="json")
    # relative to the export folder, which `protfit.load` resolves: the export can be moved or copied
    raw["model"].update({"name": BACKBONE_DIR, "family": family, "method": "freeze"})
    raw["model"].pop("lora", None)  # adapters are merged; their settings no longer apply
    raw["output"]["name"] = None  # re-training from this config must not collide with the source run
    return build_config(raw, source="exported config")


def _check_exportable(run_dir: Path, out_dir: Path, overwrite: bool) -> None:
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a protfit run folder (no {CONFIG_FILE})")
    load_run_plugins(run_dir)
    config = load_config(run_dir / CONFIG_FILE)
    if config.model.method == "qlora":
        raise ModelError(
            "export of a qlora run is not supported: its base weights are 4/8-bit, and merging the LoRA "
            "adapters into quantized weights would round them away. Load the run with protfit.load, or "
            "train with model.method=lora to get a mergeable model"
        )
    if config.model.name.lower() == "onehot" or config.model.family == "onehot":
        raise ModelError(
            "the onehot baseline has no transformer weights to export; the run folder itself is the "
            "complete model (protfit.load works on it)"
        )
    if out_dir.resolve() == run_dir.resolve():
        raise ValueError("the export folder must differ from the run folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file; the export needs a folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} exists and is not empty; choose another folder or use --overwrite"
            )
        if not (out_dir / "export.json").is_file():
            # --overwrite replaces an earlier export, never an arbitrary folder given by mistake
            raise FileExistsError(
                f"{out_dir} is not an earlier protfit export (no export.json); refusing to delete it"
            )
        shutil.rmtree(out_dir)


def export_run(
    run_dir: str | Path, out_dir: str | Path, checkpoint: str = "best", overwrite: bool = False
) -> Path:
    """Write RUN_DIR's model (weights of ``checkpoint``) to OUT_DIR as a standalone model folder."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check_exportable(run_dir, out_dir, overwrite)
    trained = load(run_dir, checkpoint)
    model = trained.model
    if model.adapter is not None:
        raise ModelError(
            f"model.method={trained.config.model.method} adds a structure adapter between backbone and "
            "pooler, which an exported (method=freeze) model has no place for; use the run folder itself"
        )
    encoder = model.backbone.encoder
    merged = isinstance(encoder, PeftModel)
    if merged:
        encoder = encoder.merge_and_unload()
        model.backbone.encoder = encoder

    backbone_dir = out_dir / BACKBONE_DIR
    backbone_dir.mkdir(parents=True)
    with quiet_transformers():
        encoder.save_pretrained(backbone_dir)
        model.backbone.tokenizer.save_pretrained(backbone_dir)

    # As a freeze model its trainable state is exactly the pooler and head (weights and buffers).
    config = _exported_config(trained.config, backbone_dir, model.backbone.family)
    freeze(model, config, 1)
    save_checkpoint(out_dir / "checkpoints" / "best", trainable_state_dict(model))
    save_config(config, out_dir / CONFIG_FILE)
    shutil.copy2(run_dir / "model_meta.json", out_dir / "model_meta.json")
    write_json(
        out_dir / "export.json",
        {
            "source_run": str(run_dir.resolve()),
            "checkpoint": checkpoint,
            "method": trained.config.model.method,
            "adapters_merged": merged,
            "base_model": trained.config.model.name,
        },
    )
    return out_dir
