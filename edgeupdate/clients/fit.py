"""On-device training for federated strategies: train locally, encode the upload.

The device trains from its deployed model on the samples it has collected so far and uploads its
new weights as an encoded package (``len()`` of it is ``bytes_up``).
"""

from __future__ import annotations

from typing import Any

import torch

from edgeupdate.clients.runtime import ExperimentRuntime, StateDict
from edgeupdate.seeding import derive_seed
from edgeupdate.training import TrainConfig, train
from edgeupdate.updates import dense_package


def local_train_config(runtime: ExperimentRuntime) -> TrainConfig:
    c = runtime.cfg.client
    return TrainConfig(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, optimizer=c.optimizer,
                       momentum=c.momentum, device="cpu")


def fit(runtime: ExperimentRuntime, weights: StateDict, version: int, device_id: int, round_: int,
        task: Any) -> tuple[bytes, dict[str, float | int]]:
    """Train locally from ``weights``; return (upload payload, metrics)."""
    data = runtime.train_subset(runtime.layout.collected_indices(device_id, round_))
    model = runtime.new_model()
    model.load_state_dict(weights)
    report = train(model, data, local_train_config(runtime),
                   seed=derive_seed(runtime.cfg.seed, "fit", round_, device_id),
                   extra_loss=proximal_term(weights, float(task.get("proximal-mu", 0.0))))
    trained = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = dense_package(trained, method="fl-update", target_version=version,
                            base=weights, base_version=version).encode()
    return payload, {"num-examples": len(data), "train_loss": report.final_loss}


def proximal_term(anchor: StateDict, mu: float):
    """FedProx's μ/2·‖w − w_global‖² (None when μ = 0)."""
    if mu <= 0:
        return None
    anchors = {k: v.detach().clone() for k, v in anchor.items()}

    def term(model: torch.nn.Module) -> torch.Tensor:
        return 0.5 * mu * sum(((p - anchors[n]) ** 2).sum() for n, p in model.named_parameters())

    return term
