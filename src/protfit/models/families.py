"""The model families protfit loads, as metadata: what ``protfit models`` lists and what names
``model.family`` accepts. No torch here: the config checks ``model.family`` against this list, and
the loading rules per family live in ``backbone.py``.
"""

from __future__ import annotations

from protfit.registry import FAMILIES

FAMILIES.add(
    "esm",
    "EsmModel",
    "ESM-2, ESM-1b, ESM-1v",
    examples="facebook/esm2_t6_8M_UR50D, facebook/esm2_t33_650M_UR50D, facebook/esm1b_t33_650M_UR50S, "
    "facebook/esm1v_t33_650M_UR90S_1",
    tokenization="plain residue letters",
    needs="hub download or local folder",
)
FAMILIES.add(
    "bert",
    "BertModel",
    "ProtBert, IgBert, AntiBERTy",
    examples="Rostlab/prot_bert, Exscientia/IgBert, antiberty (alias)",
    tokenization="space-separated residues",
    needs="hub download or local folder; antiberty offline",
)
FAMILIES.add(
    "t5",
    "T5EncoderModel",
    "ProtT5, IgT5, Ankh (encoder only)",
    examples="Rostlab/prot_t5_xl_uniref50, Exscientia/IgT5, ElnaggarLab/ankh-base",
    tokenization="ProtT5/IgT5: space-separated, U/Z/O/B -> X; Ankh: characters",
    needs="hub download or local folder",
)
FAMILIES.add(
    "onehot",
    "built in",
    "one-hot encoding of the 20 residues + X",
    examples="onehot (alias)",
    tokenization="20 residues + X, no special tokens",
    needs="offline, no weights",
)
