"""``full``: the server retrains the whole model and pushes it dense (the reference everyone beats)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgeupdate.lru import LRU
from edgeupdate.runtime import ExperimentRuntime
from edgeupdate.seeding import derive_seed
from edgeupdate.strategies.registry import register
from edgeupdate.strategies.server_retrain import ServerRetrainStrategy
from edgeupdate.strategies.versions import ModelVersion
from edgeupdate.training import TensorData, train
from edgeupdate.updates import StateDict, state_hash


@dataclass(frozen=True)
class FullParams:
    """``init = "same-seed"``: retrain from the same random init every round (thesis §5.5.2);
    ``"warm"``: continue from the deployed model."""

    init: str = field(default="same-seed", metadata={"choices": ("same-seed", "warm")})


# fingerprint → result; a sweep runs each point for every seed in turn: keep one θ¹ per seed (3 seeds) and then some
_TRAINED: LRU[str, StateDict] = LRU(8)


def _fingerprint(runtime: ExperimentRuntime, round_: int, data: TensorData, start: StateDict | None,
                 validation: TensorData | None) -> str:
    """Everything :func:`retrain_dense`'s result depends on, hashed."""
    cfg = runtime.cfg
    parts = [repr((cfg.training, cfg.model, cfg.seed, cfg.dataset.name, round_, torch.get_num_threads())),
             state_hash(start) if start is not None else "init",
             state_hash({"x": data.x, "y": data.y}),
             state_hash({"x": validation.x, "y": validation.y}) if validation is not None and len(validation) else ""]
    return "|".join(parts)


def retrain_dense(runtime: ExperimentRuntime, round_: int, data: TensorData, start: StateDict | None,
                  validation: TensorData | None) -> StateDict:
    """Train every weight on ``data`` with ``[training]``, from ``start`` (None: the seed's random
    init, i.e. version 0); the round's seed makes it deterministic.

    Every strategy that deploys θ¹ this way (``full``, the KA family's deployment round) holds
    bit-identical weights after round 1, so their later rounds start from the same model. Being a
    deterministic function of its inputs, the result is remembered per process: the runs of a
    ``sweep`` or ``compare`` (same process, same config apart from the strategy) train θ¹ once.
    """
    def trained() -> StateDict:
        model = runtime.new_model(0)
        if start is not None:
            model.load_state_dict(start)
        train(model, data, runtime.cfg.training, seed=derive_seed(runtime.cfg.seed, "retrain", round_),
              validation=validation if validation is not None and len(validation) else None)
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    kept = _TRAINED.get_or_compute(_fingerprint(runtime, round_, data, start, validation), trained)
    return {k: v.clone() for k, v in kept.items()}  # the caller's own copy; the kept one stays untouched


@register
class FullUpdate(ServerRetrainStrategy):
    """Full updating: retrain on Dʳ, send every weight."""

    name = "full"
    Params = FullParams

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict:
        start = deployed.weights if self.params.init == "warm" else None
        return retrain_dense(self.runtime, round_, data, start, self.validation)
