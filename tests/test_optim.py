"""edgeupdate's optimisers: bitwise torch.optim's weights, without importing torch's compiler stack."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from edgeupdate.optim import SGD, Adam
from edgeupdate.seeding import torch_generator
from edgeupdate.training import TensorData, TrainConfig, train

from tests.conftest import REPO


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _torch_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """torch's default (per-parameter loop) implementation of ``cfg``'s optimiser."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay, foreach=False)


@pytest.mark.parametrize("cfg", [
    TrainConfig(epochs=3, batch_size=16, lr_schedule="step", lr_step_epochs=1),
    TrainConfig(epochs=2, batch_size=16, weight_decay=1e-3),
    TrainConfig(epochs=2, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    TrainConfig(epochs=2, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.0),
], ids=["adam-step-schedule", "adam-weight-decay", "sgd-nesterov", "sgd-plain"])
def test_training_weights_equal_torch_optim_bit_for_bit(cfg: TrainConfig) -> None:
    """No published number moves: train() gives the weights of a plain loop with torch.optim."""
    g = torch.Generator().manual_seed(3)
    data = TensorData(torch.randn(64, 1, 4, 4, generator=g), torch.randint(0, 3, (64,), generator=g))
    ours = _model()
    train(ours, data, cfg, seed=5)

    plain = _model()
    opt = _torch_optimizer(plain, cfg)
    gen = torch_generator(5, "batches")
    for epoch in range(cfg.epochs):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (cfg.lr_gamma ** epoch if cfg.lr_schedule == "step" else 1.0)
        plain.train()
        order = torch.randperm(len(data), generator=gen)
        for start in range(0, len(data), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(plain(data.x[idx]), data.y[idx]).backward()
            opt.step()
    for (name, a), b in zip(ours.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("make", [lambda ps: Adam(ps, lr=0.01), lambda ps: SGD(ps, lr=0.1, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
def test_a_parameter_without_gradient_is_left_alone_and_joins_later_as_in_torch(make) -> None:
    torch.manual_seed(1)
    a, b = nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(3))
    ref_a, ref_b = nn.Parameter(a.detach().clone()), nn.Parameter(b.detach().clone())
    b_before = b.detach().clone()
    ours = make([a, b])
    ref = (torch.optim.Adam([ref_a, ref_b], lr=0.01, foreach=False) if isinstance(ours, Adam)
           else torch.optim.SGD([ref_a, ref_b], lr=0.1, momentum=0.9, foreach=False))
    for step in range(4):
        for opt, x, y in ((ours, a, b), (ref, ref_a, ref_b)):
            opt.zero_grad()
            loss = (x ** 2).sum() + ((y ** 3).sum() if step >= 2 else 0)  # b has no gradient in steps 0–1
            loss.backward()
            opt.step()
        assert torch.equal(a, ref_a) and torch.equal(b, ref_b), step
        assert torch.equal(b, b_before) == (step < 2)  # b moves from its first step with a gradient


def test_an_empty_parameter_list_is_refused() -> None:
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])


def test_training_does_not_import_torchs_compiler_stack() -> None:
    """Each process that trains (the server, every FL device process) skips torch._dynamo's import."""
    code = ("import sys, torch\n"
            "from edgeupdate.training import TensorData, TrainConfig, train\n"
            "m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))\n"
            "d = TensorData(torch.randn(40, 1, 2, 2), torch.randint(0, 3, (40,)))\n"
            "for opt in ('adam', 'sgd'):\n"
            "    train(m, d, TrainConfig(epochs=1, batch_size=8, optimizer=opt), seed=1)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
