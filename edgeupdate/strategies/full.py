"""``full``: the server retrains the whole model and pushes it dense (the reference everyone beats)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeupdate.clients.runtime import StateDict
from edgeupdate.seeding import derive_seed
from edgeupdate.strategies.base import ModelVersion, ServerRetrainStrategy
from edgeupdate.strategies.registry import register
from edgeupdate.training import TensorData, train


@dataclass(frozen=True)
class FullParams:
    """``init = "same-seed"``: retrain from the same random init every round (thesis §5.5.2);
    ``"warm"``: continue from the deployed model."""

    init: str = field(default="same-seed", metadata={"choices": ("same-seed", "warm")})


@register
class FullUpdate(ServerRetrainStrategy):
    """Full updating: retrain on Dʳ, send every weight."""

    name = "full"
    Params = FullParams

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict:
        model = self.runtime.new_model(0)
        if self.params.init == "warm":
            model.load_state_dict(deployed.weights)
        train(model, data, self.cfg.training, seed=derive_seed(self.cfg.seed, "retrain", round_),
              validation=self.validation if len(self.validation) else None)
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
