"""The DPU family as server-retrain strategies (thesis ch. 5).

``dpu`` (Algorithm 5.2, combined contribution, Eq. 5.10), ``gcpu`` (Algorithm 5.1, λ = 1),
``lcpu`` (λ = 0), ``rpu`` (random k per layer) and ``pruning`` (magnitude pruning with
learning-rate rewinding, from the same random init every round). The algorithms live in
:mod:`edgeupdate.algorithms.partial`; these classes only decide what to train from and how the
result is packaged: changed values + encoded positions (``sparse_package``), biases and
normalisation parameters dense, and — on re-initialisation (§5.4.2) — a seed from which the device
regenerates the random init (``seeded_package``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeupdate.algorithms.partial import (
    PartialUpdateConfig,
    partial_update,
    prune_with_rewinding,
    should_reinitialize,
)
from edgeupdate.algorithms.partial_cost import analytic_bytes
from edgeupdate.clients.runtime import StateDict
from edgeupdate.seeding import derive_seed
from edgeupdate.strategies.base import ModelVersion, ServerRetrainStrategy
from edgeupdate.strategies.registry import register
from edgeupdate.training import TensorData
from edgeupdate.updates import UpdatePackage, seeded_package, sparse_package, zoo_initializer_name


@dataclass(frozen=True)
class PartialParams:
    """Deep Partial Updating options (thesis §5.4–5.5)."""

    k: float = field(default=0.005, metadata={"gt": 0.0, "max": 1.0})  # updating ratio of maskable weights
    lam: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # weight of the global contribution
    mask_biases: bool = False  # default: biases/norm params trained fully and sent dense
    rewinding: str = field(default="one-shot", metadata={"choices": ("one-shot", "iterative")})
    reinitialize: bool = False  # re-init when |Dʳ| > 2·|D at last re-init| (§5.4.2)
    skip_if_no_gain: bool = False  # do not push when validation accuracy does not improve (§5.5)


class PartialUpdating(ServerRetrainStrategy):
    """Base of the DPU family: one selector, the rest shared."""

    Params = PartialParams
    selector = "combined"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._reinit_samples = 0
        self._reinit_seed: int | None = None
        self._last_result = None

    def _config(self) -> PartialUpdateConfig:
        lam = {"global": 1.0, "local": 0.0}.get(self.selector, self.params.lam)
        return PartialUpdateConfig(k=self.params.k, selector=self.selector, lam=lam,
                                   mask_biases=self.params.mask_biases, rewinding=self.params.rewinding)

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict | None:
        init = None
        self._reinit_seed = None
        if self.params.reinitialize and (round_ == 1 or should_reinitialize(len(data), self._reinit_samples)):
            self._reinit_seed = derive_seed(self.cfg.seed, "init", f"reinit-{round_}")
            init = self.runtime.new_model(f"reinit-{round_}").state_dict()
            self._reinit_samples = len(data)
        validation = self.validation if len(self.validation) else None
        result = partial_update(self.runtime.new_model(), deployed.weights, data, self.cfg.training,
                                self._config(), derive_seed(self.cfg.seed, "retrain", round_),
                                validation=validation, init=init)
        self._last_result = result
        info = result.info
        self.log.extra.update(changed_weights=float(info.changed_count), maskable_weights=float(info.maskable_count),
                              loss_after_rewind=float(info.loss_after_rewind))
        if (self.params.skip_if_no_gain and validation is not None and round_ > 1
                and info.val_accuracy_final is not None and info.val_accuracy_base is not None
                and info.val_accuracy_final <= info.val_accuracy_base):
            return None
        return {k: v.detach().cpu().clone() for k, v in result.state.items()}

    def release_package(self, round_: int, base: ModelVersion, target: StateDict) -> UpdatePackage:
        pkg = self.cfg.package
        dense = self._last_result.info.dense_names if self._last_result is not None else ()
        if self._reinit_seed is not None:
            ds = self.runtime.dataset
            m = self.cfg.model
            init_name = zoo_initializer_name(m.name, ds.input_shape, ds.num_classes,
                                             tuple(m.hidden) if m.name == "mlp" else None)
            values = {k: v for k, v in target.items() if k not in dense}
            return seeded_package(base.weights, generator="init", seed=self._reinit_seed,
                                  params={"initializer": init_name}, values=values,
                                  dense={k: target[k] for k in dense}, method=self.name,
                                  target_version=round_, base_version=base.number,
                                  precision=pkg.precision, coding=pkg.coding)
        return sparse_package(base.weights, target, method=self.name, target_version=round_,
                              base_version=base.number, precision=pkg.precision, coding=pkg.coding,
                              dense_names=dense)

    def analytic_bytes_down(self, package: UpdatePackage) -> float | None:
        if self._last_result is None:
            return None
        info = self._last_result.info
        return analytic_bytes(self.params.k, info.maskable_count) + 4 * info.dense_count


@register
class DPU(PartialUpdating):
    """Deep Partial Updating: combined global + local contribution (Algorithm 5.2)."""

    name = "dpu"
    selector = "combined"


@register
class GCPU(PartialUpdating):
    """Global-contribution partial updating, λ = 1 (Algorithm 5.1)."""

    name = "gcpu"
    selector = "global"


@register
class LCPU(PartialUpdating):
    """Local-contribution partial updating, λ = 0."""

    name = "lcpu"
    selector = "local"


@register
class RPU(PartialUpdating):
    """Random partial updating: k·n_l random weights per layer."""

    name = "rpu"
    selector = "random"


@dataclass(frozen=True)
class PruningParams:
    k: float = field(default=0.005, metadata={"gt": 0.0, "max": 1.0})  # kept fraction of maskable weights


@register
class Pruning(ServerRetrainStrategy):
    """Magnitude pruning with learning-rate rewinding from the same random init each round;
    the sparse model is sent whole (non-zero positions + values)."""

    name = "pruning"
    Params = PruningParams

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict:
        result = prune_with_rewinding(self.runtime.new_model(), self.runtime.initial_state, data,
                                      self.cfg.training, self.params.k,
                                      derive_seed(self.cfg.seed, "retrain", round_),
                                      validation=self.validation if len(self.validation) else None)
        self._dense = result.info.dense_names
        return {k: v.detach().cpu().clone() for k, v in result.state.items()}

    def release_package(self, round_: int, base: ModelVersion, target: StateDict) -> UpdatePackage:
        pkg = self.cfg.package
        return sparse_package(None, target, method=self.name, target_version=round_,
                              precision=pkg.precision, coding=pkg.coding, dense_names=self._dense)
