"""Zero-shot scores: checked by hand on a masked LM whose probabilities are known, and against the
model's own forward pass on a real (tiny) architecture."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from protfit.models.aliases import cache_root, resolve_model_source
from protfit.models.tiny import PROTBERT_TOKENS
from protfit.models.zero_shot import (
    Reference,
    ZeroShotError,
    ZeroShotScorer,
    choose_reference,
    load_masked_lm,
    masked_lm_family,
    score_sequences,
)

REFERENCE = "MKTAYIAKQR"


@pytest.fixture(scope="module")
def bias_only_mlm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """A BERT masked LM whose output at every position is its decoder bias: the transform's final
    LayerNorm has zero scale and shift, so the hidden state reaching the decoder is 0 and
    p(residue) = softmax(bias) exactly, whatever the input. Scores are then sums of bias differences."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    folder = tmp_path_factory.mktemp("bias-mlm")
    vocab = {token: index for index, token in enumerate(PROTBERT_TOKENS)}
    BertTokenizer(vocab=vocab, do_lower_case=False).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    bias = torch.linspace(-2.0, 2.0, len(vocab))
    with torch.no_grad():
        model.cls.predictions.transform.LayerNorm.weight.zero_()
        model.cls.predictions.transform.LayerNorm.bias.zero_()
        model.cls.predictions.bias.copy_(bias)
        model.cls.predictions.decoder.bias.copy_(bias)
    model.save_pretrained(folder)
    return folder, {token: float(value) for token, value in zip(vocab, bias, strict=True)}


def test_masked_marginal_equals_the_log_probability_difference_by_hand(bias_only_mlm) -> None:
    folder, bias = bias_only_mlm
    scorer = ZeroShotScorer(str(folder))
    one = "MKTAYIAKQA"  # R10A
    two = "MKTCYIAKQA"  # A4C + R10A
    scores = scorer.score([REFERENCE, one, two], Reference(REFERENCE, "given", "test")).scores
    # log p(x) = bias[x] - logsumexp(bias); the normaliser cancels in each difference
    assert scores[0] == 0.0
    assert scores[1] == pytest.approx(bias["A"] - bias["R"], abs=1e-5)
    assert scores[2] == pytest.approx((bias["C"] - bias["A"]) + (bias["A"] - bias["R"]), abs=1e-5)


def test_other_lengths_get_the_pseudo_log_likelihood_difference_by_hand(bias_only_mlm) -> None:
    folder, bias = bias_only_mlm
    shorter = "MKTAYIA"
    result = ZeroShotScorer(str(folder)).score([shorter], Reference(REFERENCE, "given", "test"))
    normaliser = math.log(sum(math.exp(value) for value in bias.values()))

    def pll(sequence: str) -> float:
        return sum(bias[residue] - normaliser for residue in sequence)

    assert result.methods == ["pll_difference"]
    assert result.substitutions == [None]
    assert result.scores[0] == pytest.approx(pll(shorter) - pll(REFERENCE), abs=1e-4)


def test_the_reference_is_masked_not_the_variant() -> None:
    """On a real architecture (contextual probabilities) each substitution is read from the reference
    with its position masked: sum_i log p(mut_i) - log p(wt_i), computed directly with the model."""
    lm = load_masked_lm("tiny-esm2")
    tokenizer = lm.backbone.tokenizer

    def log_probs(sequence: str, position: int) -> torch.Tensor:
        ids = [
            tokenizer.cls_token_id,
            *tokenizer.convert_tokens_to_ids(list(sequence)),
            tokenizer.eos_token_id,
        ]
        ids[position + 1] = tokenizer.mask_token_id  # +1: after <cls>
        with torch.no_grad():
            return torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0, position + 1], -1)

    def token(residue: str) -> int:
        return tokenizer.convert_tokens_to_ids(residue)

    variant = "MKTAWIAKQD"  # Y5W, R10D
    by_hand = sum(
        float(log_probs(REFERENCE, i)[token(variant[i])] - log_probs(REFERENCE, i)[token(REFERENCE[i])])
        for i in (4, 9)
    )
    score = score_sequences("tiny-esm2", [variant], Reference(REFERENCE, "given", "test")).scores[0]
    assert score == pytest.approx(by_hand, abs=1e-5)
    # masking the variant instead (the other substitution as context) gives another number
    in_variant = sum(
        float(log_probs(variant, i)[token(variant[i])] - log_probs(variant, i)[token(REFERENCE[i])])
        for i in (4, 9)
    )
    assert abs(in_variant - by_hand) > 1e-4


def test_reference_table_is_computed_once_and_read_from_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = Reference("ACDEFGHIKL", "given", "test")
    first = ZeroShotScorer("tiny-bert", batch_size=3).score(["ACDEFGHIKW"], reference).scores
    assert list((cache_root() / "zero_shot").glob("tiny-bert-table-*.npy"))

    def no_forward(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the reference table should come from the cache")

    monkeypatch.setattr(ZeroShotScorer, "_masked_log_probs", no_forward)
    again = ZeroShotScorer("tiny-bert").score(["ACDEFGHIKW"], reference).scores
    assert again == pytest.approx(first)


def test_batch_size_does_not_change_the_scores() -> None:
    reference = Reference("ACDEFGHIKLMN", "given", "test")
    sequences = ["ACDEFGHIKLMW", "ACDE", "WCDEFGHIKLMN", "ACDEFGH"]
    small = ZeroShotScorer("tiny-bert", batch_size=2, root=Path(cache_root()) / "b2")
    large = ZeroShotScorer("tiny-bert", batch_size=64, root=Path(cache_root()) / "b64")
    assert small.score(sequences, reference).scores == pytest.approx(
        large.score(sequences, reference).scores, abs=1e-5
    )


def test_reference_choice_most_common_else_consensus() -> None:
    common = choose_reference(["AAAA", "AACA", "AACA", "CAAA"])
    assert (common.sequence, common.source) == ("AACA", "most_common")
    assert "2 of 4" in common.describe()
    tie = choose_reference(["MKTW", "MKTW", "MATA", "MATA", "WKTA", "MKQA"])
    assert (tie.sequence, tie.source) == ("MKTA", "consensus")
    consensus = choose_reference(["MKTW", "MATA", "WKTA", "MKQA", "MK"])
    assert (consensus.sequence, consensus.source) == ("MKTA", "consensus")
    assert "4 training sequences of length 4, not itself one of them" in consensus.describe()


def test_t5_and_onehot_are_refused_in_one_line_before_weights_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def no_weights(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights must not load")

    monkeypatch.setattr(transformers.AutoModelForMaskedLM, "from_pretrained", no_weights)
    for name, words in (("onehot", "one-hot encoder"), ("tiny-t5", "t5 encoder")):
        with pytest.raises(ZeroShotError, match=words) as error:
            ZeroShotScorer(name)
        assert "\n" not in str(error.value)
    assert masked_lm_family("tiny-bert") == "bert"


def test_a_checkpoint_without_masked_lm_head_is_refused(tmp_path: Path) -> None:
    from transformers import BertModel

    source = Path(resolve_model_source("tiny-bert"))
    for item in source.iterdir():
        if item.name.startswith(("tokenizer", "vocab", "special")):
            (tmp_path / item.name).write_bytes(item.read_bytes())
    BertModel.from_pretrained(source).save_pretrained(tmp_path)
    with pytest.raises(ZeroShotError, match="no trained masked-LM head"):
        load_masked_lm(str(tmp_path))
