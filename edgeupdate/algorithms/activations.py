"""How wide a student is (Zhao et al. §3, Eq. 1–2): activation statistics of the teacher's
prunable layers and the filters each layer keeps at a pruning threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from edgeupdate.algorithms.errors import StudentError
from edgeupdate.algorithms.filter_pruning import PruneGroup, pruning_plan


@dataclass(frozen=True)
class ActivationStats:
    """Eq. (2) per prunable layer: ``zero_fraction[i][m, j]`` = perc(a_ij^m) over the M images."""

    layers: tuple[str, ...]
    zero_fraction: tuple[torch.Tensor, ...]

    @property
    def images(self) -> int:
        return int(self.zero_fraction[0].shape[0]) if self.zero_fraction else 0


_RELUS = (F.relu, torch.relu)


def _activation_points(model: nn.Module, plan: Sequence[PruneGroup]) -> list[str]:
    """For every planned layer the module whose output is Z (after its BatchNorm), checking that a
    ReLU follows, so that a = ReLU(Z) is zero exactly where Z ≤ 0 (Eq. 1)."""
    graph = fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    nodes = {str(n.target): n for n in graph.nodes if n.op == "call_module"}
    points = []
    for group in plan:
        point = group.bn or group.conv
        users = list(nodes[point].users)
        relu = all((u.op == "call_module" and isinstance(modules[str(u.target)], nn.ReLU))
                   or (u.op == "call_function" and u.target in _RELUS) for u in users)
        if not users or not relu:
            raise StudentError(f"activation-based pruning needs a ReLU right after {point!r}")
        points.append(point)
    return points


@torch.no_grad()
def activation_zero_fractions(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> ActivationStats:
    """perc(a_ij^m) (Eq. 2) of every prunable layer of ``model`` on ``images`` (eval mode)."""
    plan = pruning_plan(model, all_layers=True)
    if not plan:
        raise StudentError(f"{type(model).__name__} has no prunable layer")
    points = _activation_points(model, plan)
    modules = dict(model.named_modules())
    found: dict[str, list[torch.Tensor]] = {p: [] for p in points}

    def hook(point: str):
        def record(_mod, _inp, z: torch.Tensor) -> None:
            zero = (z <= 0).float()  # ReLU(z) == 0  ⇔  z ≤ 0
            found[point].append(zero.flatten(2).mean(2) if zero.dim() > 2 else zero)
        return record

    handles = [modules[p].register_forward_hook(hook(p)) for p in points]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ActivationStats(tuple(g.conv for g in plan), tuple(torch.cat(found[p]).cpu() for p in points))


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def filters_to_keep(stats: ActivationStats, threshold: float, width_scale: float = 1.0) -> tuple[tuple[int, ...], ...]:
    """The filters each layer keeps at pruning threshold P = ``threshold`` (§3).

    A filter is safe to prune on image m when perc(a_ij^m) ≥ P; avgc_i is the mean count of safe
    filters over the M images and the layer keeps w_i = n_i − avgc_i (rounded half up, ≥ 1) — the
    filters safe on the fewest images (ties: lower mean zero fraction, then lower index).
    ``width_scale`` < 1 keeps only round(scale·w_i) (≥ 1) of them, in the same order.
    """
    if not 0.0 <= threshold <= 1.0:
        raise StudentError(f"pruning threshold P must lie in [0, 1], got {threshold!r}")
    if not 0.0 <= width_scale <= 1.0:
        raise StudentError(f"width_scale must lie in [0, 1], got {width_scale!r}")
    kept = []
    for zero in stats.zero_fraction:
        m, n = zero.shape
        safe = zero >= threshold
        avgc = _round_half_up(int(safe.sum()), m)
        width = max(1, n - avgc)
        if width_scale < 1.0:
            width = max(1, math.floor(width_scale * width + 0.5))
        frequency, mean_zero = safe.double().mean(0), zero.double().mean(0)
        order = sorted(range(n), key=lambda j: (float(frequency[j]), float(mean_zero[j]), j))
        kept.append(tuple(sorted(order[:width])))
    return tuple(kept)
