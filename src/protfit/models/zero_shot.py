"""Zero-shot variant scores from a masked protein language model: no labels, no training.

Two scores, both "higher = more likely under the model than the reference":

* **masked marginal** (Meier et al. 2021, "Language models enable zero-shot prediction of the effects
  of mutations on protein function", their best-performing scoring rule): for each position i where a
  variant differs from the reference, mask position i *in the reference*, and add
  ``log p(variant residue) - log p(reference residue)``. Every variant of one reference reads the same
  L masked forward passes of the reference, so those are computed once (batched) as a per-position
  table of log-probabilities, and a variant's score is a sum of table lookups.
* **pseudo-log-likelihood difference** for a sequence whose length differs from the reference's (no
  position-wise substitutions to read): ``PLL(s) - PLL(reference)`` with ``PLL(s) = sum_i log p(s_i |
  s with i masked)``, one masked forward pass per residue (Salazar et al. 2020).

Only masked language models have these probabilities: the ESM and BERT families (AntiBERTy included).
T5 encoders (span corruption, no per-residue head) and the one-hot encoder are refused before any
weights load. Tables and pseudo-log-likelihoods are cached on disk next to the embedding cache
(``cache_root()/zero_shot``), keyed by the model's resolved source and a fingerprint of its weights,
and written atomically (temporary file + rename), so a later run or ``protfit score`` reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from protfit.models.aliases import cache_root, resolve_model_source
from protfit.models.sources import ModelError, resolve_model_or_fail
from protfit.registry import FEATURES

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from protfit.config import RunConfig
    from protfit.models.backbone import Backbone

MASKED_LM_FAMILIES = ("esm", "bert")
CACHE_FORMAT = 1
# Masked copies per forward pass; a masked copy is one sequence, so this is a batch size.
DEFAULT_BATCH_SIZE = 32


class ZeroShotError(ModelError):
    """The model cannot give zero-shot scores (not a masked LM, no masked-LM head)."""


# ---- the reference ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The sequence variants are scored against, and how it was chosen (said in every report)."""

    sequence: str
    source: str  # given | data.reference_sequence | most_common | consensus
    detail: str

    def describe(self) -> str:
        return f"{self.detail} ({len(self.sequence)} residues)"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def choose_reference(sequences: Sequence[str], what: str = "training sequences") -> Reference:
    """The most common of ``sequences`` when one occurs more often than any other (and more than once),
    else their per-position consensus.

    A deep mutational scan usually holds the wild type once or not at all, and every other variant
    once; then no sequence is "most common", but the consensus of single (or few) substitutions is
    the wild type. The consensus is taken over the sequences of the most common length; ties at a
    position go to the residue seen first.
    """
    if not sequences:
        raise ValueError(f"no {what} to choose a zero-shot reference from")
    counts = Counter(sequences)
    (top, copies), *rest = counts.most_common(2)
    if copies > 1 and (not rest or rest[0][1] < copies):  # a tie for most common is no reference
        return Reference(top, "most_common", f"the most common of the {what} ({copies} of {len(sequences)})")
    length = Counter(len(sequence) for sequence in sequences).most_common(1)[0][0]
    same = [sequence for sequence in sequences if len(sequence) == length]
    consensus = "".join(Counter(column).most_common(1)[0][0] for column in zip(*same, strict=True))
    present = "itself one of them" if consensus in counts else "not itself one of them"
    return Reference(
        consensus,
        "consensus",
        f"the per-position consensus of the {len(same)} {what} of length {length}, {present}",
    )


def run_reference(cfg: RunConfig, train_sequences: Sequence[str]) -> Reference:
    """``data.reference_sequence`` (truncated like the data), else :func:`choose_reference` on train."""
    given = cfg.data.reference_sequence
    if given is not None:
        kept = given[: cfg.data.max_seq_len] if cfg.data.max_seq_len is not None else given
        cut = f", first {len(kept)} residues kept (data.max_seq_len)" if len(kept) < len(given) else ""
        return Reference(kept, "data.reference_sequence", f"data.reference_sequence{cut}")
    return choose_reference(list(train_sequences))


# ---- the masked language model ---------------------------------------------------------------------


def masked_lm_family(name: str) -> str:
    """The family of ``name`` if it is a masked LM (esm, bert); a one-line :class:`ZeroShotError`
    otherwise. Reads only the model's config (and converts an alias once), never the weights."""
    from protfit.models.backbone import _encoder_class, _load_config

    if name.lower() == "onehot":
        raise ZeroShotError(
            "zero-shot scores need a masked language model; 'onehot' is the one-hot encoder, which has "
            "no probabilities (use e.g. antiberty, an ESM-2 or a BERT protein model)"
        )
    resolve_model_or_fail(name)
    config = _load_config(name, resolve_model_source(name))
    family = _encoder_class(config.model_type)[0]
    if family not in MASKED_LM_FAMILIES:
        raise ZeroShotError(
            f"zero-shot scores need a masked language model; '{name}' is a {family} encoder "
            f"({config.model_type}), trained without a per-residue masked-LM head (use the ESM or BERT "
            "family, e.g. antiberty)"
        )
    return family


@dataclass
class MaskedLanguageModel:
    name: str
    model: torch.nn.Module  # *ForMaskedLM, eval mode
    backbone: Backbone  # tokenizer and the family's input rules (no encoder)
    mask_token_id: int
    source: str


def load_masked_lm(name: str) -> MaskedLanguageModel:
    """``name`` (alias, folder or hub id) with its masked-LM head; refused before the weights load when
    it is not a masked LM, and after, when its checkpoint has no trained masked-LM head."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from protfit.models.antiberty import MLM_HEAD_FILE, load_antiberty_masked_lm
    from protfit.models.backbone import Backbone, _load_config, quiet_transformers

    family = masked_lm_family(name)
    source = resolve_model_source(name)
    config = _load_config(name, source)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source)
        if (Path(source) / MLM_HEAD_FILE).is_file():
            # protfit's AntiBERTy folder keeps its masked-LM head in a file of its own
            model = load_antiberty_masked_lm(Path(source))
        else:
            model, info = AutoModelForMaskedLM.from_pretrained(
                source, dtype=torch.float32, output_loading_info=True
            )
            untrained = [
                key
                for key in info.get("missing_keys", [])
                if key.startswith(("lm_head.", "cls.")) and not key.endswith("decoder.weight")
            ]
            if untrained:
                raise ZeroShotError(
                    f"'{name}' has no trained masked-LM head in its checkpoint (missing "
                    f"{', '.join(sorted(untrained)[:3])}); zero-shot scores need one"
                )
    if tokenizer.mask_token_id is None:
        raise ZeroShotError(f"the tokenizer of '{name}' has no mask token; zero-shot scores need one")
    backbone = Backbone(
        None,
        tokenizer,
        name=name,
        family=family,
        style=family,
        hidden_size=int(config.hidden_size),
        num_layers=int(config.num_hidden_layers),
    )
    return MaskedLanguageModel(name, model.eval(), backbone, int(tokenizer.mask_token_id), source)


# ---- scoring ---------------------------------------------------------------------------------------


@dataclass
class ZeroShotScores:
    scores: np.ndarray  # (N,) float64, higher = more likely than the reference
    methods: list[str]  # per sequence: masked_marginal | pll_difference
    substitutions: list[int | None]  # positions that differ from the reference (None for pll)
    reference: Reference
    model: str

    def frame(self, sequences: pd.DataFrame) -> pd.DataFrame:
        """``sequences`` (with ``name``, ``aa_seq``) plus the score columns, as `protfit score` writes it."""
        table = sequences[[column for column in ("name", "aa_seq") if column in sequences]].copy()
        table["zero_shot_score"] = self.scores
        table["method"] = self.methods
        table["substitutions"] = pd_integers(self.substitutions)
        return table


def pd_integers(values: list[int | None]) -> Any:
    import pandas as pd

    return pd.array(values, dtype="Int64")


class ZeroShotScorer:
    """Scores sequences against a reference with one masked LM; tables and PLLs cached on disk."""

    def __init__(
        self,
        name: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | None = None,
        progress: bool = False,
        root: Path | None = None,
    ) -> None:
        import torch

        from protfit.models.embedding_cache import weights_fingerprint

        self.lm = load_masked_lm(name)
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.progress = progress
        self.root = (root or cache_root()) / "zero_shot"
        local = Path(self.lm.source).expanduser()
        self.identity = {
            "format": CACHE_FORMAT,
            "source": str(local.resolve()) if local.is_dir() else self.lm.source,
            "weights": weights_fingerprint(self.lm.model),
        }
        self._slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name.rstrip("/")).name)[:40]
        # residue letter -> token id, read from the tokenizer itself (BERT-style vocabularies map X to
        # the unknown token, which Backbone counts as a residue)
        letters = "ACDEFGHIKLMNPQRSTVWYXBZUO"
        item = self.lm.backbone.tokenize([letters])[0]
        ids = [token for token, residue in zip(item.input_ids, item.residue_mask, strict=True) if residue]
        self.residue_ids = dict(zip(letters, ids, strict=True))

    # -- cache --

    def _cached(self, kind: str, key: dict[str, Any], compute: Callable[[], np.ndarray]) -> np.ndarray:
        payload = json.dumps({**self.identity, "kind": kind, **key}, sort_keys=True).encode()
        path = self.root / f"{self._slug}-{kind}-{hashlib.blake2b(payload, digest_size=12).hexdigest()}.npy"
        if path.is_file():
            try:
                return np.load(path)
            except (OSError, ValueError):
                path.unlink(missing_ok=True)  # a damaged entry is recomputed, not trusted
        values = compute()
        self.root.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with staging.open("wb") as handle:
            np.save(handle, values)
        os.replace(staging, path)  # readers see the whole file or none
        return values

    # -- masked forward passes --

    def _masked_log_probs(self, jobs: list[tuple[list[int], int]], description: str) -> np.ndarray:
        """(token ids, token position to mask) -> log-softmax over the vocabulary at that position."""
        import torch
        from tqdm.auto import tqdm

        model = self.lm.model.to(self.device)
        pad = self.lm.backbone.pad_token_id
        out: np.ndarray | None = None
        starts = range(0, len(jobs), self.batch_size)
        with torch.no_grad():
            for start in tqdm(starts, desc=description, disable=not self.progress, dynamic_ncols=True):
                chunk = jobs[start : start + self.batch_size]
                longest = max(len(ids) for ids, _ in chunk)
                input_ids = torch.full((len(chunk), longest), pad, dtype=torch.long)
                attention_mask = torch.zeros((len(chunk), longest), dtype=torch.long)
                for row, (ids, position) in enumerate(chunk):
                    input_ids[row, : len(ids)] = torch.as_tensor(ids)
                    input_ids[row, position] = self.lm.mask_token_id
                    attention_mask[row, : len(ids)] = 1
                logits = model(
                    input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
                ).logits
                positions = torch.as_tensor([position for _, position in chunk], device=logits.device)
                picked = logits[torch.arange(len(chunk), device=logits.device), positions].float()
                values = torch.log_softmax(picked, dim=-1).cpu().numpy()
                if out is None:
                    out = np.empty((len(jobs), values.shape[1]), dtype=np.float32)
                out[start : start + len(chunk)] = values
        return out if out is not None else np.empty((0, 0), dtype=np.float32)

    def _residue_positions(self, sequence: str) -> tuple[list[int], list[int]]:
        item = self.lm.backbone.tokenize([sequence])[0]
        return item.input_ids, [index for index, flag in enumerate(item.residue_mask) if flag]

    def reference_table(self, reference: str) -> np.ndarray:
        """(L, vocabulary) log-probabilities at each residue of ``reference`` with that residue masked."""

        def compute() -> np.ndarray:
            ids, positions = self._residue_positions(reference)
            return self._masked_log_probs([(ids, p) for p in positions], "zero-shot: reference table")

        return self._cached("table", {"reference": reference}, compute)

    def pseudo_log_likelihoods(self, sequences: Sequence[str]) -> np.ndarray:
        """PLL of each sequence: the sum over its residues of log p(residue | the rest, it masked)."""

        def compute() -> np.ndarray:
            jobs: list[tuple[list[int], int]] = []
            owners: list[int] = []
            truth: list[int] = []
            # longest first, so one batch holds copies of similar lengths
            for index in sorted(range(len(sequences)), key=lambda i: -len(sequences[i])):
                ids, positions = self._residue_positions(sequences[index])
                jobs += [(ids, p) for p in positions]
                owners += [index] * len(positions)
                truth += [ids[p] for p in positions]
            log_probs = self._masked_log_probs(jobs, "zero-shot: pseudo-log-likelihoods")
            picked = log_probs[np.arange(len(jobs)), truth] if jobs else np.empty(0)
            return np.bincount(np.asarray(owners, dtype=np.int64), picked, minlength=len(sequences))

        digest = hashlib.blake2b("\n".join(sequences).encode(), digest_size=16).hexdigest()
        return self._cached("pll", {"sequences": digest, "count": len(sequences)}, compute)

    def score(self, sequences: Sequence[str], reference: Reference) -> ZeroShotScores:
        """Masked marginal for sequences of the reference's length, PLL difference for the others."""
        ref = reference.sequence
        scores = np.zeros(len(sequences), dtype=np.float64)
        methods = ["masked_marginal"] * len(sequences)
        substitutions: list[int | None] = [None] * len(sequences)
        same = [index for index, sequence in enumerate(sequences) if len(sequence) == len(ref)]
        if same:
            table = self.reference_table(ref)
            ids = self.residue_ids
            for index in same:
                sequence = sequences[index]
                changed = [i for i, (a, b) in enumerate(zip(sequence, ref, strict=True)) if a != b]
                substitutions[index] = len(changed)
                scores[index] = float(
                    sum(table[i, ids[sequence[i]]] - table[i, ids[ref[i]]] for i in changed)
                )
        other = [index for index in range(len(sequences)) if len(sequences[index]) != len(ref)]
        if other:
            plls = self.pseudo_log_likelihoods([sequences[i] for i in other] + [ref])
            for slot, index in enumerate(other):
                scores[index] = float(plls[slot] - plls[-1])
                methods[index] = "pll_difference"
        return ZeroShotScores(scores, methods, substitutions, reference, self.lm.name)


def score_sequences(
    model: str,
    sequences: Sequence[str],
    reference: Reference | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> ZeroShotScores:
    """Zero-shot scores of ``sequences`` under the masked LM ``model`` against ``reference`` (default:
    :func:`choose_reference` over ``sequences`` themselves)."""
    reference = reference or choose_reference(list(sequences), "input sequences")
    return ZeroShotScorer(model, batch_size=batch_size, progress=progress).score(list(sequences), reference)


@FEATURES.register(
    "zero_shot",
    "masked-LM zero-shot score against the reference (Meier et al. 2021), one number per sequence",
)
def zero_shot_feature(
    cfg: RunConfig, frames: dict[str, pd.DataFrame], state: dict[str, Any] | None, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Scores of every frame's sequences; ``state`` (from training) fixes the model and the reference,
    so prediction scores new sequences exactly as training did."""
    if state is None:
        if "train" not in frames:
            raise ValueError("the zero_shot feature needs the training split to choose its reference")
        reference = run_reference(cfg, frames["train"]["aa_seq"].tolist())
        name = cfg.model.zero_shot_scorer
    else:
        reference, name = Reference(**state["reference"]), state["model"]
    scorer = ZeroShotScorer(name, batch_size=cfg.data.batch_size, progress=progress)
    values = {
        split: scorer.score(frame["aa_seq"].tolist(), reference).scores for split, frame in frames.items()
    }
    return values, {"model": name, "reference": reference.as_dict()}
