"""Position codings: exact round trips and closeness to the entropy bound H(k)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeupdate.models.zoo import build_model
from edgeupdate.updates import FormatError, decode_positions, encode_positions, entropy_bound_bits


@settings(max_examples=300, deadline=None)
@given(numel=st.integers(1, 3000), data=st.data(), coding=st.sampled_from(["bitmap", "varint", "golomb", "context", "auto"]))
def test_positions_roundtrip(numel: int, data: st.DataObject, coding: str) -> None:
    chosen = data.draw(st.sets(st.integers(0, numel - 1), max_size=numel))
    positions = np.array(sorted(chosen), dtype=np.int64)
    used, blob, params = encode_positions(positions, numel, coding)
    assert np.array_equal(decode_positions(blob, numel, positions.size, used, params), positions)


def test_entropy_bound_values() -> None:
    assert entropy_bound_bits(0.5) == pytest.approx(1.0)
    assert entropy_bound_bits(0.0) == entropy_bound_bits(1.0) == 0.0
    assert entropy_bound_bits(0.01) == pytest.approx(0.0807931, rel=1e-5)


def test_decoder_rejects_inconsistent_counts() -> None:
    positions = np.array([1, 5, 9], dtype=np.int64)
    for coding in ("bitmap", "varint", "golomb"):
        used, blob, params = encode_positions(positions, 16, coding)
        with pytest.raises(FormatError):
            decode_positions(blob, 16, 4, used, params)
    _, blob, params = encode_positions(positions, 16, "varint")
    with pytest.raises(FormatError, match="past the end"):
        decode_positions(blob, 9, 3, "varint", params)


def _dpu_style_mask(k: float) -> dict[str, np.ndarray]:
    """Global top-k of a heavy-tailed, row/column-structured score over the 784-512-512-10 MLP."""
    model = build_model("mlp", (1, 28, 28), 10, seed=0)
    rng = np.random.default_rng(0)
    scores = {}
    for name, p in model.state_dict().items():
        shape = tuple(p.shape)
        s = rng.standard_t(df=2, size=shape) ** 2
        if len(shape) == 2:  # some rows (neurons) and columns (inputs) matter more
            s = s * rng.lognormal(0, 1, size=(shape[0], 1)) * rng.lognormal(0, 1, size=(1, shape[1]))
        scores[name] = s.reshape(-1)
    flat = np.concatenate(list(scores.values()))
    threshold = np.partition(flat, flat.size - int(k * flat.size))[flat.size - int(k * flat.size)]
    return {name: np.flatnonzero(s >= threshold) for name, s in scores.items()}


@pytest.mark.parametrize("k", [0.001, 0.005, 0.01, 0.05, 0.1, 0.2])
def test_best_coding_within_10_percent_of_entropy_bound_on_mlp(k: float) -> None:
    masks = _dpu_style_mask(k)
    sizes = {name: tuple(t.shape) for name, t in build_model("mlp", (1, 28, 28), 10, seed=0).state_dict().items()}
    total_weights = sum(math.prod(s) for s in sizes.values())
    bits = sum(8 * len(encode_positions(masks[n], math.prod(sizes[n]), "auto")[1]) for n in masks)
    kept = sum(m.size for m in masks.values())
    bound = entropy_bound_bits(kept / total_weights) * total_weights
    assert bits <= 1.10 * bound, f"k={k}: {bits / total_weights:.4f} bits/weight vs bound {bound / total_weights:.4f}"
