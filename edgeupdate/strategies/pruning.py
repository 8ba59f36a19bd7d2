"""``pruning``: the thesis's magnitude-pruning baseline (§5.5.2) as a server-retrain strategy.

Every round prunes from the same random init (one-shot global magnitude pruning to ``k`` of the
maskable weights, learning-rate rewinding; :func:`edgeupdate.algorithms.partial.prune_with_rewinding`)
and sends the sparse model whole — kept positions and values, biases dense — as a base-free package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeupdate.algorithms.partial import prune_with_rewinding
from edgeupdate.seeding import derive_seed
from edgeupdate.strategies.registry import register
from edgeupdate.strategies.server_retrain import ServerRetrainStrategy
from edgeupdate.strategies.versions import ModelVersion
from edgeupdate.training import TensorData
from edgeupdate.updates import StateDict, UpdatePackage, sparse_package


@dataclass(frozen=True)
class PruningParams:
    """Magnitude pruning options."""

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
        return sparse_package(None, target, method=self.name, target_version=round_, base_version=base.number,
                              precision=pkg.precision, coding=pkg.coding, value_coding=pkg.value_coding,
                              dense_names=self._dense)
