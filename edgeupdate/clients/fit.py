"""On-device training for federated strategies: train locally, encode the upload.

The device trains from its deployed model (= the global model w_global of this round) on the
samples it has collected so far, with ``[client]`` epochs, batch size, optimiser and learning rate,
and uploads the result as an encoded package (``len()`` of it is ``bytes_up``). The fit task says
how (see :mod:`edgeupdate.protocol`):

* ``proximal-mu`` μ > 0 adds FedProx's proximal term μ/2·‖w − w_global‖² (Li et al. 2020, Eq. 2);
* ``upload-*`` entries give the :class:`~edgeupdate.clients.upload.UploadSpec` (dense, top-k with
  error feedback, random mask, low rank; fp32/fp16/int8 values).

Besides ``num-examples`` and ``train_loss`` (mean loss of the last local epoch) the device reports,
when the task asks for it (``loss-before``), ``loss_before``: the loss of w_global on its training
data before training, F_k(w_global), which q-FedAvg weighs devices by (Li et al. 2020, q-FFL,
Algorithm 2). It costs a pass over the device's data, so other strategies do not ask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from flwr.app import RecordDict
from torch import nn

from edgeupdate.runtime import ExperimentRuntime
from edgeupdate.updates import StateDict
from edgeupdate.clients.upload import UploadSpec, encode_sketched, load_residual, residual_l2, save_residual
from edgeupdate.clients.upload_structured import make_structure, structure_seed
from edgeupdate.models.cost import ComputeCost, training_cost
from edgeupdate.seeding import derive_seed
from edgeupdate.training import TrainConfig, evaluate, train

Metrics = dict[str, float | int]


def local_train_config(runtime: ExperimentRuntime) -> TrainConfig:
    """``[client]`` settings as a :class:`TrainConfig` (CPU: a simulated device has no GPU)."""
    c = runtime.cfg.client
    return TrainConfig(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, optimizer=c.optimizer,
                       momentum=c.momentum, device="cpu")


def fit(runtime: ExperimentRuntime, weights: StateDict, version: int, device_id: int, round_: int,
        task: Mapping[str, Any], store: RecordDict | None = None) -> tuple[bytes, Metrics]:
    """Train locally from ``weights`` (version ``version``); return (upload payload, metrics).

    ``store`` is the device's persistent state (``Context.state``): an error-feedback upload keeps
    its residual there between rounds and raises :class:`~edgeupdate.clients.upload.UploadError`
    without one.
    """
    spec = UploadSpec.from_task(task)
    data = runtime.train_subset(runtime.layout.collected_indices(device_id, round_))
    model = runtime.new_model()
    model.load_state_dict(weights)
    metrics: Metrics = {"num-examples": len(data)}
    if task.get("loss-before"):
        metrics["loss_before"] = evaluate(model, data)[0]
    residual = load_residual(store, spec, weights)
    names = [n for n, _ in model.named_parameters()]
    structure = make_structure(spec, model, weights, structure_seed(runtime.cfg.seed, round_, device_id))
    report = train(model, data, local_train_config(runtime),
                   seed=derive_seed(runtime.cfg.seed, "fit", round_, device_id),
                   params=structure.params if structure is not None else None,
                   post_step=structure.post_step if structure is not None else None,
                   extra_loss=proximal_term(weights, float(task.get("proximal-mu", 0.0)), names))
    if structure is not None:
        package = structure.encode(model, version, spec.precision)
    else:
        trained = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        sketched = encode_sketched(spec, weights, trained, version, residual)
        package, residual = sketched.package, sketched.residual
        save_residual(store, spec, residual)
    metrics["train_loss"] = report.final_loss
    if spec.keeps_residual:
        metrics["residual_l2"] = residual_l2(residual)
    return package.encode(), metrics


def fit_cost(runtime: ExperimentRuntime, device_id: int, round_: int) -> ComputeCost:
    """FLOPs and peak memory of :func:`fit` on this device's collected data (for the fleet model)."""
    c = runtime.cfg.client
    samples = len(runtime.layout.collected_indices(device_id, round_))
    return training_cost(runtime.forward, samples, c.epochs, c.batch_size, c.optimizer, c.momentum)


def proximal_term(anchor: StateDict, mu: float,
                  names: Iterable[str] | None = None) -> Callable[[nn.Module], torch.Tensor] | None:
    """FedProx's μ/2·‖w − w_global‖² over the parameters ``names`` (None when μ = 0).

    Parameters are looked up by module path, so a parametrised weight (e.g. W₀ + L·R of a low-rank
    upload) counts with its effective value.
    """
    if mu < 0:
        raise ValueError(f"proximal-mu must be >= 0, got {mu}")
    if mu == 0:
        return None
    anchors = {k: v.detach().clone() for k, v in anchor.items()}
    fixed = list(names) if names is not None else None

    def term(model: nn.Module) -> torch.Tensor:
        keys = fixed if fixed is not None else [n for n, _ in model.named_parameters()]
        total = sum(((_lookup(model, n) - anchors[n]) ** 2).sum() for n in keys)
        return 0.5 * mu * total

    return term


def _lookup(model: nn.Module, name: str) -> torch.Tensor:
    module_name, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(module_name), attr)
