"""Compact refinement (Chen et al. 2022, Algorithm 1) for the KA family and its competitors.

Every conv/FC weight W (o×i view; conv: o × c·kh·kw) is re-parameterised, only the learnable set
is trained on the new data, and the result says exactly what a package must carry:

============  ===========================================  ==========================  ==============
method        learnable per layer                          frozen (device recomputes)  update params
============  ===========================================  ==========================  ==============
``ka``        U′ (o×n), V′ (i×n), s′ (m+n)   Eq. 14–16      U, V = SVD(W_old)           o·n + i·n + m + n
``ml``        L (o×r), init U[:, :r]·diag(s[:r])  Eq. 12–13  R = V[:, :r]ᵀ               o·r
``lra``       L (o×r), R (i×r)                   Eq. 5–8    —                           (o+i)·r
``lru``       R (r×i), small random init       [33] §2      L (o×r) random from a seed  r·i
``lru-out``   L (o×r), small random init                    R (r×i) random from a seed  o·r
``rm``        the entries a seeded mask selects (all params, P·|θ|)                     round(P·|θ|)
``bn-only``   nothing (a control)                           every conv/FC weight        0
============  ===========================================  ==========================  ==============

(``fp``, L1-norm filter pruning, lives in :mod:`edgeupdate.algorithms.filter_pruning`.)

``lru`` is the paper's orientation: Table 1's LRU parameter counts for ResNet18/50 match only a
learned input-side R (r × i) with a random L; ``lru-out`` learns the output-side L instead (fewer
parameters per rank on conv layers, a stronger baseline at equal size). ``bn-only`` is the control
that refreshes only the parameters every method sends anyway: biases and normalisation γ/β.

Parameters that are not conv/FC weights (biases, BatchNorm γ/β; also grouped/transposed convs) stay
learnable, are sent densely and are counted (``bn-only`` keeps only biases and normalisation
parameters learnable).  For ``rm`` the seeded mask covers *every* parameter
(§5.1: "a random binary mask for the entire model parameters"), so biases and BN γ/β train only
where selected.  BatchNorm running statistics are buffers: they are re-estimated on D² during
refinement and travel densely in the package (they are counted in bytes, and in
``update_buffer_count``, but not in the paper's parameter-count "Update %").
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from edgeupdate.models.zoo import count_parameters
from edgeupdate.seeding import derive_seed, torch_generator
from edgeupdate.training import TensorData, TrainConfig, train
from edgeupdate.updates import (
    LayerFactors,
    StateDict,
    UpdatePackage,
    factor_package,
    random_left_factor,
    random_right_factor,
    reconstitute,
    seeded_mask,
    seeded_package,
    sparse_package,
    svd_factors,
)
from edgeupdate.updates.reconstitution import as_matrix

from edgeupdate.algorithms.compact import (  # noqa: F401  (re-exported: the KA family's public types)
    FACTOR_METHODS,
    METHODS,
    CompactConfig,
    CompactConfigError,
    CompactResult,
    Reparameterised,
    rule_of,
)
from edgeupdate.algorithms.filter_pruning import prune_refine

@dataclass(frozen=True)
class FactorLayer:
    """A conv/FC weight that gets re-parameterised: its state key and shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def o(self) -> int:
        return self.shape[0]

    @property
    def i(self) -> int:
        return math.prod(self.shape[1:])

    @property
    def m(self) -> int:
        return min(self.o, self.i)


def factor_layers(model: nn.Module) -> list[FactorLayer]:
    """The conv (ungrouped, not transposed) and linear weights of ``model``, in module order."""
    out: list[FactorLayer] = []
    for mod_name, mod in model.named_modules():
        conv = isinstance(mod, nn.modules.conv._ConvNd) and mod.groups == 1 and not mod.transposed
        if conv or isinstance(mod, nn.Linear):
            key = f"{mod_name}.weight" if mod_name else "weight"
            out.append(FactorLayer(key, tuple(mod.weight.shape)))
    return out


def check_ranks(model: nn.Module, cfg: CompactConfig) -> None:
    """Raise :class:`CompactConfigError` naming the first layer whose min(o, i) is below n / rank.

    A layer's weight has rank ≤ m = min(o, i): ML/LRA need r ≤ m columns of U, and more than m
    augmenting vectors (KA) or update rank (LRU) cannot express anything new.
    """
    if cfg.method not in FACTOR_METHODS:
        return
    size, label = (cfg.n, "n") if cfg.method == "ka" else (cfg.rank, "rank")
    for layer in factor_layers(model):
        if size > layer.m:
            raise CompactConfigError(
                f"{cfg.method} {label}={size} exceeds layer {layer.name!r} limit min(o, i) = {layer.m} "
                f"(o={layer.o}, i={layer.i})")


# --- re-parameterised layers: each holds the learnable/frozen parts and recomputes its weight ---

class _KALayer(nn.Module):
    def __init__(self, layer: FactorLayer, weight: torch.Tensor, n: int, scale: float, gen: torch.Generator):
        super().__init__()
        u, s, v = svd_factors(weight)
        self.shape = layer.shape
        self.register_buffer("u", u.float())
        self.register_buffer("v", v.float())
        self.u_aug = nn.Parameter(scale * torch.randn(layer.o, n, generator=gen))  # U′
        self.v_aug = nn.Parameter(scale * torch.randn(layer.i, n, generator=gen))  # V′
        self.s = nn.Parameter(torch.cat([s.float(), scale * torch.randn(n, generator=gen)]))

    def weight(self) -> torch.Tensor:
        m = self.u.shape[1]
        w = (self.u * self.s[:m]) @ self.v.T + (self.u_aug * self.s[m:]) @ self.v_aug.T
        return w.reshape(self.shape)

    def factors(self) -> dict[str, torch.Tensor]:
        return {"U": self.u_aug, "V": self.v_aug, "s": self.s}


class _MLLayer(nn.Module):
    def __init__(self, layer: FactorLayer, weight: torch.Tensor, r: int):
        super().__init__()
        u, s, v = svd_factors(weight)
        self.shape = layer.shape
        self.register_buffer("right", v[:, :r].T.float().contiguous())
        self.l = nn.Parameter((u[:, :r] * s[:r]).float())

    def weight(self) -> torch.Tensor:
        return (self.l @ self.right).reshape(self.shape)

    def factors(self) -> dict[str, torch.Tensor]:
        return {"L": self.l}


class _LRALayer(nn.Module):
    def __init__(self, layer: FactorLayer, weight: torch.Tensor, r: int):
        super().__init__()
        u, s, v = svd_factors(weight)
        self.shape = layer.shape
        self.l = nn.Parameter((u[:, :r] * s[:r]).float())
        self.r = nn.Parameter(v[:, :r].T.float().contiguous())

    def weight(self) -> torch.Tensor:
        return (self.l @ self.r).reshape(self.shape)

    def factors(self) -> dict[str, torch.Tensor]:
        return {"L": self.l, "R": self.r}


class _LRULayer(nn.Module):
    """Paper-LRU: W + L·R with L (o × r) random from the seed (frozen) and R (r × i) learned."""

    def __init__(self, layer: FactorLayer, weight: torch.Tensor, r: int, seed: int, scale: float,
                 gen: torch.Generator):
        super().__init__()
        self.shape = layer.shape
        self.register_buffer("w0", as_matrix(weight).float())
        self.register_buffer("left", random_left_factor(seed, layer.name, r, layer.o).float())
        self.r = nn.Parameter(scale * torch.randn(r, layer.i, generator=gen))

    def weight(self) -> torch.Tensor:
        return (self.w0 + self.left @ self.r).reshape(self.shape)

    def factors(self) -> dict[str, torch.Tensor]:
        return {"R": self.r}


class _LRUOutLayer(nn.Module):
    """``lru-out``: W + L·R with R (r × i) random from the seed (frozen) and L (o × r) learned."""

    def __init__(self, layer: FactorLayer, weight: torch.Tensor, r: int, seed: int, scale: float,
                 gen: torch.Generator):
        super().__init__()
        self.shape = layer.shape
        self.register_buffer("w0", as_matrix(weight).float())
        self.register_buffer("right", random_right_factor(seed, layer.name, r, layer.i).float())
        self.l = nn.Parameter(scale * torch.randn(layer.o, r, generator=gen))

    def weight(self) -> torch.Tensor:
        return (self.w0 + self.l @ self.right).reshape(self.shape)

    def factors(self) -> dict[str, torch.Tensor]:
        return {"L": self.l}


class _MaskedDelta(nn.Module):
    """RM: W = W_old where the mask is off, W_old + Δ where it is on (only Δ trains)."""

    def __init__(self, weight: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("w0", weight.detach().clone())
        self.register_buffer("mask", mask.clone())
        self.delta = nn.Parameter(torch.zeros_like(weight))

    def weight(self) -> torch.Tensor:
        return torch.where(self.mask, self.w0 + self.delta, self.w0)


def _bn_only_frozen(model: nn.Module) -> set[str]:
    """``bn-only``: every parameter except biases and normalisation-layer parameters (γ/β)."""
    norm = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    keep = {f"{mod_name}.{p}" if mod_name else p
            for mod_name, mod in model.named_modules() if isinstance(mod, norm)
            for p, _ in mod.named_parameters(recurse=False)}
    return {name for name, _ in model.named_parameters() if name not in keep and name.rpartition(".")[2] != "bias"}


def _parameter_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters()]


def reconstitute_state(base: Mapping[str, torch.Tensor], factors: Mapping[str, Mapping[str, torch.Tensor]],
                       dense: Mapping[str, torch.Tensor], method: str, params: Mapping[str, object]) -> StateDict:
    """Algorithm 2 on a state dict: dense entries replace, factor layers are recovered by the rule
    the device uses (``reconstitute(name, method, current, factors, params)``)."""
    state = {k: v.clone() for k, v in base.items()}
    state.update({k: v.clone() for k, v in dense.items()})
    for name, layer_factors in factors.items():
        state[name] = reconstitute(name, method, base[name], layer_factors, params)
    return state


def compact_refine(model: nn.Module, base: Mapping[str, torch.Tensor], data: TensorData,
                   train_cfg: TrainConfig, cfg: CompactConfig, seed: int, *,
                   validation: TensorData | None = None) -> CompactResult:
    """Algorithm 1: re-parameterise a copy of ``model`` loaded with ``base``, train only the
    learnable set on ``data``, and return the package contents and the server's new state.

    ``model`` is not modified.  Same inputs and seed → the same result, bit for bit.
    """
    if cfg.method == "fp":
        return prune_refine(model, base, data, train_cfg, cfg, seed, validation=validation)
    start = time.perf_counter()
    net = copy.deepcopy(model).cpu()
    net.load_state_dict(dict(base))
    check_ranks(net, cfg)
    base_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    stream = rule_of(cfg.method)  # lru-out draws what lru drew before issue 17: its old runs reproduce
    gen = torch_generator(seed, "compact-init", stream)
    params: dict[str, object] = {}
    if cfg.method == "rm":
        names = _parameter_names(net)
        params = {"seed": derive_seed(seed, "rm-mask"), "p": float(cfg.proportion)}
        replaced: dict[str, nn.Module] = {
            k: _MaskedDelta(base_state[k], seeded_mask(int(params["seed"]), k, base_state[k].shape, cfg.proportion))
            for k in names}
    else:
        layers = factor_layers(net)
        if cfg.method in ("lru", "lru-out"):
            params = {"seed": derive_seed(seed, "lru-right")}
        replaced = {}
        for layer in layers:
            w = base_state[layer.name]
            if cfg.method == "ka":
                replaced[layer.name] = _KALayer(layer, w, cfg.n, cfg.init_scale, gen)
            elif cfg.method == "ml":
                replaced[layer.name] = _MLLayer(layer, w, cfg.rank)
            elif cfg.method == "lra":
                replaced[layer.name] = _LRALayer(layer, w, cfg.rank)
            elif cfg.method != "bn-only":
                kind = _LRULayer if cfg.method == "lru" else _LRUOutLayer
                replaced[layer.name] = kind(layer, w, cfg.rank, int(params["seed"]), cfg.init_scale, gen)
    frozen = set(replaced) | (_bn_only_frozen(net) if cfg.method == "bn-only" else set())
    for name, p in net.named_parameters():
        p.requires_grad_(name not in frozen)
    wrapped = Reparameterised(net, replaced)
    learnable = [(n, p) for n, p in wrapped.named_parameters() if p.requires_grad]
    report = train(wrapped, data, train_cfg, derive_seed(seed, "compact-train", stream),
                   params=learnable, validation=validation)
    wrapped.cpu()
    param_names = set(_parameter_names(net))
    trained = {k: v.detach().clone() for k, v in net.state_dict().items()}
    model_params = count_parameters(net)
    with torch.no_grad():
        if cfg.method == "rm":
            dense = {k: v for k, v in trained.items() if k not in param_names}
            values = torch.cat([mod.weight()[mod.mask] for mod in replaced.values()])  # type: ignore[operator]
            state = {k: v.clone() for k, v in base_state.items()}
            state.update(dense)
            offset = 0
            for k, mod in replaced.items():
                count = int(mod.mask.sum())  # type: ignore[union-attr]
                state[k][mod.mask] = values[offset:offset + count]  # type: ignore[index]
                offset += count
            return CompactResult(cfg.method, cfg, {}, dense, params, state, int(values.numel()),
                                 sum(v.numel() for v in dense.values()), model_params,
                                 time.perf_counter() - start, report, rm_values=values)
        factors = {k: {f: t.detach().clone() for f, t in mod.factors().items()}  # type: ignore[operator]
                   for k, mod in replaced.items()}
        dense = {k: v for k, v in trained.items() if k not in frozen}
        state = reconstitute_state(base_state, factors, dense, rule_of(cfg.method), params)
    factor_count = sum(t.numel() for fs in factors.values() for t in fs.values())
    dense_params = sum(v.numel() for k, v in dense.items() if k in param_names)
    buffers = sum(v.numel() for k, v in dense.items() if k not in param_names)
    return CompactResult(cfg.method, cfg, factors, dense, params, state, factor_count + dense_params,
                         buffers, model_params, time.perf_counter() - start, report)


def build_package(result: CompactResult, base: Mapping[str, torch.Tensor], *, base_version: int,
                  target_version: int, precision: str = "fp32", coding: str = "golomb",
                  value_coding: str = "raw") -> UpdatePackage:
    """The update package for ``result`` against the device's ``base`` (``value_coding``: raw | entropy).

    factor methods → :func:`factor_package` (factor sets + dense non-factor tensors); ``rm`` →
    :func:`seeded_package` with the ``mask`` generator (values at the seeded mask, buffers dense);
    ``fp`` → a complete :func:`sparse_package` from zeros (kept entries of pruned tensors, every
    other tensor whole).  With ``precision="fp32"`` ``pkg.apply(base)`` equals ``result.state``
    bit for bit; with a lossy precision the device's state is ``pkg.apply(base)`` (the server
    should deploy that, not ``result.state``).
    """
    state = dict(base)
    if result.method in FACTOR_METHODS or result.method == "bn-only":
        layer_params = {k: v for k, v in result.params.items() if isinstance(v, (int, float, str))}
        rule = rule_of(result.method)
        factors = {name: LayerFactors(rule, dict(fs), dict(layer_params)) for name, fs in result.factors.items()}
        return factor_package(state, factors, dict(result.dense), method=result.method,
                              target_version=target_version, base_version=base_version, precision=precision,
                              value_coding=value_coding)
    if result.method == "rm":
        values = {k: v for k, v in result.state.items() if k not in result.dense}
        return seeded_package(state, generator="mask", seed=int(result.params["seed"]),  # type: ignore[arg-type]
                              params={"p": float(result.params["p"])},  # type: ignore[arg-type]
                              values=values, dense=dict(result.dense), method="rm",
                              target_version=target_version, base_version=base_version, precision=precision,
                              value_coding=value_coding)
    if result.method == "fp":
        whole = [k for k in result.state if k not in (result.pruned or {})]
        return sparse_package(None, dict(result.state), method="fp", target_version=target_version,
                              base_version=base_version,
                              precision=precision, coding=coding, value_coding=value_coding, dense_names=whole)
    raise CompactConfigError(f"cannot package method {result.method!r}")
