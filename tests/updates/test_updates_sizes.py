"""Exact byte counts: what the breakdown says is what encode() produces."""

from __future__ import annotations

import math

import pytest
import torch

from update_states import perturbed, small_state
from edgeupdate.updates import (
    Ed25519Signer,
    HmacKey,
    UpdatePackage,
    dense_package,
    sparse_package,
)


def _float_state() -> dict:
    return {k: v for k, v in small_state().items() if v.dtype == torch.float32}


def test_fp16_values_are_half_of_fp32_values() -> None:
    base = _float_state()
    target = perturbed(base, 0.2)
    fp32 = sparse_package(base, target, method="m", target_version=1, base_version=0, precision="fp32")
    fp16 = sparse_package(base, target, method="m", target_version=1, base_version=0, precision="fp16")
    assert fp32.byte_breakdown()["values_bytes"] > 0
    assert fp16.byte_breakdown()["values_bytes"] * 2 == fp32.byte_breakdown()["values_bytes"]
    assert fp16.byte_breakdown()["positions_bytes"] == fp32.byte_breakdown()["positions_bytes"]


def test_fp32_values_are_four_bytes_per_changed_weight() -> None:
    base = _float_state()
    target = perturbed(base, 0.2)
    pkg = sparse_package(base, target, method="m", target_version=1, base_version=0)
    changed = sum(int((base[k] != target[k]).sum()) for k in base)
    assert pkg.byte_breakdown()["values_bytes"] == 4 * changed


def test_bitmap_is_ceil_numel_over_8_bytes_per_tensor() -> None:
    base = _float_state()
    target = perturbed(base, 0.3)
    pkg = sparse_package(base, target, method="m", target_version=1, base_version=0, coding="bitmap")
    assert pkg.header.tensors
    for t in pkg.header.tensors:
        assert t.positions_bytes == math.ceil(t.numel / 8), t.name


def test_int8_sizes_per_tensor_and_per_channel() -> None:
    base = _float_state()
    target = perturbed(base, 1.0)
    per_tensor = sparse_package(base, target, method="m", target_version=1, base_version=0, precision="int8")
    per_channel = sparse_package(base, target, method="m", target_version=1, base_version=0, precision="int8-channel")
    for t in per_tensor.header.tensors:
        assert t.values_bytes == t.count + 4, t.name
    for t in per_channel.header.tensors:
        channels = t.shape[0] if len(t.shape) >= 2 else 1  # all channels changed (fraction 1.0)
        assert t.values_bytes == t.count + 4 * channels, t.name


def test_dense_fp32_is_four_bytes_per_weight() -> None:
    target = _float_state()
    pkg = dense_package(target, method="full", target_version=0)
    assert pkg.byte_breakdown()["dense_bytes"] == 4 * sum(t.numel() for t in target.values())
    half = dense_package(target, method="full", target_version=0, precision="fp16")
    assert half.byte_breakdown()["dense_bytes"] * 2 == pkg.byte_breakdown()["dense_bytes"]


@pytest.mark.parametrize("key", [None, HmacKey(b"secret"), Ed25519Signer(b"\x01" * 32)], ids=["unsigned", "hmac", "ed25519"])
def test_breakdown_total_equals_encoded_length(key) -> None:
    base = small_state()
    target = perturbed(base, 0.1)
    pkg = sparse_package(base, target, method="m", target_version=1, base_version=0, dense_names=["fc.bias"])
    data = pkg.encode(key)
    bd = pkg.byte_breakdown(key)
    assert bd["total_bytes"] == len(data)
    assert bd["total_bytes"] == sum(v for k, v in bd.items() if k != "total_bytes")
    assert bd["signature_bytes"] == (0 if key is None else key.signature_size)
    assert UpdatePackage.decode(data).byte_breakdown()["total_bytes"] == len(data)
