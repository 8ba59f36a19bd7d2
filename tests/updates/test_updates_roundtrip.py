"""Round trips for every body kind × precision × coding, including empty, all-changed and 0-d tensors."""

from __future__ import annotations

import pytest
import torch

from update_states import clone_state, perturbed, small_state
from edgeupdate.updates import (
    LayerFactors,
    UpdatePackage,
    dense_package,
    factor_package,
    initial_factors,
    reconstitute,
    seeded_package,
    sparse_package,
    state_hash,
)

CODINGS = ["bitmap", "varint", "golomb", "context", "auto"]
PRECISIONS = ["fp32", "fp16", "int8", "int8-channel"]
# loose per-precision tolerance on the applied weights vs the intended target (values ~N(0, 1))
TOL = {"fp32": 0.0, "fp16": 2e-3, "int8": 0.05, "int8-channel": 0.05}


def _roundtrip(pkg: UpdatePackage, base: dict) -> dict:
    decoded = UpdatePackage.decode(pkg.encode())
    assert decoded.header == pkg.header
    out = decoded.apply(base)
    assert state_hash(out) == pkg.header.target_hash
    assert state_hash(out) == state_hash(pkg.apply(base))
    return out


def _assert_close(out: dict, target: dict, precision: str) -> None:
    assert set(out) == set(target)
    for name in target:
        assert out[name].dtype == target[name].dtype and out[name].shape == target[name].shape
        if precision == "fp32" or not target[name].dtype.is_floating_point:
            assert torch.equal(out[name], target[name]), name
        else:
            assert torch.allclose(out[name], target[name], atol=TOL[precision], rtol=0), name


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("fraction", [0.1, 1.0], ids=["partial", "all-changed"])
def test_sparse_roundtrip_against_base(coding: str, precision: str, fraction: float) -> None:
    base = small_state()
    target = perturbed(base, fraction)
    pkg = sparse_package(base, target, method="dpu", target_version=2, base_version=1,
                         precision=precision, coding=coding)
    out = _roundtrip(pkg, base)
    _assert_close(out, target, precision)
    if precision == "fp32":
        assert state_hash(out) == state_hash(target)


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_sparse_from_zero_base_builds_whole_model(coding: str, precision: str) -> None:
    pruned = small_state()
    pruned["fc.weight"][pruned["fc.weight"].abs() < 1.0] = 0.0
    pruned["conv.bias"].zero_()  # an all-zero tensor must still arrive
    pkg = sparse_package(None, pruned, method="dpu-prune", target_version=0, precision=precision, coding=coding)
    assert pkg.header.base_hash is None
    device_state = {"stale.tensor": torch.ones(3)}  # replaced wholesale: the package is complete
    out = _roundtrip(pkg, device_state)
    _assert_close(out, pruned, precision)


@pytest.mark.parametrize("coding", CODINGS)
def test_empty_update_is_header_only_and_reproduces_base(coding: str) -> None:
    base = small_state()
    pkg = sparse_package(base, clone_state(base), method="dpu", target_version=2, base_version=1, coding=coding)
    assert pkg.header.tensors == ()
    assert pkg.byte_breakdown()["positions_bytes"] == pkg.byte_breakdown()["values_bytes"] == 0
    out = _roundtrip(pkg, base)
    assert state_hash(out) == state_hash(base)


def test_sparse_with_dense_names_sends_those_tensors_whole() -> None:
    base = small_state()
    target = perturbed(base, 0.05)
    pkg = sparse_package(base, target, method="dpu", target_version=2, base_version=1,
                         dense_names=["conv.bias", "scale"])
    kinds = {t.name: t.kind for t in pkg.header.tensors}
    assert kinds["conv.bias"] == kinds["scale"] == "dense" and kinds["fc.weight"] == "sparse"
    assert state_hash(_roundtrip(pkg, base)) == state_hash(target)


def test_scalar_and_integer_tensors_roundtrip_exactly_at_every_precision() -> None:
    base = {"s": torch.tensor(1.5), "n": torch.tensor(3, dtype=torch.int64), "h": torch.tensor([1.0, 2.0], dtype=torch.float16)}
    target = {"s": torch.tensor(-2.0), "n": torch.tensor(4, dtype=torch.int64), "h": torch.tensor([1.0, 3.0], dtype=torch.float16)}
    for precision in PRECISIONS:
        pkg = sparse_package(base, target, method="m", target_version=1, base_version=0, precision=precision)
        out = _roundtrip(pkg, base)
        assert out["n"].item() == 4 and out["n"].dtype == torch.int64
        assert out["s"].shape == () and abs(out["s"].item() + 2.0) <= 2.0 / 127 + 1e-6


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("bound", [False, True], ids=["unbound", "bound"])
def test_dense_roundtrip(precision: str, bound: bool) -> None:
    base = small_state()
    target = perturbed(base, 0.5)
    pkg = dense_package(target, method="full", target_version=3, base=base if bound else None,
                        base_version=2 if bound else None, precision=precision)
    assert (pkg.header.base_hash is not None) == bound
    _assert_close(_roundtrip(pkg, base), target, precision)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("rule", ["ka", "ml", "lra", "lru"])
def test_factor_roundtrip_matches_server_simulation(rule: str, precision: str) -> None:
    base = small_state()
    g = torch.Generator().manual_seed(3)
    factors, target = {}, clone_state(base)
    for name in ("conv.weight", "fc.weight"):
        f = {k: (v + 0.01 * torch.randn(v.shape, generator=g, dtype=torch.float64)).float()
             for k, v in initial_factors(rule, base[name], rank=2, seed=11).items()}
        params = {"seed": 11} if rule == "lru" else {}
        factors[name] = LayerFactors(rule, f, params)
    target["fc.bias"] = base["fc.bias"] + 1.0
    pkg = factor_package(base, factors, {"fc.bias": target["fc.bias"]}, method=rule, target_version=2,
                         base_version=1, precision=precision)
    out = _roundtrip(pkg, base)
    if precision == "fp32":
        for name, lf in factors.items():
            expected = reconstitute(name, rule, base[name], lf.tensors, lf.params)
            assert torch.equal(out[name], expected)
        assert torch.equal(out["fc.bias"], target["fc.bias"])
    assert torch.equal(out["conv.bias"], base["conv.bias"])  # not in the package: copied unchanged


@pytest.mark.parametrize("precision", PRECISIONS)
def test_seeded_mask_roundtrip_sends_no_positions(precision: str) -> None:
    base = small_state()
    target = perturbed(base, 1.0)
    pkg = seeded_package(base, generator="mask", seed=5, params={"p": 0.3},
                         values={"fc.weight": target["fc.weight"], "conv.weight": target["conv.weight"]},
                         dense={"fc.bias": target["fc.bias"]}, method="rm", target_version=2, base_version=1,
                         precision=precision)
    assert pkg.byte_breakdown()["positions_bytes"] == 0
    out = _roundtrip(pkg, base)
    from edgeupdate.updates import seeded_mask

    mask = seeded_mask(5, "fc.weight", base["fc.weight"].shape, 0.3)
    assert 0 < int(mask.sum()) < mask.numel()
    assert torch.equal(out["fc.weight"][~mask], base["fc.weight"][~mask])
    assert torch.allclose(out["fc.weight"][mask], target["fc.weight"][mask], atol=TOL[precision], rtol=0)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_seeded_init_regenerates_model_then_applies_sparse_values(precision: str) -> None:
    from edgeupdate.models.zoo import build_model
    from edgeupdate.updates import zoo_initializer_name

    name = zoo_initializer_name("mlp", (1, 4, 4), 3, hidden=(8,))
    init = {k: v.detach().clone() for k, v in build_model("mlp", (1, 4, 4), 3, 42, hidden=(8,)).state_dict().items()}
    device = {k: torch.zeros_like(v) for k, v in init.items()}  # whatever the device held before
    target = perturbed(init, 0.2, seed=9)
    pkg = seeded_package(device, generator="init", seed=42, params={"initializer": name},
                         values={k: target[k] for k in ("1.weight", "3.weight")},
                         dense={"1.bias": target["1.bias"]}, method="dpu-reinit", target_version=5,
                         base_version=4, precision=precision)
    out = _roundtrip(pkg, device)
    assert torch.equal(out["3.bias"], init["3.bias"])  # regenerated from the seed, never sent
    _assert_close({k: out[k] for k in ("1.weight", "3.weight", "1.bias")},
                  {k: target[k] for k in ("1.weight", "3.weight", "1.bias")}, precision)


def test_builders_are_deterministic() -> None:
    base = small_state()
    target = perturbed(base, 0.2)
    a = sparse_package(base, target, method="dpu", target_version=2, base_version=1, precision="int8-channel")
    b = sparse_package(clone_state(base), clone_state(target), method="dpu", target_version=2, base_version=1,
                       precision="int8-channel")
    assert a.encode() == b.encode()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_zstd_value_packing_roundtrips_and_never_grows(precision: str) -> None:
    base = small_state()
    target = perturbed(base, 0.5)
    plain = sparse_package(base, target, method="m", target_version=1, base_version=0, precision=precision,
                           dense_names=["fc.bias"])
    packed = sparse_package(base, target, method="m", target_version=1, base_version=0, precision=precision,
                            dense_names=["fc.bias"], value_compression="zstd")
    assert packed.header.target_hash == plain.header.target_hash  # lossless packing: same weights
    assert len(packed.encode()) <= len(plain.encode())
    for a, b in zip(plain.header.tensors, packed.header.tensors):
        assert (b.values_bytes < a.values_bytes) == (b.values_packing == "zstd")
    _assert_close(_roundtrip(packed, base), target, precision)
    full = dense_package(target, method="full", target_version=1, precision=precision, value_compression="zstd")
    _assert_close(_roundtrip(full, {}), target, precision)


def test_zstd_packing_shrinks_structured_values() -> None:
    base = {"w": torch.zeros(64, 64)}
    target = {"w": torch.full((64, 64), 0.001)}  # identical values: highly compressible
    pkg = sparse_package(base, target, method="m", target_version=1, base_version=0, value_compression="zstd")
    (info,) = pkg.header.tensors
    assert info.values_packing == "zstd" and info.values_bytes < 4 * 64 * 64 // 10
    assert torch.equal(UpdatePackage.decode(pkg.encode()).apply(base)["w"], target["w"])
