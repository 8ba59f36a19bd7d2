"""What compact refinement (Chen et al. 2022, Algorithm 1) is asked for and what it returns.

Shared by the factor methods (:mod:`edgeupdate.algorithms.factorized`) and filter pruning
(:mod:`edgeupdate.algorithms.filter_pruning`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from edgeupdate.training import TrainReport
from edgeupdate.updates import StateDict

FACTOR_METHODS: tuple[str, ...] = ("ka", "ml", "lra", "lru", "lru-out")
METHODS: tuple[str, ...] = FACTOR_METHODS + ("rm", "fp", "bn-only")


def rule_of(method: str) -> str:
    """The device's reconstitution rule for a factor method: both LRU orientations are rule
    ``lru`` (W + L·R, the factor not sent regenerated from the seed); the others share their name."""
    return "lru" if method == "lru-out" else method


class CompactConfigError(ValueError):
    """A compact-refinement setting is out of range (unknown method, rank too large, ...)."""


@dataclass(frozen=True)
class CompactConfig:
    """Which update-compression method and its size parameter."""

    method: str  # ka | ml | lra | lru | lru-out | rm | fp | bn-only
    n: int = 3  # KA augmenting vectors
    rank: int = 4  # ML / LRA / LRU rank r
    proportion: float = 0.01  # RM proportion P
    compression: float = 0.5  # FP compression rate c (fraction of prunable filters removed)
    # std of the near-zero random initial values: KA's U′, V′ and new s′ (Eq. 16), LRU's learned factor
    init_scale: float = 1e-3

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CompactConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.n < 0:
            raise CompactConfigError(f"ka n must be ≥ 0, got {self.n}")
        if self.rank < 1:
            raise CompactConfigError(f"rank must be ≥ 1, got {self.rank}")
        if not 0.0 < self.proportion <= 1.0:
            raise CompactConfigError(f"rm proportion must be in (0, 1], got {self.proportion}")
        if not 0.0 <= self.compression < 1.0:
            raise CompactConfigError(f"fp compression must be in [0, 1), got {self.compression}")
        if not (self.init_scale > 0.0 and math.isfinite(self.init_scale)):
            raise CompactConfigError(f"init_scale must be a positive finite number, got {self.init_scale}")

    @property
    def size_param(self) -> tuple[str, float]:
        """The method's size knob as (name, value), for tables and plots."""
        return {"ka": ("n", self.n), "ml": ("rank", self.rank), "lra": ("rank", self.rank),
                "lru": ("rank", self.rank), "lru-out": ("rank", self.rank), "rm": ("proportion", self.proportion),
                "fp": ("compression", self.compression), "bn-only": ("", 0)}[self.method]


@dataclass
class CompactResult:
    """What compact refinement produced: package contents, the server's new state, and sizes."""

    method: str
    config: CompactConfig
    factors: dict[str, dict[str, torch.Tensor]]  # weight key -> factor name -> tensor (factor methods)
    dense: StateDict  # sent as-is: non-factor params and buffers (rm: buffers only)
    params: dict[str, object]  # scalars the device needs (lru, lru-out: seed; rm: seed, proportion)
    state: StateDict  # the server's reconstituted state (what the device must end with)
    update_param_count: int  # the paper's "Update %" numerator
    update_buffer_count: int  # buffer entries sent too (BN running stats), not in the paper's count
    model_param_count: int
    wall_s: float
    report: TrainReport = field(default_factory=TrainReport)
    rm_values: torch.Tensor | None = None  # rm: new values at the mask's positions, mask order
    pruned: dict[str, torch.Tensor] | None = None  # fp: keep-masks per pruned tensor

    @property
    def update_fraction(self) -> float:
        """update_param_count / model_param_count (the paper's Update %, as a fraction)."""
        return self.update_param_count / self.model_param_count


class Reparameterised(nn.Module):
    """``model`` with some of its parameters replaced by functions of new learnable tensors."""

    def __init__(self, model: nn.Module, replaced: Mapping[str, nn.Module]):
        super().__init__()
        self.model = model
        self.keys = list(replaced)
        self.replaced = nn.ModuleList(replaced.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = {k: mod.weight() for k, mod in zip(self.keys, self.replaced)}
        return functional_call(self.model, weights, (x,), strict=False)
