"""The KA family as server-retrain strategies (Chen et al. 2022).

``ka`` (Eq. 14–16), ``ml`` (Eq. 12–13), ``lra`` (Eq. 5–8), ``rm`` (random mask, seeded), ``lru``
(L·R with seeded R) and ``fp`` (L1 filter pruning). The server refines the *deployed* model
(Algorithm 1, :func:`edgeupdate.algorithms.factorized.compact_refine`) and sends only the learnable
parameters; the device reconstitutes its new weights from its own current ones (Algorithm 2, in
:mod:`edgeupdate.updates.reconstitution`), and the result hash proves it matches the server's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeupdate.algorithms.factorized import CompactConfig, CompactResult, build_package, compact_refine
from edgeupdate.clients.runtime import StateDict
from edgeupdate.seeding import derive_seed
from edgeupdate.strategies.base import ModelVersion, ServerRetrainStrategy
from edgeupdate.strategies.registry import register
from edgeupdate.training import TensorData
from edgeupdate.updates import UpdatePackage


@dataclass(frozen=True)
class CompactParams:
    """Size knobs of the KA family (each method uses its own)."""

    n: int = field(default=3, metadata={"min": 1})  # KA augmenting vectors
    rank: int = field(default=4, metadata={"min": 1})  # ML / LRA / LRU rank r
    proportion: float = field(default=0.01, metadata={"gt": 0.0, "max": 1.0})  # RM proportion P
    compression: float = field(default=0.5, metadata={"min": 0.0, "max": 0.95})  # FP compression rate c


class CompactRefinement(ServerRetrainStrategy):
    """Base of the KA family: refine the deployed model, send the learnable set."""

    Params = CompactParams
    method = "ka"

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict:
        p = self.params
        cfg = CompactConfig(method=self.method, n=p.n, rank=p.rank, proportion=p.proportion,
                            compression=p.compression)
        self._result: CompactResult = compact_refine(
            self.runtime.new_model(), deployed.weights, data, self.cfg.training, cfg,
            derive_seed(self.cfg.seed, "retrain", round_),
            validation=self.validation if len(self.validation) else None)
        self.log.extra.update(update_params=float(self._result.update_param_count),
                              model_params=float(self._result.model_param_count))
        return self._result.state

    def release_package(self, round_: int, base: ModelVersion, target: StateDict) -> UpdatePackage:
        pkg = self.cfg.package
        return build_package(self._result, base.weights, base_version=base.number, target_version=round_,
                             precision=pkg.precision, coding=pkg.coding)


def _family(method: str, doc: str) -> type[CompactRefinement]:
    cls = type(method.upper(), (CompactRefinement,), {"name": method, "method": method, "__doc__": doc})
    return register(cls)


KA = _family("ka", "Knowledge Augmentation: frozen U, V; learn U′, V′, s′ (Eq. 14–16).")
ML = _family("ml", "Mapping Learning: frozen R = V[:, :r]ᵀ; learn L (Eq. 12–13).")
LRA = _family("lra", "Low-rank approximation baseline: learn L and R (Eq. 5–8).")
RM = _family("rm", "Random mask of proportion P from a seed (Konečný et al. 2016).")
LRU = _family("lru", "Low-rank update W + L·R with R from a seed (Konečný et al. 2016).")
FP = _family("fp", "L1-norm filter pruning at compression rate c; remaining parameters sent.")
