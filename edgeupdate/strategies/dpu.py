"""The DPU family as server-retrain strategies (thesis ch. 5).

``dpu`` (Algorithm 5.2, combined contribution, Eq. 5.10), ``gcpu`` (Algorithm 5.1, λ = 1),
``lcpu`` (λ = 0) and ``rpu`` (random k per layer); the magnitude-pruning baseline is
:mod:`edgeupdate.strategies.pruning`. The algorithms live in
:mod:`edgeupdate.algorithms.partial`; these classes only decide what to train from and how the
result is packaged: changed values + encoded positions (``sparse_package``), biases and
normalisation parameters dense, and — on re-initialisation (§5.4.2) — a seed from which the device
regenerates the init (``seeded_package``).

Re-initialisation reloads the factory image w⁰ (version 0, the model every device shipped with), as
the thesis (§5.4.2: "re-initialise the weights to w⁰") and the reference implementation (which
saves the initial model once and reloads it) do; the package carries w⁰'s seed and the device
regenerates it. ``reinit_init = "fresh"`` keeps the earlier variant: a new seeded random draw per
re-initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeupdate.algorithms.partial import PartialUpdateConfig, partial_update, should_reinitialize
from edgeupdate.algorithms.partial_cost import VALUE_BITS, analytic_bytes
from edgeupdate.seeding import derive_seed
from edgeupdate.strategies.registry import register
from edgeupdate.strategies.server_retrain import ServerRetrainStrategy
from edgeupdate.strategies.versions import ModelVersion
from edgeupdate.training import TensorData
from edgeupdate.updates import StateDict, UpdatePackage, seeded_package, sparse_package, zoo_initializer_name


@dataclass(frozen=True)
class PartialParams:
    """Deep Partial Updating options (thesis §5.4–5.5)."""

    k: float = field(default=0.005, metadata={"gt": 0.0, "max": 1.0})  # updating ratio of maskable weights
    lam: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # weight of the global contribution
    mask_biases: bool = False  # default: biases/norm params trained fully and sent dense
    rewinding: str = field(default="one-shot", metadata={"choices": ("one-shot", "iterative")})
    reinitialize: bool = False  # re-init when |Dʳ| > 2·|D at last re-init| (§5.4.2)
    # what a re-init restarts from: "factory" = w⁰ (the thesis, the reference code), "fresh" = a new draw
    reinit_init: str = field(default="factory", metadata={"choices": ("factory", "fresh")})
    skip_if_no_gain: bool = False  # do not push when validation accuracy does not improve (§5.5)


class PartialUpdating(ServerRetrainStrategy):
    """Base of the DPU family: one selector, the rest shared.

    The server keeps a *training line*: the model each round's update starts from. Normally it is
    the deployed model. With ``reinitialize`` a round may restart the line from w⁰ (§5.4.2,
    :meth:`reinit_start`); with ``skip_if_no_gain`` a round is pushed only when the line beats the deployed
    model on validation (§5.5). Both together are the thesis's scheme (§5.5.3): after a
    re-initialisation the line keeps training from the re-initialised model in the next rounds while
    the devices keep the better model they hold, until the line wins; then one package — the init
    seed plus every value the line changed since — brings the devices onto it.
    """

    Params = PartialParams
    selector = "combined"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._reinit_samples = 0
        self._line: StateDict | None = None        # the training line while it differs from the deployed model
        self._line_seed: int | None = None         # init seed of a line re-initialised since the last push
        self._held_val: float | None = None        # validation accuracy of the model the devices hold
        self._reinit_seed: int | None = None       # what the next package regenerates on the device
        self._last_result = None

    def _config(self) -> PartialUpdateConfig:
        lam = {"global": 1.0, "local": 0.0}.get(self.selector, self.params.lam)
        return PartialUpdateConfig(k=self.params.k, selector=self.selector, lam=lam,
                                   mask_biases=self.params.mask_biases, rewinding=self.params.rewinding)

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict | None:
        init = None
        reinit = self.params.reinitialize and (round_ == 1 or should_reinitialize(len(data), self._reinit_samples))
        seed_now = None
        if reinit:
            init, seed_now = self.reinit_start(round_)
            self._reinit_samples = len(data)
        validation = self.validation if len(self.validation) else None
        start = self._line if self._line is not None else deployed.weights
        result = partial_update(self.runtime.new_model(), start, data, self.cfg.training,
                                self._config(), derive_seed(self.cfg.seed, "retrain", round_),
                                validation=validation, init=init)
        self._last_result = result
        info = result.info
        self.log.extra.update(changed_weights=float(info.changed_count), maskable_weights=float(info.maskable_count),
                              loss_after_rewind=float(info.loss_after_rewind), reinitialized=float(reinit))
        state = {k: v.detach().cpu().clone() for k, v in result.state.items()}
        if not self.params.skip_if_no_gain or validation is None or round_ == 1:
            self._line = self._line_seed = self._held_val = None
            self._reinit_seed = seed_now
            return state
        # info.val_accuracy_base is the start point's (the line's) validation accuracy. The line
        # moves on when this round improved it, and always after a re-initialisation: a restarted
        # line is judged against the deployed model only when deciding to push (as the reference
        # code does), so it can catch up over the next rounds.
        if reinit or info.val_accuracy_final > info.val_accuracy_base:
            line, line_val = state, info.val_accuracy_final
            line_seed = seed_now if reinit else self._line_seed
        elif self._line is not None:
            line, line_val, line_seed = self._line, info.val_accuracy_base, self._line_seed
        else:
            return None  # no gain: devices and line stay on the deployed model, nothing is sent
        held_val = info.val_accuracy_base if self._line is None else self._held_val
        if line_val > held_val:
            self._line = self._line_seed = self._held_val = None
            self._reinit_seed = line_seed  # the package regenerates the init, then sets the line's values
            return line
        self._line, self._line_seed, self._held_val = line, line_seed, held_val
        return None

    def reinit_start(self, round_: int) -> tuple[StateDict, int]:
        """The weights a re-initialisation at ``round_`` restarts from, and the seed the device
        regenerates them from: w⁰ (``runtime.initial_state``, seed part 0) by default, a new draw
        (seed part ``reinit-<round>``) with ``reinit_init = "fresh"``."""
        if self.params.reinit_init == "factory":
            return ({k: v.clone() for k, v in self.runtime.initial_state.items()},
                    derive_seed(self.cfg.seed, "init", 0))
        part = f"reinit-{round_}"
        return self.runtime.new_model(part).state_dict(), derive_seed(self.cfg.seed, "init", part)

    def release_package(self, round_: int, base: ModelVersion, target: StateDict) -> UpdatePackage:
        pkg = self.cfg.package
        dense = self._last_result.info.dense_names if self._last_result is not None else ()
        if self._last_result is not None:  # the thesis's estimate, next to the measured bytes_down
            info, bits = self._last_result.info, VALUE_BITS[pkg.precision]
            self.log.extra["analytic_release_bytes"] = (analytic_bytes(self.params.k, info.maskable_count, bits)
                                                        + bits / 8 * info.dense_count)
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
                                  precision=pkg.precision, coding=pkg.coding, value_coding=pkg.value_coding)
        return sparse_package(base.weights, target, method=self.name, target_version=round_,
                              base_version=base.number, precision=pkg.precision, coding=pkg.coding,
                              value_coding=pkg.value_coding, dense_names=dense)



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
