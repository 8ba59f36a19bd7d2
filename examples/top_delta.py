"""A complete custom strategy: warm-start retraining that pushes only the largest weight changes.

Run it with:  edgeupdate run configs/quickstart.toml --set strategy.name=examples/top_delta.py:TopDelta
"""

from dataclasses import dataclass

import torch

from edgeupdate.seeding import derive_seed
from edgeupdate.strategies import ServerRetrainStrategy
from edgeupdate.training import train
from edgeupdate.updates import sparse_package


@dataclass(frozen=True)
class TopDeltaParams:
    fraction: float = 0.05  # share of the weights allowed to change per round


class TopDelta(ServerRetrainStrategy):
    """Retrain from the deployed model; keep only the top `fraction` changes (by |Δw|)."""

    name = "top-delta"
    Params = TopDeltaParams

    def retrain(self, round_, deployed, data):
        model = self.runtime.new_model()
        model.load_state_dict(deployed.weights)
        train(model, data, self.cfg.training, seed=derive_seed(self.cfg.seed, "retrain", round_))
        new = model.state_dict()
        change = torch.cat([(new[k] - v).abs().flatten().float() for k, v in deployed.weights.items()])
        cut = change.kthvalue(max(1, int(len(change) * (1 - self.params.fraction)))).values
        return {k: torch.where((new[k] - v).abs() > cut, new[k], v) for k, v in deployed.weights.items()}

    def release_package(self, round_, base, target):
        return sparse_package(base.weights, target, method=self.name, target_version=round_,
                              base_version=base.number, coding=self.cfg.package.coding)
