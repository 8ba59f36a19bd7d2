"""Device-side reconstitution rules for factor packages (Chen et al. 2022, §3–4 and §5.1).

A Conv weight (o, c, kh, kw) is viewed as the o × (c·kh·kw) matrix W, an FC weight is o × i.
Every rule computes on the CPU in float64 inside :func:`deterministic_linalg` (one torch thread,
so the reduction order and therefore every bit of the result is the same in the server's
simulation and on the device, whatever device the inputs live on) and returns a CPU tensor of the
current weight's shape and dtype.

| rule  | factors sent            | device computes                                   | paper        |
|-------|-------------------------|---------------------------------------------------|--------------|
| ka    | U′ (o×n), V′ (i×n), s′ (m+n) | [U, U′]·diag(s′)·[V, V′]ᵀ, U,s,V = SVD(current W) | Eq. 14–16 |
| ml    | L (o×r)                 | L·R, R = V[:, :r]ᵀ of SVD(current W) (frozen)      | Eq. 12–13    |
| lra   | L (o×r), R (r×i)        | L·R                                               | Eq. 5–8      |
| lru   | R (r×i)                 | W + L·R, L random from (seed, layer name)          | §5.1, Konečný et al. |
| lru   | L (o×r)                 | W + L·R, R random from (seed, layer name)          | (``lru-out``)  |

Rule ``lru`` is one rule for both orientations: the factor the package carries is the learned one,
the other is regenerated from the seed. Chen et al.'s parameter counts (Table 1) fit the learned
input-side R; the learned output-side L is the strategy ``lru-out`` (and the FL ``lru`` upload).

The server must produce its simulated weights with :func:`reconstitute` (or the same rule
function on the same inputs) so that the package's target hash matches what the device computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch

from edgeupdate.seeding import torch_generator

Factors = Mapping[str, torch.Tensor]
RuleParams = Mapping[str, int | float | str]
Rule = Callable[[torch.Tensor, Factors, RuleParams], torch.Tensor]


@contextmanager
def deterministic_linalg() -> Iterator[None]:
    """Run the enclosed linear algebra on one torch thread (restores the previous count)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The o × i float64 matrix view of a Conv/FC weight (Chen et al. §4.1)."""
    if weight.dim() < 2:
        raise ValueError(f"a factorised weight needs at least 2 dims, got shape {tuple(weight.shape)}")
    return weight.detach().to("cpu", torch.float64).reshape(weight.shape[0], -1)


def svd_factors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD W = U·diag(s)·Vᵀ in float64 (Eq. 4), U: o×m, s: m, V: i×m, m = min(o, i).

    Sign convention: each column of U has its largest-magnitude entry positive (ties: first
    index), the matching column of V flipped with it, so the factors are a function of W alone.
    """
    w = as_matrix(weight)
    with deterministic_linalg():
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        v = vh.transpose(0, 1).contiguous()
        if u.shape[1]:
            idx = u.abs().argmax(dim=0)
            signs = torch.sign(u[idx, torch.arange(u.shape[1])])
            signs[signs == 0] = 1.0
            u = u * signs
            v = v * signs
    return u.contiguous(), s.contiguous(), v.contiguous()


def random_right_factor(seed: int, name: str, r: int, i: int) -> torch.Tensor:
    """LRU's fixed random R (r × i, float64, N(0, 1/i)) from ``(seed, "lru", name)``."""
    g = torch_generator(seed, "lru", name)
    return torch.randn(r, i, generator=g, dtype=torch.float64) / math.sqrt(max(i, 1))


def random_left_factor(seed: int, name: str, r: int, o: int) -> torch.Tensor:
    """Paper-LRU's fixed random L (o × r, float64, N(0, 1/o): unit-norm columns in expectation, so
    a step on R moves W by about as much as the same step on a full weight would) from
    ``(seed, "lru-left", name)``."""
    g = torch_generator(seed, "lru-left", name)
    return torch.randn(o, r, generator=g, dtype=torch.float64) / math.sqrt(max(o, 1))


def _factor(factors: Factors, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    if key not in factors:
        raise ValueError(f"missing factor {key!r}")
    t = factors[key].detach().to("cpu", torch.float64)
    if tuple(t.shape) != shape:
        raise ValueError(f"factor {key!r} has shape {tuple(t.shape)}, expected {shape}")
    return t


def _cols(factors: Factors, key: str) -> int:
    if key not in factors or factors[key].dim() != 2:
        raise ValueError(f"factor {key!r} must be a matrix")
    return int(factors[key].shape[1])


def _finish(matrix: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    return matrix.reshape(current.shape).to(current.dtype).contiguous()  # on CPU, whatever current's device


def rule_ka(current: torch.Tensor, factors: Factors, params: RuleParams) -> torch.Tensor:
    """KA, Eq. 15: [U, U′]·diag(s′)·[V, V′]ᵀ with U, V from the device's current weight."""
    u, _, v = svd_factors(current)
    o, m, i = u.shape[0], u.shape[1], v.shape[0]
    n = _cols(factors, "U")
    up, vp, sp = _factor(factors, "U", (o, n)), _factor(factors, "V", (i, n)), _factor(factors, "s", (m + n,))
    with deterministic_linalg():
        w = (torch.cat([u, up], dim=1) * sp) @ torch.cat([v, vp], dim=1).transpose(0, 1)
    return _finish(w, current)


def rule_ml(current: torch.Tensor, factors: Factors, params: RuleParams) -> torch.Tensor:
    """ML, Eq. 13: L·R with R = V[:, :r]ᵀ, the device's r most important base filters (frozen)."""
    _, _, v = svd_factors(current)
    r = _cols(factors, "L")
    if r > v.shape[1]:
        raise ValueError(f"ML rank {r} exceeds min(o, i) = {v.shape[1]}")
    left = _factor(factors, "L", (current.shape[0], r))
    with deterministic_linalg():
        w = left @ v[:, :r].transpose(0, 1)
    return _finish(w, current)


def rule_lra(current: torch.Tensor, factors: Factors, params: RuleParams) -> torch.Tensor:
    """LRA, Eq. 8: L·R with both factors sent."""
    o, i = as_matrix(current).shape
    r = _cols(factors, "L")
    left, right = _factor(factors, "L", (o, r)), _factor(factors, "R", (r, i))
    with deterministic_linalg():
        w = left @ right
    return _finish(w, current)


def rule_lru(current: torch.Tensor, factors: Factors, params: RuleParams) -> torch.Tensor:
    """LRU: W + L·R with exactly one factor sent; the other regenerated from (params["seed"], layer
    name): R sent (r × i, the paper's orientation) → L random; L sent (o × r, ``lru-out``) → R random."""
    w0 = as_matrix(current)
    o, i = w0.shape
    seed, layer = params.get("seed"), params.get("layer")
    if not isinstance(seed, int) or not isinstance(layer, str):
        raise ValueError("LRU needs an int 'seed' param and the layer name")
    if ("L" in factors) == ("R" in factors):
        raise ValueError("LRU needs exactly one of the factors 'L' (o×r) and 'R' (r×i)")
    if "R" in factors:
        if factors["R"].dim() != 2:
            raise ValueError("factor 'R' must be a matrix")
        r = int(factors["R"].shape[0])
        right = _factor(factors, "R", (r, i))
        left = random_left_factor(seed, layer, r, o)
    else:
        r = _cols(factors, "L")
        left = _factor(factors, "L", (o, r))
        right = random_right_factor(seed, layer, r, i)
    with deterministic_linalg():
        w = w0 + left @ right
    return _finish(w, current)


RULES: dict[str, Rule] = {"ka": rule_ka, "ml": rule_ml, "lra": rule_lra, "lru": rule_lru}


def reconstitute(name: str, rule: str, current: torch.Tensor, factors: Factors, params: RuleParams) -> torch.Tensor:
    """The new weight of layer ``name``: ``RULES[rule](current, factors, params + {"layer": name})``.

    Use this on the server to simulate exactly what the device will compute.
    """
    if rule not in RULES:
        raise ValueError(f"unknown reconstitution rule {rule!r}; expected one of {sorted(RULES)}")
    return RULES[rule](current, factors, {**params, "layer": name})


def initial_factors(rule: str, weight: torch.Tensor, rank: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Float64 factors from which refinement starts (Eq. 6 / Eq. 16), for the server.

    ka: U′ = V′ = 0 (o×n, i×n with n = ``rank``), s′ = [s, 0] → reproduces W.
    ml: L = U[:, :r]·diag(s[:r]).  lra: L = U[:, :r]·diag(s[:r]), R = V[:, :r]ᵀ.  lru: L = 0.
    """
    u, s, v = svd_factors(weight)
    o, i = u.shape[0], v.shape[0]
    if rule == "ka":
        return {"U": torch.zeros(o, rank, dtype=torch.float64), "V": torch.zeros(i, rank, dtype=torch.float64),
                "s": torch.cat([s, torch.zeros(rank, dtype=torch.float64)])}
    if rule in ("ml", "lra"):
        if rank > s.shape[0]:
            raise ValueError(f"rank {rank} exceeds min(o, i) = {s.shape[0]}")
        out = {"L": (u[:, :rank] * s[:rank]).contiguous()}
        if rule == "lra":
            out["R"] = v[:, :rank].transpose(0, 1).contiguous()
        return out
    if rule == "lru":
        return {"L": torch.zeros(o, rank, dtype=torch.float64)}
    raise ValueError(f"unknown reconstitution rule {rule!r}; expected one of {sorted(RULES)}")
