"""The FL baselines, each a thin wrapper around Flower's own strategy class.

| name            | Flower class      | ``strategy.params``                              | paper                       |
|-----------------|-------------------|--------------------------------------------------|-----------------------------|
| ``fedavg``      | ``FedAvg``        | —                                                | McMahan et al. 2017         |
| ``fedprox``     | ``FedProx``       | proximal_mu (device adds μ/2‖w − w_global‖²)     | Li et al. 2020              |
| ``fedadam``     | ``FedAdam``       | server_lr (η), tau (τ), beta_1, beta_2           | Reddi et al. 2021           |
| ``fedyogi``     | ``FedYogi``       | server_lr, tau, beta_1, beta_2                   | Reddi et al. 2021           |
| ``fedadagrad``  | ``FedAdagrad``    | server_lr, tau                                   | Reddi et al. 2021           |
| ``fedavgm``     | ``FedAvgM``       | server_lr, server_momentum                       | Hsu et al. 2019             |
| ``fedmedian``   | ``FedMedian``     | —                                                | Yin et al. 2018             |
| ``fedtrimmedavg``| ``FedTrimmedAvg``| beta (share cut off each tail, < 0.5)            | Yin et al. 2018             |
| ``qfedavg``     | ``QFedAvg``       | q (fairness; devices report ``loss_before``)     | Li et al. 2020 (q-FFL)      |

Every ``Params`` derives from :class:`~edgeupdate.strategies.fl_params.FederatedParams`, so each
one also takes ``[strategy.params.upload]`` (compressed uploads). The client learning rate Flower's
FedOpt family records (``eta_l``) and q-FedAvg's Lipschitz estimate L = 1/lr come from ``[client]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flwr.serverapp.strategy import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    QFedAvg,
    Strategy,
)

from edgeupdate.strategies.federated import FederatedStrategy
from edgeupdate.strategies.fl_params import FederatedParams
from edgeupdate.strategies.registry import register


def _rate(default: float) -> float:
    return field(default=default, metadata={"gt": 0.0})


def _beta(default: float) -> float:
    return field(default=default, metadata={"min": 0.0, "max": 1.0})


# ------------------------------------------------------------------------------- FedProx
@dataclass(frozen=True)
class FedProxParams(FederatedParams):
    """``proximal_mu``: μ of the device's proximal term (0 makes it FedAvg)."""

    proximal_mu: float = field(default=0.01, metadata={"min": 0.0})


@register
class FedProxStrategy(FederatedStrategy):
    """FedProx: Flower's ``FedProx`` puts ``proximal-mu`` into the fit config; devices add the term."""

    name = "fedprox"
    Params = FedProxParams

    def make_inner(self) -> Strategy:
        return FedProx(**self.inner_defaults(), proximal_mu=self.params.proximal_mu)


# ------------------------------------------------------------------------------- FedOpt family
@dataclass(frozen=True)
class FedAdagradParams(FederatedParams):
    """``server_lr`` η and adaptivity ``tau`` τ of the server optimiser (Reddi et al. 2021, Alg. 2)."""

    server_lr: float = _rate(0.01)
    tau: float = _rate(1e-3)


@dataclass(frozen=True)
class FedAdamParams(FedAdagradParams):
    """FedAdagrad's plus the moment decays ``beta_1`` β₁ and ``beta_2`` β₂."""

    beta_1: float = _beta(0.9)
    beta_2: float = _beta(0.99)


@register
class FedAdagradStrategy(FederatedStrategy):
    """FedAdagrad through ``flwr.serverapp.strategy.FedAdagrad``."""

    name = "fedadagrad"
    Params = FedAdagradParams

    def make_inner(self) -> Strategy:
        p = self.params
        return FedAdagrad(**self.inner_defaults(), eta=p.server_lr, eta_l=self.cfg.client.lr, tau=p.tau)


@register
class FedAdamStrategy(FederatedStrategy):
    """FedAdam through ``flwr.serverapp.strategy.FedAdam``."""

    name = "fedadam"
    Params = FedAdamParams

    def make_inner(self) -> Strategy:
        p = self.params
        return FedAdam(**self.inner_defaults(), eta=p.server_lr, eta_l=self.cfg.client.lr, tau=p.tau,
                       beta_1=p.beta_1, beta_2=p.beta_2)


@register
class FedYogiStrategy(FederatedStrategy):
    """FedYogi through ``flwr.serverapp.strategy.FedYogi``."""

    name = "fedyogi"
    Params = FedAdamParams

    def make_inner(self) -> Strategy:
        p = self.params
        return FedYogi(**self.inner_defaults(), eta=p.server_lr, eta_l=self.cfg.client.lr, tau=p.tau,
                       beta_1=p.beta_1, beta_2=p.beta_2)


# ------------------------------------------------------------------------------- FedAvgM
@dataclass(frozen=True)
class FedAvgMParams(FederatedParams):
    """Server SGD on the pseudo-gradient: learning rate ``server_lr`` and momentum ``server_momentum``."""

    server_lr: float = _rate(1.0)
    server_momentum: float = _beta(0.5)


@register
class FedAvgMStrategy(FederatedStrategy):
    """FedAvgM through ``flwr.serverapp.strategy.FedAvgM``."""

    name = "fedavgm"
    Params = FedAvgMParams

    def make_inner(self) -> Strategy:
        p = self.params
        return FedAvgM(**self.inner_defaults(), server_learning_rate=p.server_lr,
                       server_momentum=p.server_momentum)


# ------------------------------------------------------------------------------- robust
@dataclass(frozen=True)
class FedMedianParams(FederatedParams):
    """FedMedian has no parameters: the coordinate-wise median of the device models."""


@register
class FedMedianStrategy(FederatedStrategy):
    """FedMedian through ``flwr.serverapp.strategy.FedMedian``."""

    name = "fedmedian"
    Params = FedMedianParams

    def make_inner(self) -> Strategy:
        return FedMedian(**self.inner_defaults())


@dataclass(frozen=True)
class FedTrimmedAvgParams(FederatedParams):
    """``beta``: the share of device values cut off at each tail, per coordinate (0 ≤ β < 0.5)."""

    beta: float = field(default=0.2, metadata={"min": 0.0})

    def __post_init__(self) -> None:
        if not self.beta < 0.5:
            raise ValueError(f"beta: must be < 0.5 (the share cut off at each tail); got {self.beta!r}")


@register
class FedTrimmedAvgStrategy(FederatedStrategy):
    """FedTrimmedAvg through ``flwr.serverapp.strategy.FedTrimmedAvg``."""

    name = "fedtrimmedavg"
    Params = FedTrimmedAvgParams

    def make_inner(self) -> Strategy:
        return FedTrimmedAvg(**self.inner_defaults(), beta=self.params.beta)


# ------------------------------------------------------------------------------- q-FedAvg
@dataclass(frozen=True)
class QFedAvgParams(FederatedParams):
    """``q`` ≥ 0: how strongly devices with a high loss are favoured (q = 0: FedAvg-like)."""

    q: float = field(default=0.1, metadata={"min": 0.0})


@register
class QFedAvgStrategy(FederatedStrategy):
    """q-FedAvg through ``flwr.serverapp.strategy.QFedAvg``; the loss is F_k(w_global) (``loss_before``)."""

    name = "qfedavg"
    Params = QFedAvgParams
    needs_loss_before = True

    def make_inner(self) -> Strategy:
        return QFedAvg(client_learning_rate=self.cfg.client.lr, q=self.params.q, train_loss_key="loss_before",
                       **self.inner_defaults())


@dataclass(frozen=True)
class FedAvgParams(FederatedParams):
    """FedAvg has no parameters beyond ``[client]`` and the upload encoding."""


@register
class FedAvgStrategy(FederatedStrategy):
    """FedAvg (McMahan et al. 2017) through ``flwr.serverapp.strategy.FedAvg``."""

    name = "fedavg"
    Params = FedAvgParams

    def make_inner(self) -> Strategy:
        return FedAvg(**self.inner_defaults())
