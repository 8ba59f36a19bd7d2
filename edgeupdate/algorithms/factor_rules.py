"""INTERIM local mirror of ``edgeupdate.updates.reconstitution`` / ``seeded`` (branch ``updates``).

Same conventions as the agreed device-side API so the switch is an import change: factor names
``ka``: U (o×n), V (i×n), s (m+n); ``ml``: L (o×r); ``lra``: L (o×r), R (r×i); ``lru``: L (o×r)
with params ``seed`` and ``layer``.  Everything in float64 on one torch thread; SVD signs fixed so
each column of U has its largest-magnitude entry positive.  Delete once ``updates`` is merged.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch

from edgeupdate.seeding import numpy_rng, torch_generator

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
    """The o×i float64 view of a conv/FC weight (conv: o × c·kh·kw)."""
    if weight.dim() < 2:
        raise ValueError(f"a factorised weight needs ≥ 2 dims, got shape {tuple(weight.shape)}")
    return weight.detach().to(torch.float64).reshape(weight.shape[0], -1)


def svd_factors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD (Eq. 4) in float64: U (o×m), s (m), V (i×m), signs fixed by U's largest entries."""
    with deterministic_linalg():
        u, s, vh = torch.linalg.svd(as_matrix(weight), full_matrices=False)
        v = vh.T
        if u.shape[1]:
            pick = u.abs().argmax(dim=0)
            signs = torch.sign(u[pick, torch.arange(u.shape[1])])
            signs[signs == 0] = 1.0
            u, v = u * signs, v * signs
    return u.contiguous(), s.contiguous(), v.contiguous()


def random_right_factor(seed: int, name: str, r: int, i: int) -> torch.Tensor:
    """LRU's fixed random R (r×i, float64), N(0, 1/i), regenerated from (seed, layer name)."""
    gen = torch_generator(seed, "lru", name)
    return torch.randn(r, i, generator=gen, dtype=torch.float64) / math.sqrt(max(i, 1))


def _finish(new: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return new.reshape(like.shape).to(like.dtype).contiguous()


def ka_rule(current: torch.Tensor, factors: Mapping[str, torch.Tensor], params: Mapping[str, object]) -> torch.Tensor:
    """Eq. 15: [U,U′]·diag(s′)·[V,V′]ᵀ with U, V from the current weight's SVD."""
    u, _, v = svd_factors(current)
    with deterministic_linalg():
        left = torch.cat([u, factors["U"].to(torch.float64)], dim=1)
        right = torch.cat([v, factors["V"].to(torch.float64)], dim=1)
        new = (left * factors["s"].to(torch.float64)) @ right.T
    return _finish(new, current)


def ml_rule(current: torch.Tensor, factors: Mapping[str, torch.Tensor], params: Mapping[str, object]) -> torch.Tensor:
    """Eq. 13: L·R with R = V[:, :r]ᵀ frozen from the current weight's SVD."""
    _, _, v = svd_factors(current)
    left = factors["L"].to(torch.float64)
    with deterministic_linalg():
        new = left @ v[:, : left.shape[1]].T
    return _finish(new, current)


def lra_rule(current: torch.Tensor, factors: Mapping[str, torch.Tensor], params: Mapping[str, object]) -> torch.Tensor:
    """Eq. 8: L·R with both factors sent."""
    with deterministic_linalg():
        new = factors["L"].to(torch.float64) @ factors["R"].to(torch.float64)
    return _finish(new, current)


def lru_rule(current: torch.Tensor, factors: Mapping[str, torch.Tensor], params: Mapping[str, object]) -> torch.Tensor:
    """Low-rank update [33]: W_old + L·R, R regenerated from ``params['seed']`` and the layer name."""
    left = factors["L"].to(torch.float64)
    w = as_matrix(current)
    right = random_right_factor(int(params["seed"]), str(params["layer"]), left.shape[1], w.shape[1])
    with deterministic_linalg():
        new = w + left @ right
    return _finish(new, current)


RULES: dict[str, Rule] = {"ka": ka_rule, "ml": ml_rule, "lra": lra_rule, "lru": lru_rule}


def reconstitute(name: str, rule: str, current: torch.Tensor, factors: Mapping[str, torch.Tensor],
                 params: Mapping[str, object]) -> torch.Tensor:
    """Layer ``name``'s new weight: ``RULES[rule](current, factors, params + {"layer": name})``."""
    return RULES[rule](current, factors, {**params, "layer": name})


def seeded_mask(seed: int, name: str, shape: tuple[int, ...] | torch.Size, p: float) -> torch.Tensor:
    """RM's Bernoulli(p) mask for tensor ``name``, from (seed, "mask", name), in 2**20 chunks."""
    numel = math.prod(tuple(shape))
    rng = numpy_rng(seed, "mask", name)
    flat = np.concatenate([rng.random(min(1 << 20, numel - start)) < p for start in range(0, numel, 1 << 20)]
                          or [np.zeros(0, dtype=bool)])
    return torch.from_numpy(flat).reshape(tuple(shape))
