"""FP, the compression competitor of Chen et al. 2022 (§5.1): L1-norm filter pruning (Li et al. 2017).

In every *prunable* conv layer the fraction ``c`` of filters with the smallest L1 norm is removed
together with its BatchNorm channel and the input slices of the layers that consume the feature
map; the pruned model is then fine-tuned on D² and *all* remaining parameters are the update.

A conv layer is prunable when its output (after an optional BatchNorm) reaches only channel-wise
ops (ReLU, pooling, dropout) and then convs or a global-average-pool → flatten → linear head; an
output that feeds a residual addition or a concatenation is kept whole (as Li et al. do for
ResNets, where only the first conv of each block is pruned).  The plan is found by tracing the
model with ``torch.fx``.

Pruning is applied as a mask that keeps the architecture's tensor shapes: removed entries are
zero and stay zero during fine-tuning, so the masked model computes exactly what the physically
smaller model computes, and the device receives the kept entries of each pruned tensor (positions
+ values, starting from zeros) plus every other tensor whole.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from edgeupdate.algorithms.compact import CompactResult, Reparameterised
from edgeupdate.models.zoo import count_parameters
from edgeupdate.seeding import derive_seed
from edgeupdate.training import TensorData, TrainConfig, train


_CHANNELWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
                        nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Dropout2d, nn.Identity)
_CHANNELWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, torch.sigmoid, torch.tanh,
                          F.max_pool2d, F.avg_pool2d, F.dropout}


class PruningError(ValueError):
    """The model cannot be filter-pruned (nothing prunable, or it cannot be traced)."""


@dataclass(frozen=True)
class PruneGroup:
    """A prunable layer, its BatchNorm (if any) and the layers that read its output channels.

    ``linear_consumers`` read the channels as input features: one feature per channel after a
    global average pool (or straight from a Linear producer), or ``h·w`` consecutive features per
    channel after flattening a spatial map (``all_layers`` plans only); :func:`channel_selections`
    derives the block size from the shapes.
    """

    conv: str  # module name of the producing layer: a Conv2d (in ``all_layers`` plans also a Linear)
    bn: str | None
    conv_consumers: tuple[str, ...]  # convs reading the channels as input channels
    linear_consumers: tuple[str, ...]  # linears reading them as features

    @property
    def layer(self) -> str:
        """The producing layer's module name (alias of ``conv``)."""
        return self.conv


def _is_module(node: fx.Node, modules: Mapping[str, nn.Module], kind: type | tuple[type, ...]) -> bool:
    return node.op == "call_module" and isinstance(modules[str(node.target)], kind)


def _is_plain_conv(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Conv2d) and mod.groups == 1


def _channelwise(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    if _is_module(node, modules, _CHANNELWISE_MODULES):
        return True
    return node.op == "call_function" and node.target in _CHANNELWISE_FUNCTIONS and node.args[0] is not None


def _global_pool(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    if not _is_module(node, modules, nn.AdaptiveAvgPool2d):
        return False
    size = modules[str(node.target)].output_size
    return size in (1, (1, 1))


def _flatten(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    return _is_module(node, modules, nn.Flatten) or (node.op == "call_function" and node.target is torch.flatten) \
        or (node.op == "call_method" and node.target in ("view", "reshape", "flatten"))


def _follow(node: fx.Node, modules: Mapping[str, nn.Module], convs: list[str], linears: list[str],
            mode: str = "map", spatial_flatten: bool = False) -> bool:
    """Collect the layers consuming ``node``'s channels; False if any use is not channel-safe.

    ``mode``: ``map`` (an N×C×H×W map), ``pooled`` (after a global pool) or ``flat`` (N×F features).
    """
    for user in node.users:
        if mode == "flat":
            if _is_module(user, modules, nn.Linear):
                linears.append(str(user.target))
            elif not (_channelwise(user, modules) and _follow(user, modules, convs, linears, "flat")):
                return False
            continue
        if mode == "pooled":
            if _flatten(user, modules) and _follow(user, modules, convs, linears, "flat"):
                continue
            return False
        if user.op == "call_module" and _is_plain_conv(modules[str(user.target)]):
            if user.args[0] is not node:
                return False
            convs.append(str(user.target))
        elif _global_pool(user, modules):
            if not _follow(user, modules, convs, linears, "pooled"):
                return False
        elif _channelwise(user, modules):
            if not _follow(user, modules, convs, linears, "map", spatial_flatten):
                return False
        elif spatial_flatten and _flatten(user, modules):
            if not _follow(user, modules, convs, linears, "flat"):
                return False
        else:
            return False
    return True


def pruning_plan(model: nn.Module, *, all_layers: bool = False) -> list[PruneGroup]:
    """The prunable layers of ``model`` with their BatchNorm and consumers (via ``torch.fx``).

    By default only convs whose channels end in convs or a global-pool head (Li et al., used by
    FP). ``all_layers=True`` also plans Linear layers feeding Linear layers (with an optional
    BatchNorm1d) and convs read through a plain flatten (the activation-based students).
    """
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for untraceable control flow
        raise PruningError(f"cannot trace {type(model).__name__} for filter pruning: {exc}") from exc
    modules = dict(model.named_modules())
    plan: list[PruneGroup] = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        mod = modules[str(node.target)]
        linear = all_layers and isinstance(mod, nn.Linear)
        if not (_is_plain_conv(mod) or linear):
            continue
        out, bn = node, None
        users = list(node.users)
        norm = nn.BatchNorm1d if linear else nn.BatchNorm2d
        if len(users) == 1 and _is_module(users[0], modules, norm):
            out, bn = users[0], str(users[0].target)
        convs: list[str] = []
        linears: list[str] = []
        if out.users and _follow(out, modules, convs, linears, "flat" if linear else "map", all_layers) \
                and (convs or linears):
            plan.append(PruneGroup(str(node.target), bn, tuple(convs), tuple(linears)))
    return plan


def _key(module: str, attr: str) -> str:
    return f"{module}.{attr}" if module else attr


def channel_selections(model: nn.Module, plan: list[PruneGroup], keep: Mapping[str, torch.Tensor], *,
                       buffers: bool = False) -> dict[str, dict[int, torch.Tensor]]:
    """Which entries of which tensors survive when ``keep[g.conv]`` channels of each group ``g`` stay.

    Returns ``{state key: {dim: kept indices along dim}}`` for every tensor that loses entries:
    the producer's weight/bias rows, its BatchNorm's affine parameters (and with ``buffers`` its
    running statistics), the consumers' input channels or feature columns. Groups missing from
    ``keep`` keep everything.
    """
    modules = dict(model.named_modules())
    out: dict[str, dict[int, torch.Tensor]] = {}

    def select(module: str, attr: str, dim: int, index: torch.Tensor) -> None:
        out.setdefault(_key(module, attr), {})[dim] = index

    for group in plan:
        if group.conv not in keep:
            continue
        kept = torch.as_tensor(keep[group.conv], dtype=torch.long)
        producer = modules[group.conv]
        channels = int(producer.weight.shape[0])
        select(group.conv, "weight", 0, kept)
        if getattr(producer, "bias", None) is not None:
            select(group.conv, "bias", 0, kept)
        if group.bn is not None:
            bn = modules[group.bn]
            if bn.affine:
                select(group.bn, "weight", 0, kept)
                select(group.bn, "bias", 0, kept)
            if buffers and bn.track_running_stats:
                select(group.bn, "running_mean", 0, kept)
                select(group.bn, "running_var", 0, kept)
        for consumer in group.conv_consumers:
            select(consumer, "weight", 1, kept)
        for consumer in group.linear_consumers:
            features = int(modules[consumer].in_features)
            if features % channels:
                raise PruningError(f"{consumer} reads {features} features, not a multiple of "
                                   f"{group.conv}'s {channels} channels")
            block = features // channels  # h·w features per channel after a flatten, 1 after pooling
            columns = (kept[:, None] * block + torch.arange(block)[None, :]).reshape(-1)
            select(consumer, "weight", 1, columns)
    return out


def pruning_masks(model: nn.Module, state: Mapping[str, torch.Tensor], compression: float) -> dict[str, torch.Tensor]:
    """Keep-masks (True = kept) for every parameter that loses entries at compression rate ``c``.

    In each prunable conv, round(c·o) filters with the smallest L1 norm go (at least one stays;
    ties broken by the lower index).
    """
    plan = pruning_plan(model)
    if not plan:
        raise PruningError(f"{type(model).__name__} has no prunable conv layer")
    keep: dict[str, torch.Tensor] = {}
    for group in plan:
        w = state[_key(group.conv, "weight")]
        o = w.shape[0]
        drop = min(int(round(compression * o)), o - 1)
        if drop == 0:
            continue
        norms = w.detach().abs().reshape(o, -1).sum(dim=1).double()
        order = sorted(range(o), key=lambda j: (float(norms[j]), j))
        keep[group.conv] = torch.tensor(sorted(order[drop:]))
    masks: dict[str, torch.Tensor] = {}
    for key, dims in channel_selections(model, plan, keep).items():
        mask = torch.ones_like(state[key], dtype=torch.bool)
        for dim, index in dims.items():
            along = torch.zeros(mask.shape[dim], dtype=torch.bool)
            along[index] = True
            mask &= along.reshape([-1 if d == dim else 1 for d in range(mask.dim())])
        masks[key] = mask
    return masks


class _Masked(nn.Module):
    """A weight whose pruned entries are +0.0 (``torch.where``, not ``value * keep``: a negative
    weight times 0 is −0.0, bitwise a change from zero that the package would have to send)."""

    def __init__(self, weight: torch.Tensor, keep: torch.Tensor):
        super().__init__()
        self.register_buffer("keep", keep.clone())
        self.value = nn.Parameter(torch.where(keep, weight.detach(), 0.0))

    def weight(self) -> torch.Tensor:
        return torch.where(self.keep, self.value, 0.0)


def prune_refine(model: nn.Module, base: Mapping[str, torch.Tensor], data: TensorData, train_cfg: TrainConfig,
                 cfg, seed: int, *, validation: TensorData | None = None):
    """FP: prune ``base`` at ``cfg.compression``, fine-tune on ``data``, report all remaining params."""
    start = time.perf_counter()
    net = copy.deepcopy(model).cpu()
    net.load_state_dict(dict(base))
    base_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    masks = pruning_masks(net, base_state, cfg.compression)
    replaced = {k: _Masked(base_state[k], keep) for k, keep in masks.items()}
    for name, p in net.named_parameters():
        p.requires_grad_(name not in replaced)
    wrapped = Reparameterised(net, replaced)
    learnable = [(n, p) for n, p in wrapped.named_parameters() if p.requires_grad]
    report = train(wrapped, data, train_cfg, derive_seed(seed, "compact-train", "fp"), params=learnable,
                   validation=validation)
    wrapped.cpu()
    param_names = {n for n, _ in net.named_parameters()}
    with torch.no_grad():
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        for k, mod in replaced.items():
            state[k] = mod.weight().detach().clone()
    pruned = sum(int((~keep).sum()) for keep in masks.values())
    total = count_parameters(net)
    dense = {k: v for k, v in state.items() if k not in masks}
    buffers = sum(v.numel() for k, v in dense.items() if k not in param_names)
    return CompactResult("fp", cfg, {}, dense, {"compression": float(cfg.compression)}, state, total - pruned,
                         buffers, total, time.perf_counter() - start, report, pruned=masks)
