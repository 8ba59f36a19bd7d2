"""Which weights a partial update may change: contributions, exact top-k masks, rewinding.

Pure tensor functions used by :mod:`edgeupdate.algorithms.partial` (Qu thesis, chapter 5, §5.4.1):

* the global contribution ``c_global = δw^f ⊙ δw^f`` (Eq. 5.6),
* the local contribution ``c_local = −Σ_q g(w^{q−1}) ⊙ Δw^q`` (Eq. 5.9),
* their combination, each normalised by its own total over all maskable weights (Eq. 5.10 / 5.11),
* an exact global top-``count`` mask with a documented tie-break,
* RPU's random per-layer masks,
* rewinding ``w + δw^f ⊙ m`` (Algorithm 5.2, line 11).

Tensors in a "named" mapping are processed in the mapping's iteration order; callers pass
:func:`maskable_names` order (the model's ``named_parameters`` order), so the flat index of a
weight is its position in the concatenation of the flattened tensors in that order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from edgeupdate.updates import StateDict

NamedTensors = dict[str, torch.Tensor]


def maskable_names(model: nn.Module, mask_biases: bool = False) -> list[str]:
    """Names of the parameters a partial update selects weights from (model order).

    Default: every parameter with more than one dimension (conv and linear weights), as in the
    reference implementation; biases and normalisation parameters then train fully and are sent
    dense. ``mask_biases=True`` puts every trainable parameter in the mask. Buffers (BatchNorm
    running statistics) are never maskable: they are not trained, so they are always sent dense.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad and (mask_biases or p.dim() > 1)]
    if not names:
        raise ValueError("model has no maskable parameters (no trainable weight with more than one dimension)")
    return names


def update_count(k: float, total: int) -> int:
    """Number of weights an updating ratio ``k`` allows: ``floor(k·I)``, at least 1 (Eq. 5.2)."""
    if not 0.0 < k <= 1.0:
        raise ValueError(f"updating ratio k must be in (0, 1], got {k!r}")
    if total < 1:
        raise ValueError(f"number of maskable weights must be positive, got {total}")
    # round() guards against k·I landing a hair below an integer (0.29·100 = 28.999999999999996).
    return max(1, math.floor(round(k * total, 6)))


def global_contribution(full: StateDict, start: StateDict, names: Iterable[str]) -> NamedTensors:
    """``c_global = δw^f ⊙ δw^f`` with ``δw^f = w^f − w`` (Eq. 5.6), in float64."""
    out: NamedTensors = {}
    for name in names:
        delta = full[name].detach().double() - start[name].detach().double().to(full[name].device)
        out[name] = delta * delta
    return out


def _normalised(c: Mapping[str, torch.Tensor], what: str) -> NamedTensors:
    total = sum(float(t.double().sum()) for t in c.values())
    if not math.isfinite(total):
        raise ValueError(f"{what} contribution has a non-finite total ({total})")
    if total <= 0.0:
        # A non-positive total (e.g. no training step, or training that increased the loss) would
        # flip or destroy the ranking; fall back to the total magnitude, which keeps the order.
        total = sum(float(t.double().abs().sum()) for t in c.values())
    if total == 0.0:
        return {n: torch.zeros_like(t, dtype=torch.float64) for n, t in c.items()}
    return {n: t.double() / total for n, t in c.items()}


def combined_contribution(global_c: Mapping[str, torch.Tensor], local_c: Mapping[str, torch.Tensor],
                          lam: float = 0.5) -> NamedTensors:
    """``c = λ·c_global/(1ᵀc_global) + (1−λ)·c_local/(1ᵀc_local)`` (Eq. 5.11; λ = 0.5 ∝ Eq. 5.10).

    Each contribution is normalised by its own sum over *all* maskable weights (all layers
    together), in float64. ``λ = 1`` ranks by the global contribution only (GCPU, Algorithm 5.1),
    ``λ = 0`` by the local contribution only (LCPU). If a total is not positive, the total of the
    absolute values is used instead so the ranking direction is kept.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    if list(global_c) != list(local_c):
        raise ValueError("global and local contributions must name the same tensors in the same order")
    for name in global_c:
        if global_c[name].shape != local_c[name].shape:
            raise ValueError(f"contribution shapes differ for {name!r}: "
                             f"{tuple(global_c[name].shape)} vs {tuple(local_c[name].shape)}")
    g = _normalised(global_c, "global") if lam > 0.0 else None
    loc = _normalised(local_c, "local") if lam < 1.0 else None
    out: NamedTensors = {}
    for name in global_c:
        if g is None:
            out[name] = loc[name]  # type: ignore[index]
        elif loc is None:
            out[name] = g[name]
        else:
            out[name] = lam * g[name] + (1.0 - lam) * loc[name].to(g[name].device)
    return out


def top_k_mask(scores: Mapping[str, torch.Tensor], count: int,
               eligible: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Exactly ``count`` True entries at the largest scores across all tensors together.

    Tie-break: among equal scores at the threshold, the lower flat index wins, where the flat
    index is the position in the concatenation of the flattened tensors in the mapping's
    iteration order. ``eligible`` (optional boolean masks) restricts the choice to those entries
    (iterative rewinding); ``count`` may not exceed the number of eligible entries. Scores must not
    be NaN. Masks come back as CPU bool tensors shaped like the scores.
    """
    names = list(scores)
    if not names:
        raise ValueError("top_k_mask needs at least one score tensor")
    flat = torch.cat([scores[n].detach().reshape(-1).double().cpu() for n in names])
    if torch.isnan(flat).any():
        raise ValueError("scores contain NaN; cannot rank weights")
    if eligible is not None:
        if list(eligible) != names:
            raise ValueError("eligible masks must name the same tensors as the scores, in the same order")
        ok = torch.cat([eligible[n].detach().reshape(-1).bool().cpu() for n in names])
        flat = torch.where(ok, flat, torch.full_like(flat, -math.inf))
        available = int(ok.sum())
    else:
        ok = None
        available = flat.numel()
    if not 0 <= count <= available:
        raise ValueError(f"count must be in [0, {available}] (eligible weights), got {count}")
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    if count > 0:
        threshold = torch.topk(flat, count, largest=True, sorted=False).values.min()
        above = flat > threshold
        if ok is not None:
            above &= ok
        need = count - int(above.sum())
        at = flat == threshold
        if ok is not None:
            at &= ok
        tied = torch.nonzero(at, as_tuple=False).reshape(-1)[:need]  # ascending flat index
        chosen |= above
        chosen[tied] = True
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for n in names:
        size = scores[n].numel()
        out[n] = chosen[offset:offset + size].reshape(scores[n].shape).clone()
        offset += size
    return out


def random_layer_masks(shapes: Mapping[str, torch.Size | tuple[int, ...]], k: float,
                       generator: torch.Generator) -> dict[str, torch.Tensor]:
    """RPU (thesis §5.5.5): in every layer, ``round(k·n_l)`` positions chosen uniformly at random.

    Rounding is half-up; layers are drawn in the mapping's order from ``generator``, so the same
    generator state gives the same masks.
    """
    if not 0.0 < k <= 1.0:
        raise ValueError(f"updating ratio k must be in (0, 1], got {k!r}")
    out: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        size = int(math.prod(shape))
        chosen = min(size, math.floor(k * size + 0.5))
        mask = torch.zeros(size, dtype=torch.bool)
        mask[torch.randperm(size, generator=generator)[:chosen]] = True
        out[name] = mask.reshape(tuple(shape))
    return out


def rewind(full: StateDict, base: StateDict, masks: Mapping[str, torch.Tensor]) -> NamedTensors:
    """``w + δw^f ⊙ m`` for masked names, every other entry as in ``full`` (Alg. 5.2, line 11).

    Computed as a selection, not an addition, so it is exact: masked positions hold ``full``'s
    value bit for bit and unmasked positions ``base``'s. Returns new tensors on ``full``'s devices.
    """
    missing = [n for n in masks if n not in full or n not in base]
    if missing:
        raise KeyError(f"masked names missing from the state dicts: {', '.join(missing)}")
    out: NamedTensors = {}
    for name, value in full.items():
        if name in masks:
            mask = masks[name].to(value.device)
            if mask.shape != value.shape:
                raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}, weights {tuple(value.shape)}")
            out[name] = torch.where(mask, value.detach(), base[name].detach().to(value.device, value.dtype))
        else:
            out[name] = value.detach().clone()
    return out


def mask_count(masks: Mapping[str, torch.Tensor]) -> int:
    """Number of True entries over all masks."""
    return sum(int(m.sum()) for m in masks.values())
