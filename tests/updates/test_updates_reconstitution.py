"""Reconstitution rules: the device reproduces the server's simulated weights bit for bit."""

from __future__ import annotations

import pytest
import torch

from edgeupdate.updates import (
    LayerFactors,
    UpdatePackage,
    deterministic_linalg,
    factor_package,
    initial_factors,
    random_left_factor,
    random_right_factor,
    reconstitute,
    state_hash,
    svd_factors,
)


def _base() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"conv.weight": torch.randn(8, 3, 3, 3, generator=g), "conv.bias": torch.randn(8, generator=g),
            "fc.weight": torch.randn(5, 8, generator=g), "fc.bias": torch.randn(5, generator=g)}


def _trained_factors(rule: str, weight: torch.Tensor, rank: int, seed: int) -> dict[str, torch.Tensor]:
    """Stand-in for server refinement: initial factors plus a seeded float32 perturbation."""
    g = torch.Generator().manual_seed(seed)
    return {k: (v + 0.05 * torch.randn(v.shape, generator=g, dtype=torch.float64)).float()
            for k, v in initial_factors(rule, weight, rank, seed=7).items()}


@pytest.mark.parametrize("rule", ["ka", "ml", "lra", "lru"])
def test_device_reproduces_server_simulation_exactly(rule: str) -> None:
    base = _base()
    params = {"seed": 7} if rule == "lru" else {}
    factors = {name: LayerFactors(rule, _trained_factors(rule, base[name], 2, i), params)
               for i, name in enumerate(("conv.weight", "fc.weight"))}
    # server side: simulate the new weights with the shared formula
    simulated = {k: v.clone() for k, v in base.items()}
    for name, lf in factors.items():
        simulated[name] = reconstitute(name, rule, base[name], lf.tensors, lf.params)
    simulated["fc.bias"] = base["fc.bias"] * 0.5
    pkg = factor_package(base, factors, {"fc.bias": simulated["fc.bias"]}, method=rule, target_version=1, base_version=0)
    assert pkg.header.target_hash == state_hash(simulated)
    # device side: only bytes cross the link
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the device's own thread setting must not matter
    try:
        device = UpdatePackage.decode(pkg.encode()).apply(base)
    finally:
        torch.set_num_threads(threads)
    assert state_hash(device) == state_hash(simulated)
    assert all(f.nbytes > 0 for t in pkg.header.tensors if t.kind == "factor" for f in t.factors)


def test_ka_formula_and_identity_start() -> None:
    w = _base()["conv.weight"]
    u, s, v = svd_factors(w)
    f = initial_factors("ka", w, rank=3)
    assert f["U"].shape == (8, 3) and f["V"].shape == (27, 3) and f["s"].shape == (11,)
    start = reconstitute("conv.weight", "ka", w, f, {})
    assert torch.allclose(start, w, atol=1e-5)  # Eq. 16: refinement starts from the current weights
    up = torch.randn(8, 3, dtype=torch.float64)
    vp = torch.randn(27, 3, dtype=torch.float64)
    sp = torch.rand(11, dtype=torch.float64)
    expected = (torch.cat([u, up], 1) @ torch.diag(sp) @ torch.cat([v, vp], 1).T).reshape(w.shape).float()
    got = reconstitute("conv.weight", "ka", w, {"U": up, "V": vp, "s": sp}, {})
    assert torch.allclose(got, expected, atol=1e-6)


def test_ml_uses_the_devices_top_r_base_filters() -> None:
    w = _base()["fc.weight"]
    _, _, v = svd_factors(w)
    left = torch.randn(5, 2, dtype=torch.float64)
    got = reconstitute("fc.weight", "ml", w, {"L": left}, {})
    assert torch.allclose(got, (left @ v[:, :2].T).float(), atol=1e-6)


def test_lru_adds_product_with_seeded_random_factor() -> None:
    w = _base()["fc.weight"]
    left = torch.randn(5, 2, dtype=torch.float64)
    r = random_right_factor(7, "fc.weight", 2, 8)
    assert torch.equal(r, random_right_factor(7, "fc.weight", 2, 8))
    assert not torch.equal(r, random_right_factor(7, "other.weight", 2, 8))
    got = reconstitute("fc.weight", "lru", w, {"L": left}, {"seed": 7})
    assert torch.allclose(got, (w.double() + left @ r).float(), atol=1e-6)


def test_lru_with_the_input_side_factor_sent_regenerates_the_output_side_one() -> None:
    """The paper's orientation: R (r × i) is learned and sent, L (o × r) comes from the seed."""
    w = _base()["conv.weight"]  # o = 8, i = 3·3·3 = 27
    right = torch.randn(2, 27, dtype=torch.float64)
    left = random_left_factor(7, "conv.weight", 2, 8)
    assert torch.equal(left, random_left_factor(7, "conv.weight", 2, 8))
    assert not torch.equal(left, random_left_factor(8, "conv.weight", 2, 8))
    got = reconstitute("conv.weight", "lru", w, {"R": right}, {"seed": 7})
    assert torch.allclose(got, (w.double().reshape(8, 27) + left @ right).reshape(w.shape).float(), atol=1e-6)


@pytest.mark.parametrize("factors", [{}, {"L": torch.zeros(8, 1), "R": torch.zeros(1, 27)}])
def test_lru_needs_exactly_one_factor(factors) -> None:
    with pytest.raises(ValueError, match="exactly one of the factors"):
        reconstitute("conv.weight", "lru", _base()["conv.weight"], factors, {"seed": 7})


def test_svd_sign_convention_is_deterministic() -> None:
    w = _base()["conv.weight"]
    u, s, v = svd_factors(w)
    assert torch.all(u[u.abs().argmax(dim=0), torch.arange(u.shape[1])] > 0)
    u2, s2, v2 = svd_factors(w.clone())
    assert torch.equal(u, u2) and torch.equal(s, s2) and torch.equal(v, v2)
    # flipping the sign of W flips V but the convention keeps U's columns positive-led
    un, sn, vn = svd_factors(-w)
    assert torch.all(un[un.abs().argmax(dim=0), torch.arange(un.shape[1])] > 0)
    assert torch.allclose(sn, s)
    assert torch.allclose((u * s) @ v.T, w.reshape(8, -1).double(), atol=1e-10)


def test_deterministic_linalg_restores_thread_count() -> None:
    before = torch.get_num_threads()
    with deterministic_linalg():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_bad_factor_shapes_are_rejected_at_build_time() -> None:
    base = _base()
    with pytest.raises(Exception, match="shape"):
        factor_package(base, {"fc.weight": LayerFactors("lra", {"L": torch.zeros(5, 2), "R": torch.zeros(3, 8)})},
                       {}, method="lra", target_version=1, base_version=0)
    with pytest.raises(ValueError, match="unknown reconstitution rule"):
        factor_package(base, {"fc.weight": LayerFactors("nope", {"L": torch.zeros(5, 2)})}, {},
                       method="x", target_version=1, base_version=0)
