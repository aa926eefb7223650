"""The zero-shot sanity baseline of a run on variant data: what the pretrained masked LM says unaided.

A fine-tuned model on a mutational scan should beat the language model it started from, used with no
labels at all (Meier et al. 2021). When it applies, the run scores its test sequences against the
reference (``data.reference_sequence``, else the most common or consensus training sequence) with
``model.zero_shot_model`` or its own masked-LM backbone (pretrained weights, not the fine-tuned ones)
and reports ``zero_shot`` and the one-hot + score linear model beside the other baselines. Where it
does not apply, ``summary.json`` says why under ``skipped_baselines``.
"""

from __future__ import annotations

from typing import Any

from protfit.metrics import MULTI, SINGLE
from protfit.models.zero_shot import MASKED_LM_FAMILIES, ZeroShotError, ZeroShotScorer, run_reference
from protfit.report.baselines import SCALE_FREE_METRICS, BaselineResult, fit_zero_shot_baselines
from protfit.training.setup import RunParts

NAME = "zero_shot"


def zero_shot_baselines(parts: RunParts) -> tuple[list[BaselineResult], dict[str, str], dict[str, Any]]:
    """(baselines, {name: why skipped}, what was scored: model, reference, method) for the summary."""
    cfg, splits = parts.cfg, parts.splits
    mode = cfg.evaluation.baselines.zero_shot

    def skipped(reason: str) -> tuple[list[BaselineResult], dict[str, str], dict[str, Any]]:
        return [], {NAME: reason}, {}

    if mode is False:
        return skipped("evaluation.baselines.zero_shot=false")
    if cfg.data.problem_type == MULTI:
        return skipped("multi-label classification: one score per sequence cannot rank several labels")
    if cfg.data.problem_type == SINGLE and splits.num_labels != 2:
        return skipped(f"{splits.num_labels} classes: one score per sequence ranks two classes only")
    if not any(name in SCALE_FREE_METRICS for name in cfg.metric_names):
        return skipped(f"none of the run's metrics is scale-free ({', '.join(SCALE_FREE_METRICS)})")
    family = parts.unwrapped_model.backbone.family
    if cfg.model.zero_shot_model is None and family not in MASKED_LM_FAMILIES:
        return skipped(
            f"model.name={cfg.model.name} ({family}) is no masked language model and model.zero_shot_model "
            "is not set (e.g. antiberty)"
        )
    frames = {split.name: split.frame for split in (splits.train, splits.validation, splits.test) if split}
    reference = run_reference(cfg, frames["train"]["aa_seq"].tolist())
    lengths = sorted({len(seq) for frame in frames.values() for seq in frame["aa_seq"]})
    other_lengths = lengths != [len(reference.sequence)]
    if other_lengths and mode == "auto":
        return skipped(
            f"sequence lengths {_range(lengths)} are not all the reference's {len(reference.sequence)}: set "
            "evaluation.baselines.zero_shot=true to score by pseudo-log-likelihood (a forward pass per residue)"
        )
    try:
        scorer = ZeroShotScorer(
            cfg.model.zero_shot_scorer,
            batch_size=cfg.data.batch_size,
            device=str(parts.accelerator.device),
            progress=cfg.train.progress,
        )
    except ZeroShotError as error:
        if mode is True:
            raise
        return skipped(str(error))
    # other lengths: pseudo-log-likelihoods cost a pass per residue, so only test (no augmented model:
    # the one-hot features need one length anyway)
    scored = {"test": frames["test"]} if other_lengths else frames
    results = {name: scorer.score(frame["aa_seq"].tolist(), reference) for name, frame in scored.items()}
    method = "pseudo-log-likelihood difference" if other_lengths else "masked-marginal score"
    description = f"zero-shot {method} of {scorer.lm.name} against {reference.describe()}"
    baselines = fit_zero_shot_baselines(
        {name: frames[name] for name in scored} | {"test": frames["test"]},
        {name: result.scores for name, result in results.items()},
        cfg.data.problem_type,
        splits.num_labels,
        cfg.metric_names,
        cfg.evaluation.bootstrap,
        description,
        cfg.evaluation.multi_label_threshold,
    )
    info = {"model": scorer.lm.name, "method": method, "reference": reference.as_dict()}
    return baselines, {}, info


def _range(lengths: list[int]) -> str:
    return f"{lengths[0]}-{lengths[-1]}" if len(lengths) > 1 else str(lengths[0])
