"""What `protfit models` prints: families, example ids, aliases and what works offline."""

from __future__ import annotations

from protfit.models.aliases import list_aliases

FAMILIES = [
    (
        "esm",
        "EsmModel",
        "facebook/esm2_t6_8M_UR50D, facebook/esm2_t33_650M_UR50D, facebook/esm1b_t33_650M_UR50S, "
        "facebook/esm1v_t33_650M_UR90S_1",
        "plain residue letters",
        "hub download or local folder",
    ),
    (
        "bert",
        "BertModel",
        "Rostlab/prot_bert, Exscientia/IgBert, antiberty (alias)",
        "space-separated residues",
        "hub download or local folder; antiberty offline",
    ),
    (
        "t5",
        "T5EncoderModel",
        "Rostlab/prot_t5_xl_uniref50, Exscientia/IgT5, ElnaggarLab/ankh-base",
        "ProtT5/IgT5: space-separated, U/Z/O/B -> X; Ankh: characters",
        "hub download or local folder",
    ),
    ("onehot", "built in", "onehot (alias)", "20 residues + X, no special tokens", "offline, no weights"),
]


def format_model_catalog() -> str:
    lines = ["Model families (detected from the model's config.json; force with model.family=...):", ""]
    for family, architecture, examples, tokenization, availability in FAMILIES:
        lines += [
            f"  {family:<7} {architecture}",
            f"          e.g. {examples}",
            f"          tokenization: {tokenization}",
            f"          needs: {availability}",
        ]
    lines += ["", "Aliases (work offline once their package is installed):", ""]
    lines += [f"  {name:<10} {help_text}" for name, help_text in sorted(list_aliases().items())]
    lines += ["  onehot     built-in one-hot encoder: the no-download baseline"]
    lines += [
        "",
        "Any Hugging Face hub id or local folder of these architectures also works (hub needs internet).",
    ]
    return "\n".join(lines)
