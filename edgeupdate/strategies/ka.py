"""The KA family as server-retrain strategies (Chen et al. 2022).

``ka`` (Eq. 14–16), ``ml`` (Eq. 12–13), ``lra`` (Eq. 5–8), ``rm`` (random mask, seeded), ``lru``
(W + L·R, learned R (r × i), seeded L: the paper's orientation, Table 1), ``lru-out`` (learned
L (o × r), seeded R), ``fp`` (L1 filter pruning) and ``bn-only`` (a control: only biases and
normalisation γ/β are refreshed, sent dense — the part every other method's package also carries). The server refines the *deployed* model
(Algorithm 1, :func:`edgeupdate.algorithms.factorized.compact_refine`) and sends only the learnable
parameters; the device reconstitutes its new weights from its own current ones (Algorithm 2, in
:mod:`edgeupdate.updates.reconstitution`), and the result hash proves it matches the server's.

Round 1 is the paper's pre-deployment (Eq. 1): with ``deploy = true`` (the default) the server
trains θ¹ on D¹ exactly as ``full`` does (same code, same seed, so every method of the family, and
``full``, deploys the bit-identical θ¹) and sends it dense; every later round is a compact update.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from edgeupdate.algorithms.factorized import (
    FACTOR_METHODS,
    CompactConfig,
    CompactConfigError,
    CompactResult,
    build_package,
    check_ranks,
    compact_refine,
)
from edgeupdate.runtime import config_model
from edgeupdate.configs import ConfigError, ExperimentConfig
from edgeupdate.models.zoo import count_parameters
from edgeupdate.seeding import derive_seed
from edgeupdate.strategies.full import retrain_dense
from edgeupdate.strategies.registry import register
from edgeupdate.strategies.server_retrain import ServerRetrainStrategy
from edgeupdate.strategies.versions import ModelVersion
from edgeupdate.training import TensorData
from edgeupdate.updates import StateDict, UpdatePackage


@dataclass(frozen=True)
class CompactParams:
    """Size knobs of the KA family (each method uses its own) and the refinement schedule."""

    n: int = field(default=3, metadata={"min": 0})  # KA augmenting vectors (0: refine s′ = s only)
    rank: int = field(default=4, metadata={"min": 1})  # ML / LRA / LRU rank r
    proportion: float = field(default=0.01, metadata={"gt": 0.0, "max": 1.0})  # RM proportion P
    compression: float = field(default=0.5, metadata={"min": 0.0, "max": 0.95})  # FP compression rate c
    # std of the random start of what a method adds: KA's U′, V′ and new s′ₘ₊₁… (Eq. 16; a new
    # direction's product s′·U′·V′ᵀ starts near init_scale³) and LRU's learned factor (R, or L for lru-out)
    init_scale: float = field(default=1e-3, metadata={"gt": 0.0, "max": 1.0})
    epochs: int = field(default=0, metadata={"min": 0})  # refinement epochs on Dʳ; 0: [training].epochs
    lr: float = field(default=0.0, metadata={"min": 0.0})  # refinement learning rate; 0: [training].lr
    deploy: bool = True  # round 1 trains θ¹ on D¹ fully and sends it dense (Eq. 1)


def compact_config(method: str, params: CompactParams) -> CompactConfig:
    """The algorithm's settings for ``method`` from the strategy parameters."""
    return CompactConfig(method=method, n=params.n, rank=params.rank, proportion=params.proportion,
                         compression=params.compression, init_scale=params.init_scale)


class CompactRefinement(ServerRetrainStrategy):
    """Base of the KA family: deploy θ¹, then refine the deployed model and send the learnable set."""

    Params = CompactParams
    method = "ka"
    _result: CompactResult | None = None  # this round's refinement (None: a dense deployment)

    @classmethod
    def check_config(cls, cfg: ExperimentConfig, params: CompactParams) -> None:
        """Raise :class:`ConfigError` before any training if the model cannot hold the setting:
        n / rank above a layer's min(o, i), or ``fp`` on a model without prunable filters."""
        super().check_config(cfg, params)
        model = config_model(cfg, seed=0)
        if cls.method in FACTOR_METHODS:
            try:
                check_ranks(model, compact_config(cls.method, params))
            except CompactConfigError as err:
                key = "n" if cls.method == "ka" else "rank"
                raise ConfigError(f"strategy.params.{key}", f"{err} in model {cfg.model.name!r}") from None
        elif cls.method == "fp":
            from edgeupdate.algorithms.filter_pruning import PruningError, pruning_plan

            try:
                plan = pruning_plan(model)
            except PruningError as err:
                raise ConfigError("model.name", f"fp: {err}") from None
            if not plan:
                raise ConfigError("model.name", f"fp needs prunable conv filters; model {cfg.model.name!r} has none")

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict:
        p = self.params
        validation = self.validation if len(self.validation) else None
        if round_ == 1 and p.deploy:
            self._result = None
            state = retrain_dense(self.runtime, round_, data, None, validation)
            size = float(count_parameters(self.runtime.new_model()))
            self.log.extra.update(update_params=size, model_params=size)
            return state
        train_cfg = self.cfg.training
        if p.epochs:
            train_cfg = dataclasses.replace(train_cfg, epochs=p.epochs)
        if p.lr:
            train_cfg = dataclasses.replace(train_cfg, lr=p.lr)
        self._result = compact_refine(
            self.runtime.new_model(), deployed.weights, data, train_cfg, compact_config(self.method, p),
            derive_seed(self.cfg.seed, "retrain", round_), validation=validation)
        self.log.extra.update(update_params=float(self._result.update_param_count),
                              model_params=float(self._result.model_param_count))
        return self._result.state

    def release_package(self, round_: int, base: ModelVersion, target: StateDict) -> UpdatePackage:
        if self._result is None:  # the deployment round: θ¹ travels dense
            return super().release_package(round_, base, target)
        pkg = self.cfg.package
        return build_package(self._result, base.weights, base_version=base.number, target_version=round_,
                             precision=pkg.precision, coding=pkg.coding, value_coding=pkg.value_coding)


def _family(method: str, doc: str, class_name: str | None = None) -> type[CompactRefinement]:
    name = class_name or method.upper()  # the module attribute it is bound to: checkpoints pickle it by name
    cls = type(name, (CompactRefinement,), {"name": method, "method": method, "__doc__": doc,
                                            "__module__": __name__, "__qualname__": name})
    return register(cls)


KA = _family("ka", "Knowledge Augmentation: frozen U, V; learn U′, V′, s′ (Eq. 14–16).")
ML = _family("ml", "Mapping Learning: frozen R = V[:, :r]ᵀ; learn L (Eq. 12–13).")
LRA = _family("lra", "Low-rank approximation baseline: learn L and R (Eq. 5–8).")
RM = _family("rm", "Random mask of proportion P from a seed (Konečný et al. 2016).")
LRU = _family("lru", "Low-rank update W + L·R: learn R (r × i), L from a seed (Konečný et al. 2016; "
                     "the orientation Chen et al.'s Table 1 counts).")
LRU_OUT = _family("lru-out", "Low-rank update W + L·R: learn L (o × r), R from a seed.", "LRU_OUT")
FP = _family("fp", "L1-norm filter pruning at compression rate c; remaining parameters sent.")
BN_ONLY = _family("bn-only", "Control: refine only biases and normalisation γ/β, send them dense.", "BN_ONLY")
