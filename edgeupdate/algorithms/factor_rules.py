"""Weight re-parameterisations of the KA family (Chen et al. 2022, Eq. 4–16) as pure functions.

Each *rule* maps a layer's current weight (as deployed on the device), the learnt factors and a few
scalar params to the layer's new weight — Algorithm 2's ``recover-weight`` step.  The server calls
the very same function to compute the state it expects the device to hold, so both sides agree to
the bit.  Everything runs in float64 inside :func:`deterministic_linalg` (one torch thread) and is
cast back to the weight's dtype at the end.

Factor names (all 2-D tensors are *o×k* or *i×k*, never transposed):

* ``ka``  (Eq. 15): ``u_aug`` o×n, ``v_aug`` i×n, ``s`` (m+n) — W = [U,U′]·diag(s′)·[V,V′]ᵀ
* ``ml``  (Eq. 13): ``l`` o×r — W = L·V[:, :r]ᵀ (R recomputed from the current weight's SVD)
* ``lra`` (Eq. 8):  ``l`` o×r, ``r`` i×r — W = L·Rᵀ (no use of the current weight)
* ``lru`` ([33]):   ``l`` o×r — W = W_old + L·R, R = :func:`random_right_factor` (seed, layer)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch

from edgeupdate.seeding import torch_generator

Rule = Callable[[torch.Tensor, Mapping[str, torch.Tensor], Mapping[str, object]], torch.Tensor]


@contextlib.contextmanager
def deterministic_linalg() -> Iterator[None]:
    """Run the block with one torch thread so reductions (SVD, matmul) are reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The o×i view of a conv/FC weight (conv: o × c·kh·kw)."""
    if weight.dim() < 2:
        raise ValueError(f"a factorised weight needs ≥ 2 dims, got shape {tuple(weight.shape)}")
    return weight.reshape(weight.shape[0], -1)


def svd_factors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD (Eq. 4) of the o×i view of ``weight`` in float64: U (o×m), s (m), V (i×m)."""
    with deterministic_linalg():
        u, s, vh = torch.linalg.svd(as_matrix(weight.detach()).to(torch.float64), full_matrices=False)
    return u, s, vh.transpose(0, 1).contiguous()


def random_right_factor(seed: int, name: str, r: int, i: int) -> torch.Tensor:
    """LRU's fixed random R (r×i, float64), N(0, 1/i), regenerated from (seed, layer name)."""
    gen = torch_generator(seed, "lru", name)
    return torch.randn(r, i, generator=gen, dtype=torch.float64) / float(i) ** 0.5


def _finish(new: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return new.reshape(like.shape).to(like.dtype)


def ka_rule(current: torch.Tensor, factors: Mapping[str, torch.Tensor], params: Mapping[str, object]) -> torch.Tensor:
    """Eq. 15: [U,U′]·diag(s′)·[V,V′]ᵀ with U, V from the current weight's SVD."""
    u, _, v = svd_factors(current)
    m = u.shape[1]
    s_new = factors["s"].to(torch.float64)
    u_aug = factors["u_aug"].to(torch.float64)
    v_aug = factors["v_aug"].to(torch.float64)
    with deterministic_linalg():
        new = (u * s_new[:m]) @ v.T + (u_aug * s_new[m:]) @ v_aug.T
    return _finish(new, current)


def ml_rule(current: torch.Tensor, factors: Mapping[str, torch.Tensor], params: Mapping[str, object]) -> torch.Tensor:
    """Eq. 13: L·R with R = V[:, :r]ᵀ frozen from the current weight's SVD."""
    _, _, v = svd_factors(current)
    left = factors["l"].to(torch.float64)
    with deterministic_linalg():
        new = left @ v[:, : left.shape[1]].T
    return _finish(new, current)


def lra_rule(current: torch.Tensor, factors: Mapping[str, torch.Tensor], params: Mapping[str, object]) -> torch.Tensor:
    """Eq. 8: L·R with both factors sent (R stored as i×r)."""
    with deterministic_linalg():
        new = factors["l"].to(torch.float64) @ factors["r"].to(torch.float64).T
    return _finish(new, current)


def lru_rule(current: torch.Tensor, factors: Mapping[str, torch.Tensor], params: Mapping[str, object]) -> torch.Tensor:
    """Low-rank update [33]: W_old + L·R, R regenerated from ``params['seed']`` and the layer name."""
    left = factors["l"].to(torch.float64)
    w = as_matrix(current).to(torch.float64)
    right = random_right_factor(int(params["seed"]), str(params["name"]), left.shape[1], w.shape[1])
    with deterministic_linalg():
        new = w + left @ right
    return _finish(new, current)


RULES: dict[str, Rule] = {"ka": ka_rule, "ml": ml_rule, "lra": lra_rule, "lru": lru_rule}


def seeded_mask(shapes: Mapping[str, torch.Size], seed: int, proportion: float) -> dict[str, torch.Tensor]:
    """RM's mask: exactly round(P·N) of the N entries of ``shapes`` (in the given order), from a seed."""
    sizes = [int(torch.Size(s).numel()) for s in shapes.values()]
    total = sum(sizes)
    k = int(round(proportion * total))
    flat = torch.zeros(total, dtype=torch.bool)
    flat[torch.randperm(total, generator=torch_generator(seed, "rm-mask"))[:k]] = True
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for (name, shape), size in zip(shapes.items(), sizes):
        out[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    return out
