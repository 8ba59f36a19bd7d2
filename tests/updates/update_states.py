"""Shared small states for the update-package tests."""

from __future__ import annotations

import torch

from edgeupdate.updates import StateDict


def small_state(seed: int = 0) -> StateDict:
    """A conv layer, an FC layer, biases, a 0-d float, a 0-d int buffer and an empty tensor."""
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(4, generator=g),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "scale": torch.tensor(0.25),
        "fc.weight": torch.randn(10, 36, generator=g),
        "fc.bias": torch.randn(10, generator=g),
        "empty": torch.zeros(0, 3),
    }


def perturbed(state: StateDict, fraction: float, seed: int = 1) -> StateDict:
    """A copy with about ``fraction`` of every float tensor's entries changed (at least one where possible)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in state.items():
        t = t.clone()
        if t.dtype.is_floating_point and t.numel():
            flat = t.view(-1)
            mask = torch.rand(flat.shape, generator=g) < fraction
            mask[int(torch.randint(flat.numel(), (1,), generator=g))] = True
            flat[mask] += torch.randn(int(mask.sum()), generator=g) * 0.1
        elif t.numel():
            t += 1
        out[name] = t
    return out


def clone_state(state: StateDict) -> StateDict:
    return {k: v.clone() for k, v in state.items()}


def clustered(state: StateDict, rows: int = 2, step: float = 0.05, seed: int = 2) -> StateDict:
    """A copy in which ``rows`` output channels of every ≥2-d float tensor change by ±``step``,
    at the input positions that the first such row changes (a DPU-like row × column cluster)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in state.items():
        t = t.clone()
        if t.dtype.is_floating_point and t.dim() >= 2 and t.numel():
            m = t.reshape(t.shape[0], -1)
            cols = torch.randperm(m.shape[1], generator=g)[: max(1, m.shape[1] // 3)]
            for r in torch.randperm(m.shape[0], generator=g)[:rows].tolist():
                sign = torch.where(torch.rand(cols.numel(), generator=g) < 0.5, -1.0, 1.0)
                m[r, cols] += step * sign
        out[name] = t
    return out
