"""``tiny-esm2``, ``tiny-bert``, ``tiny-t5``: small randomly initialised models built locally.

Each has the real architecture and a real tokenizer of its family (ESM-2's 33-token vocabulary,
ProtBert's 30-token vocabulary, ProtT5's ``▁A``-style sentencepiece pieces), saved as a standard
Hugging Face folder, so every code path of a real model runs without a download. They learn nothing
useful: they exist for smoke runs and tests.
"""

from __future__ import annotations

from pathlib import Path

from protfit.models.aliases import cache_root, register_alias, staged_folder

TINY_FAMILIES = ("esm", "bert", "t5")
# The real vocabularies, in their real order, so token ids match the pretrained models'.
ESM_TOKENS = [
    "<cls>",
    "<pad>",
    "<eos>",
    "<unk>",
    *"LAGVSERTIDPKQNFYMHWCXBUZO",
    ".",
    "-",
    "<null_1>",
    "<mask>",
]
PROTBERT_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"LAGVESIKRDTPNQFYMHCWXUBZO"]
PROT_T5_RESIDUES = "ALGVSREDTIPKFQNYMHWCXBOUZ"


def _save_esm(out_dir: Path, hidden_size: int, num_layers: int, heads: int, intermediate: int) -> None:
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    (out_dir / "vocab.txt").write_text("\n".join(ESM_TOKENS) + "\n")
    EsmTokenizer(str(out_dir / "vocab.txt")).save_pretrained(out_dir)
    config = EsmConfig(
        vocab_size=len(ESM_TOKENS),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=1026,
        position_embedding_type="rotary",
        pad_token_id=ESM_TOKENS.index("<pad>"),
        mask_token_id=ESM_TOKENS.index("<mask>"),
        token_dropout=True,
        emb_layer_norm_before=False,
    )
    # Saved as the masked-LM model, like the hub checkpoints, so loading the bare encoder is exercised.
    EsmForMaskedLM(config).save_pretrained(out_dir)


def _save_bert(out_dir: Path, hidden_size: int, num_layers: int, heads: int, intermediate: int) -> None:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    vocab = {token: index for index, token in enumerate(PROTBERT_TOKENS)}
    BertTokenizer(vocab=vocab, do_lower_case=False).save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=len(PROTBERT_TOKENS),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=2048,
        pad_token_id=0,
    )
    BertForMaskedLM(config).save_pretrained(out_dir)


def _save_t5(out_dir: Path, hidden_size: int, num_layers: int, heads: int, intermediate: int) -> None:
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + res, -1.0) for res in PROT_T5_RESIDUES]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    tokenizer.save_pretrained(out_dir)
    config = T5Config(
        vocab_size=len(pieces),
        d_model=hidden_size,
        d_kv=hidden_size // heads,
        d_ff=intermediate,
        num_layers=num_layers,
        num_heads=heads,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    # ProtT5's encoder-only checkpoints (prot_t5_xl_half_uniref50-enc) are saved this way.
    T5EncoderModel(config).save_pretrained(out_dir)


_BUILDERS = {"esm": _save_esm, "bert": _save_bert, "t5": _save_t5}


def build_tiny_model(
    family: str,
    out_dir: str | Path,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
    num_heads: int = 2,
    intermediate_size: int | None = None,
) -> Path:
    """Write a random ``family`` model + tokenizer to ``out_dir``; same seed, same weights.

    Defaults give a tiny model for tests; real shapes (e.g. ESM2-8M: 320 hidden, 6 layers, 20 heads,
    1280 intermediate) give a random-init architecture twin for benchmarks."""
    if family not in _BUILDERS:
        raise ValueError(f"no tiny model for family '{family}'; choose from {', '.join(TINY_FAMILIES)}")
    # Imported here: the aliases are listed while a config is checked, which must not import torch.
    import torch

    from protfit.models.backbone import quiet_transformers

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Forked so that building a model on first use does not shift the caller's random stream.
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(seed)
        _BUILDERS[family](out_dir, hidden_size, num_layers, num_heads, intermediate_size or 2 * hidden_size)
    return out_dir


def _cached_tiny_model(alias: str, family: str, **shape: int) -> Path:
    target = cache_root() / "tiny" / alias
    if (target / "config.json").is_file():
        return target
    with staged_folder(target, marker="config.json") as staging:
        build_tiny_model(family, staging, **shape)
    return target


@register_alias(
    "tiny-esm2", "small random ESM-2-architecture model (built locally; for smoke runs and tests)"
)
def _tiny_esm2() -> Path:
    return _cached_tiny_model("tiny-esm2", "esm")


@register_alias(
    "tiny-bert", "small random ProtBert-architecture model (built locally; for smoke runs and tests)"
)
def _tiny_bert() -> Path:
    return _cached_tiny_model("tiny-bert", "bert")


@register_alias(
    "tiny-t5", "small random ProtT5-architecture encoder (built locally; for smoke runs and tests)"
)
def _tiny_t5() -> Path:
    return _cached_tiny_model("tiny-t5", "t5")


@register_alias(
    "esm2-8m-random",
    "ESM2-8M architecture (320 hidden, 6 layers, 20 heads) with random weights: speed benchmarks offline",
)
def _esm2_8m_random() -> Path:
    return _cached_tiny_model(
        "esm2-8m-random", "esm", hidden_size=320, num_layers=6, num_heads=20, intermediate_size=1280
    )
