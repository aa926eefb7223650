"""The training data's domain: what a model has seen, so a prediction far outside it carries a note.

A model trained on 265-residue variants of one protein returns numbers for "MKV" or a 600-residue
protein as readily as for its own data; those numbers are extrapolation. Training records the range
of lengths, the residue frequencies and how far single training sequences lie from the mean residue
composition (``model_meta.json``'s ``training_domain``); prediction compares each input with them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

# A composition further from the training mean than this quantile of the training sequences' own
# distances is "unlike the training data" (the largest would let one odd training sequence decide).
DISTANCE_QUANTILE = 0.99


def _composition(sequence: str, alphabet: list[str]) -> np.ndarray:
    counts = Counter(sequence)
    vector = np.array([counts.get(residue, 0) for residue in alphabet], dtype=float)
    return vector / max(len(sequence), 1)


def _distance(composition: np.ndarray, mean: np.ndarray) -> float:
    """Total variation distance: the share of residues that would have to change to match the mean."""
    return float(0.5 * np.abs(composition - mean).sum())


def training_domain(sequences: Sequence[str]) -> dict[str, Any]:
    """Length range, residue frequencies and the composition-distance threshold of ``sequences``."""
    counts = Counter("".join(sequences))
    alphabet = sorted(counts)
    total = sum(counts.values())
    frequencies = {residue: counts[residue] / total for residue in alphabet}
    mean = np.array([frequencies[residue] for residue in alphabet])
    distances = [_distance(_composition(sequence, alphabet), mean) for sequence in sequences]
    lengths = [len(sequence) for sequence in sequences]
    return {
        "n_sequences": len(sequences),
        "min_length": min(lengths),
        "max_length": max(lengths),
        "residue_frequencies": frequencies,
        "composition_distance_threshold": float(np.quantile(distances, DISTANCE_QUANTILE)),
    }


def domain_note(sequence: str, domain: dict[str, Any]) -> str:
    """Why ``sequence`` lies outside the training data ("" when it does not)."""
    notes = []
    low, high = domain["min_length"], domain["max_length"]
    if not low <= len(sequence) <= high:
        span = f"{low}" if low == high else f"{low}–{high}"
        notes.append(f"length {len(sequence)} outside training lengths {span}")
    frequencies = domain["residue_frequencies"]
    unseen = sorted(set(sequence) - set(frequencies))
    if unseen:
        notes.append(f"residues not in training: {''.join(unseen)}")
    alphabet = sorted(frequencies)
    mean = np.array([frequencies[residue] for residue in alphabet])
    # residues outside the training alphabet count as differences too: the composition is over the sequence
    distance = _distance(_composition(sequence, alphabet), mean) + 0.5 * sum(
        sequence.count(residue) for residue in unseen
    ) / max(len(sequence), 1)
    threshold = domain["composition_distance_threshold"]
    if distance > threshold:
        # the threshold: DISTANCE_QUANTILE of the training sequences are at most this far from the mean
        notes.append(f"composition unlike training (distance {distance:.2f} > {threshold:.2f})")
    return "; ".join(notes)


def domain_notes(sequences: Sequence[str], domain: dict[str, Any]) -> list[str]:
    return [domain_note(sequence, domain) for sequence in sequences]
