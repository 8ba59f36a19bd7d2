"""Structured FL uploads (Konečný et al. 2016, "Federated Learning: Strategies for Improving
Communication Efficiency", §2): the device learns its update directly in a restricted space.

* ``rm`` (random mask): the update of every parameter tensor is restricted to a Bernoulli(p) mask
  regenerated from ``(seed, tensor name)``; after each optimiser step the entries outside the mask
  are reset to the global model's (projected training). The package (``seeded_package``, generator
  ``"mask"``) carries the seed and the masked values only — no positions.
* ``lru`` (low rank): each ≥2-D weight W (viewed o × i) is trained as W₀ + L·R with R (r × i) drawn
  from ``(seed, "lru", name)`` (:func:`~edgeupdate.updates.random_right_factor`) and frozen; only L
  (o × r) and the other parameters (biases) are trained. The package (``factor_package``, rule
  ``"lru"``) carries L; biases and buffers go dense.

The seed is per (experiment seed, round, device), so every device and round draws a fresh
structure, and the server needs nothing but the package to rebuild the update.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgeupdate.clients.upload import UploadError, UploadSpec
from edgeupdate.updates import StateDict
from edgeupdate.seeding import derive_seed
from edgeupdate.updates import LayerFactors, UpdatePackage, factor_package, random_right_factor, seeded_mask, seeded_package

NamedParams = list[tuple[str, nn.Parameter]]


def structure_seed(seed: int, round_: int, device_id: int) -> int:
    """The seed of a device's mask / random factor in a round."""
    return derive_seed(seed, "fl-structure", round_, device_id)


class RandomMaskTraining:
    """Train only the entries of a seeded Bernoulli(p) mask per parameter tensor."""

    def __init__(self, model: nn.Module, base: StateDict, p: float, seed: int) -> None:
        self.p, self.seed = p, seed
        self.base = {k: v.detach().clone() for k, v in base.items()}
        self.masks = {name: seeded_mask(seed, name, prm.shape, p)
                      for name, prm in model.named_parameters() if prm.is_floating_point()}

    @property
    def params(self) -> NamedParams | None:
        return None  # every parameter trains; post_step projects it back onto its mask

    def post_step(self, model: nn.Module) -> None:
        with torch.no_grad():
            for name, prm in model.named_parameters():
                mask = self.masks.get(name)
                if mask is not None:
                    prm.copy_(torch.where(mask, prm, self.base[name]))

    def encode(self, model: nn.Module, version: int, precision: str) -> UpdatePackage:
        trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        values = {k: trained[k] for k in self.masks}
        dense = {k: v for k, v in trained.items() if k not in self.masks}
        return seeded_package(self.base, generator="mask", seed=self.seed, params={"p": self.p}, values=values,
                              dense=dense, method="fl-rm", target_version=version, base_version=version,
                              precision=precision)


class _AddLowRank(nn.Module):
    """Parametrisation W = W₀ + (L·R) reshaped, with R fixed."""

    def __init__(self, right: torch.Tensor, rows: int) -> None:
        super().__init__()
        self.left = nn.Parameter(torch.zeros(rows, right.shape[0], dtype=right.dtype))
        self.register_buffer("right", right)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original + (self.left @ self.right).reshape(original.shape).to(original.dtype)


class LowRankTraining:
    """Train W₀ + L·R for every ≥2-D weight (R seeded, frozen) and the remaining parameters as usual."""

    def __init__(self, model: nn.Module, base: StateDict, rank: int, seed: int) -> None:
        self.rank, self.seed = rank, seed
        self.base = {k: v.detach().clone() for k, v in base.items()}
        self.factorised: dict[str, _AddLowRank] = {}
        plain: NamedParams = []
        for name, prm in list(model.named_parameters()):
            if prm.dim() < 2 or not prm.is_floating_point():
                plain.append((name, prm))
                continue
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name)
            rows, cols = prm.shape[0], prm[0].numel()
            right = random_right_factor(seed, name, rank, cols).to(prm.dtype)
            par = _AddLowRank(right, rows)
            parametrize.register_parametrization(module, attr, par)
            module.parametrizations[attr].original.requires_grad_(False)
            self.factorised[name] = par
        self._params: NamedParams = [(f"{n}.L", p.left) for n, p in self.factorised.items()] + plain

    @property
    def params(self) -> NamedParams:
        return self._params

    post_step: Callable[[nn.Module], None] | None = None

    def encode(self, model: nn.Module, version: int, precision: str) -> UpdatePackage:
        factors = {name: LayerFactors("lru", {"L": par.left.detach().clone()}, {"seed": self.seed})
                   for name, par in self.factorised.items()}
        state = _plain_state(model)
        dense = {k: v for k, v in state.items() if k not in factors}
        return factor_package(self.base, factors, dense, method="fl-lru", target_version=version,
                              base_version=version, precision=precision)


def _plain_state(model: nn.Module) -> StateDict:
    """The model's state with parametrised tensors under their plain names (W₀ + L·R evaluated)."""
    out: StateDict = {}
    for key, value in model.state_dict().items():
        if ".parametrizations." in key:
            continue
        out[key] = value.detach().clone()
    for module_name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for attr in module.parametrizations:
                out[f"{module_name}.{attr}" if module_name else attr] = getattr(module, attr).detach().clone()
    return out


Structure = RandomMaskTraining | LowRankTraining


def make_structure(spec: UploadSpec, model: nn.Module, base: StateDict, seed: int) -> Structure | None:
    """The training constraint of a structured upload (None for the sketched kinds)."""
    if spec.kind == "rm":
        return RandomMaskTraining(model, base, spec.p, seed)
    if spec.kind == "lru":
        return LowRankTraining(model, base, spec.rank, seed)
    if spec.kind in ("dense", "topk"):
        return None
    raise UploadError(f"unknown upload kind {spec.kind!r}")
