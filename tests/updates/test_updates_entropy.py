"""Entropy-coded values and context-modelled positions: exact round trips, sizes, malformed streams."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_updates_positions import _dpu_style_mask
from update_states import clustered, perturbed, small_state

from edgeupdate.models.zoo import build_model
from edgeupdate.updates import FormatError, UpdatePackage, decode_positions, encode_positions, entropy_bound_bits, sparse_package
from edgeupdate.updates.context import decode_context, encode_context
from edgeupdate.updates.entropy import decode_int8_symbols, empirical_entropy_bits, encode_int8_symbols


@settings(max_examples=200, deadline=None)
@given(symbols=st.lists(st.integers(-127, 127), max_size=600))
def test_int8_symbols_roundtrip_exactly(symbols: list[int]) -> None:
    q = np.array(symbols, dtype=np.int8)
    assert np.array_equal(decode_int8_symbols(encode_int8_symbols(q), q.size), q)


@pytest.mark.parametrize("scale", [0.7, 4.0, 30.0])
def test_adaptive_values_code_near_their_empirical_entropy(scale: float) -> None:
    rng = np.random.default_rng(7)
    q = np.clip(np.rint(rng.laplace(0, scale, 50_000)), -127, 127).astype(np.int8)
    bits = 8 * (len(encode_int8_symbols(q)) - 2) / q.size
    h = empirical_entropy_bits(q)
    assert h <= bits <= h + 0.05, f"{bits:.3f} bits/value vs empirical entropy {h:.3f}"


def test_bimodal_values_far_below_8_bits() -> None:
    """Top-|Δ| selections leave few large symbols of both signs: the adaptive model learns that shape."""
    rng = np.random.default_rng(3)
    q = (rng.integers(90, 128, 3000) * rng.choice([-1, 1], 3000)).astype(np.int8)
    bits = 8 * len(encode_int8_symbols(q)) / q.size
    assert bits < empirical_entropy_bits(q) + 0.3 and bits < 6.5


@pytest.mark.parametrize("shape", [(7,), (5, 9), (4, 3, 3, 3), (1, 40), (40, 1), (3, 0), (0,)])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.4, 1.0])
def test_context_positions_roundtrip_for_every_shape(shape: tuple[int, ...], density: float) -> None:
    numel = math.prod(shape)
    rng = np.random.default_rng(numel)
    positions = np.flatnonzero(rng.random(numel) < density).astype(np.int64)
    used, blob, params = encode_positions(positions, numel, "context", shape)
    assert used == "context"
    assert np.array_equal(decode_positions(blob, numel, positions.size, used, params, shape), positions)


def _rank_one_mask(shape: tuple[int, int], k: float, seed: int = 0) -> np.ndarray:
    """Top-k of a noisy rank-1 score u_r·v_c (hot neurons × hot inputs, 30 % dead inputs), like DPU's masks."""
    rng = np.random.default_rng(seed)
    u = rng.lognormal(0, 1.5, size=(shape[0], 1))
    v = rng.lognormal(0, 1.5, size=(1, shape[1]))
    v[:, rng.random(shape[1]) < 0.3] = 0.0
    s = (u * v * rng.lognormal(0, 0.5, size=shape)).reshape(-1)
    n = int(k * s.size)
    return np.sort(np.argpartition(-s, n)[:n]).astype(np.int64)


@pytest.mark.parametrize("k", [0.001, 0.005, 0.05])
@pytest.mark.parametrize("shape", [(512, 784), (512, 512)])
def test_context_beats_golomb_and_the_iid_bound_on_clustered_masks(k: float, shape: tuple[int, int]) -> None:
    pos = _rank_one_mask(shape, k)
    numel = math.prod(shape)
    context = len(encode_positions(pos, numel, "context", shape)[1])
    golomb = len(encode_positions(pos, numel, "golomb")[1])
    bound_bytes = entropy_bound_bits(pos.size / numel) * numel / 8
    assert context < 0.6 * golomb and context < 0.6 * bound_bytes, (context, golomb, bound_bytes)
    assert encode_positions(pos, numel, "auto", shape)[0] == "context"


def test_auto_is_never_larger_than_any_coding_on_dpu_style_masks() -> None:
    masks = _dpu_style_mask(0.005)
    shapes = {n: tuple(t.shape) for n, t in build_model("mlp", (1, 28, 28), 10, seed=0).state_dict().items()}
    for name, pos in masks.items():
        numel = math.prod(shapes[name])
        auto = len(encode_positions(pos, numel, "auto", shapes[name])[1])
        for coding in ("bitmap", "varint", "golomb", "context"):
            assert auto <= len(encode_positions(pos, numel, coding, shapes[name])[1])


def _structured_target(base: dict) -> dict:
    return clustered(perturbed(base, 0.0), rows=3)


def test_entropy_package_is_lossless_over_the_int8_symbols_and_smaller() -> None:
    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(64, 100, generator=g), "b": torch.randn(64, generator=g)}
    target = {k: v.clone() for k, v in base.items()}
    idx = torch.randperm(6400, generator=g)[:600]
    target["w"].view(-1)[idx] += torch.randn(600, generator=g).sign() * (0.5 + 0.1 * torch.rand(600, generator=g))
    target["b"] += 0.01 * torch.randn(64, generator=g)
    kw = dict(method="dpu", target_version=1, base_version=0, precision="int8")
    raw = sparse_package(base, target, coding="golomb", **kw)
    ent = sparse_package(base, target, coding="golomb", value_coding="entropy", **kw)
    packing = {t.name: t.values_packing for t in ent.header.tensors}
    assert packing["w"] == "entropy"  # the 64 Gaussian bias deltas may stay plain: whichever is smaller
    assert ent.header.target_hash == raw.header.target_hash  # same symbols, same result, bit for bit
    decoded = UpdatePackage.decode(ent.encode())
    assert decoded.header == ent.header
    out = decoded.apply(base)
    assert all(torch.equal(out[k], raw.apply(base)[k]) for k in base)
    assert ent.byte_breakdown()["values_bytes"] < 0.8 * raw.byte_breakdown()["values_bytes"]  # symbols: about 5.4 bits
    row = next(r for r in decoded.describe()["tensors"] if r["name"] == "w")
    assert row["value_entropy_bits"] <= row["value_bits_per_value"] < 8


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int8-channel"])
def test_value_coding_entropy_roundtrips_at_every_precision(precision: str) -> None:
    base = small_state()
    target = _structured_target(base)
    pkg = sparse_package(base, target, method="dpu", target_version=1, base_version=0, precision=precision,
                         coding="auto", value_coding="entropy")
    out = UpdatePackage.decode(pkg.encode()).apply(base)
    plain = sparse_package(base, target, method="dpu", target_version=1, base_version=0, precision=precision, coding="auto")
    assert all(torch.equal(out[k], plain.apply(base)[k]) for k in base)
    assert len(pkg.encode()) <= len(plain.encode())
    if precision.startswith("int8"):
        assert "entropy" in {t.values_packing for t in pkg.header.tensors}


def test_unknown_value_coding_is_rejected() -> None:
    base = small_state()
    with pytest.raises(ValueError, match="value coding"):
        sparse_package(base, perturbed(base, 0.1), method="x", target_version=1, value_coding="huffman")


def _assert_rejected_quickly(fn) -> None:
    t0 = time.perf_counter()
    try:
        fn()
    except FormatError as exc:
        assert "\n" not in str(exc)
    assert time.perf_counter() - t0 < 5.0


def test_malformed_value_streams_raise_format_error() -> None:
    rng = np.random.default_rng(11)
    q = np.clip(np.rint(rng.laplace(0, 6, 800)), -127, 127).astype(np.int8)
    good = encode_int8_symbols(q)
    # (an ANS stream cannot detect every corruption: the package's checksum and target hash do)
    for cut in (0, 1, 5, len(good) - 4, len(good) - 1):
        with pytest.raises(FormatError):
            decode_int8_symbols(good[:cut], q.size)
    with pytest.raises(FormatError):
        decode_int8_symbols(bytes([200, 0]) + good[2:], q.size)  # unknown model byte
    with pytest.raises(FormatError):
        decode_int8_symbols(good + b"\x01\x00\x00\x00", q.size)  # words left over
    for i in range(300):
        bad = bytearray(good)
        bad[int(rng.integers(0, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        _assert_rejected_quickly(lambda: decode_int8_symbols(bytes(bad), int(rng.integers(0, 2000))))


def test_value_stream_length_bounds_the_symbol_count() -> None:
    from edgeupdate.updates.entropy import MAX_SYMBOLS_PER_BYTE, pack_entropy, unpack_entropy

    zeros = np.zeros(100_000, dtype=np.int8)
    plain = np.float32(0.5).tobytes() + zeros.tobytes()
    assert pack_entropy(plain, "int8", 1) is None  # would code 100 000 symbols in a few bytes: stays plain
    small = np.float32(0.5).tobytes() + encode_int8_symbols(np.ones(3, dtype=np.int8))
    with pytest.raises(FormatError, match="per byte"):
        unpack_entropy(small, "int8", MAX_SYMBOLS_PER_BYTE * (len(small) - 4) + 1, 1)


def test_malformed_context_streams_raise_format_error() -> None:
    shape = (32, 48)
    rng = np.random.default_rng(5)
    positions = np.flatnonzero(rng.random(32 * 48) < 0.05)
    good = encode_context(positions, shape)
    with pytest.raises(FormatError, match="sum to"):
        decode_context(good, shape, positions.size + 1)
    with pytest.raises(FormatError, match="variant"):
        decode_context(bytes([99]) + good[1:], shape, positions.size)
    for cut in (0, 1, 3, len(good) - 1):
        with pytest.raises(FormatError):
            decode_context(good[:cut], shape, positions.size)
    for _ in range(300):
        bad = bytearray(good)
        bad[int(rng.integers(0, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        _assert_rejected_quickly(lambda: decode_context(bytes(bad), shape, int(rng.integers(0, 200))))
    # a header claiming a huge tensor with a tiny stream fails fast, without a huge allocation
    _assert_rejected_quickly(lambda: decode_context(good, (1 << 13, 1 << 13), positions.size))
    with pytest.raises(FormatError, match="lines in a"):
        decode_context(bytes([4, 0, 1, 0, 0, 0]), (1 << 26,), 0)  # 2^26 one-weight lines from 4 bytes


def test_auto_skips_context_outside_its_bounds() -> None:
    numel = 1 << 17  # a 1-d tensor: one line too long, or 2^17 one-weight lines in a tiny stream
    used, blob, params = encode_positions(np.array([], dtype=np.int64), numel, "auto", (numel,))
    assert used != "context"
    assert decode_positions(blob, numel, 0, used, params, (numel,)).size == 0


def test_dense_names_go_as_deltas_at_the_dense_step_when_smaller() -> None:
    g = torch.Generator().manual_seed(4)
    base = {"w": torch.randn(32, 50, generator=g), "b": torch.randn(256, generator=g)}
    target = {"w": base["w"].clone(), "b": base["b"] + 1e-3 * torch.randn(256, generator=g)}
    target["w"][0, :5] += 0.3
    kw = dict(method="dpu", target_version=1, base_version=0, precision="int8", coding="auto", dense_names=["b"])
    raw = sparse_package(base, target, **kw)
    ent = sparse_package(base, target, value_coding="entropy", **kw)
    rows = {t.name: t for t in ent.header.tensors}
    assert rows["b"].kind == "sparse" and rows["b"].mode == "add"
    assert rows["b"].body_bytes < 0.3 * next(t for t in raw.header.tensors if t.name == "b").body_bytes
    step = float(target["b"].abs().max()) / 127  # the dense int8 tensor's step: the same error bound
    out = UpdatePackage.decode(ent.encode()).apply(base)
    assert float((out["b"] - target["b"]).abs().max()) <= step / 2 * (1 + 1e-5)
    unchanged = sparse_package(base, {"w": target["w"], "b": base["b"].clone()}, value_coding="entropy", **kw)
    assert "b" not in {t.name for t in unchanged.header.tensors}  # an unchanged dense tensor is not sent
