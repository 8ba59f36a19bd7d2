"""The one training loop: server retraining, DPU/KA refinement and FL local training all use it.

Hooks let methods observe or constrain optimisation without copying the loop:

* ``on_step(grads, deltas)`` is called after every optimiser step with the loss gradient at the
  pre-step weights g(w^{q-1}) and the step Δw^q, per named parameter (DPU's local contribution,
  thesis Eq. 5.9, accumulates −g⊙Δw from these).
* ``post_step(model)`` runs after every step (DPU's sparse fine-tuning rewinds masked-out weights
  here; FedProx-style constraints could too).
* ``extra_loss(model)`` adds a term to the loss (FedProx's proximal term).
* ``loss_fn(model, x, y)`` replaces the batch loss ``cross_entropy(model(x), y)`` altogether, for
  objectives that need the batch itself (layer-wise knowledge transfer from a teacher).

Batches are drawn with a generator seeded from the caller's seed, so a call is deterministic.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from edgeupdate.optim import SGD, Adam
from edgeupdate.train_config import TrainConfig
from edgeupdate.seeding import torch_generator

NamedTensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TensorData:
    """Features ``x`` (float32, N×C×H×W) and labels ``y`` (int64, N)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor | slice) -> "TensorData":
        return TensorData(self.x[index], self.y[index])


@dataclass
class TrainReport:
    """What a training call measured: per-epoch loss, steps, best validation accuracy."""

    epoch_losses: list[float] = field(default_factory=list)
    steps: int = 0
    best_val_accuracy: float | None = None
    best_epoch: int | None = None

    @property
    def final_loss(self) -> float:
        return self.epoch_losses[-1] if self.epoch_losses else math.nan


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("training.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


def make_optimizer(params, cfg: TrainConfig) -> Adam | SGD:
    """Adam or SGD from ``cfg`` (:mod:`edgeupdate.optim`: torch's multi-tensor kernels, bitwise the
    weights of ``torch.optim``, without importing torch's compiler stack in every process)."""
    if cfg.optimizer == "adam":
        return Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                   weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam | sgd)")


def lr_at(cfg: TrainConfig, epoch: int, epochs: int | None = None) -> float:
    """Learning rate of ``epoch`` in a run of ``epochs`` epochs (default ``cfg.epochs``).

    A run stretched by ``min_steps`` stretches the step schedule by ``epochs / cfg.epochs``.
    """
    epochs = cfg.epochs if epochs is None else epochs
    if cfg.lr_schedule == "step":
        drops = (epoch * cfg.epochs) // (max(cfg.lr_step_epochs, 1) * epochs) if cfg.epochs else 0
        return cfg.lr * cfg.lr_gamma ** drops
    if cfg.lr_schedule == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
    return cfg.lr


def train(
    model: nn.Module,
    data: TensorData,
    cfg: TrainConfig,
    seed: int,
    *,
    params: list[tuple[str, nn.Parameter]] | None = None,
    on_step: Callable[[NamedTensors, NamedTensors], None] | None = None,
    post_step: Callable[[nn.Module], None] | None = None,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    validation: TensorData | None = None,
) -> TrainReport:
    """Train ``model`` in place on ``data``; return what was measured.

    ``params`` restricts optimisation to those named parameters (default: all that require grad).
    With ``validation`` the weights of the epoch with the best validation accuracy are kept
    (model selection as in the thesis, §5.5 "General Settings").
    """
    device = resolve_device(cfg.device)
    model.to(device)
    named = params if params is not None else [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = make_optimizer([p for _, p in named], cfg)
    gen = torch_generator(seed, "batches")
    report = TrainReport()
    best_state = None
    n = len(data)
    epochs = cfg.epochs_for(n)
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch, epochs)
        model.train()
        order = torch.randperm(n, generator=gen)
        total, seen = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if len(idx) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                continue  # BatchNorm cannot train on a single sample
            x, y = data.x[idx].to(device), data.y[idx].to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y) if loss_fn is not None else F.cross_entropy(model(x), y)
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            loss.backward()
            if on_step is not None:
                before = {name: p.detach().clone() for name, p in named}
                grads = {name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
                         for name, p in named}
            opt.step()
            if on_step is not None:
                on_step(grads, {name: p.detach() - before[name] for name, p in named})
            if post_step is not None:
                post_step(model)
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            report.steps += 1
        report.epoch_losses.append(total / max(seen, 1))
        if validation is not None:
            _, acc = evaluate(model, validation)
            if report.best_val_accuracy is None or acc > report.best_val_accuracy:
                report.best_val_accuracy, report.best_epoch = acc, epoch
                best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return report


class Batches(Protocol):
    """Data taken a batch at a time: :class:`TensorData`, or raw images normalised per batch
    (:class:`~edgeupdate.datasets.base.ImageData`)."""

    def __len__(self) -> int: ...

    def subset(self, index: slice) -> TensorData: ...


@torch.no_grad()
def evaluate(model: nn.Module, data: Batches, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data`` (``(nan, nan)`` if empty)."""
    if len(data) == 0:
        return math.nan, math.nan
    device = next(model.parameters()).device
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = data.subset(slice(start, start + batch_size))
        x, y = batch.x.to(device), batch.y.to(device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum / len(data), correct / len(data)
