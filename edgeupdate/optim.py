"""Adam and SGD as plain loops over torch's own multi-tensor update kernels.

``torch.optim.Optimizer`` imports ``torch._dynamo`` (the compiler stack: about 1.4 s of CPU and
70 MB per process) on first use, only to mark its methods as not compilable. Every simulated device
process that trains, and the server, paid that at start-up. These classes call the very kernels
``torch.optim.Adam`` / ``SGD`` run with ``foreach=True`` (``_multi_tensor_adam``,
``_multi_tensor_sgd``), with the same state and its lazy initialisation, so the weights are
bitwise those of ``torch.optim`` (``tests/test_optim.py`` pins it against the default per-parameter
path). Only what :func:`edgeupdate.training.train` uses is offered: ``param_groups[0]["lr"]``,
``zero_grad`` and ``step``; dense, real, non-differentiable parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import _multi_tensor_adam
from torch.optim.sgd import _multi_tensor_sgd


class _Loop:
    """What the training loop touches: one parameter group whose ``lr`` it may change per epoch."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups = [{"params": self.params, "lr": lr}]

    @property
    def lr(self) -> float:
        return float(self.param_groups[0]["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    def _with_grad(self) -> list[torch.nn.Parameter]:
        ready = [p for p in self.params if p.grad is not None]
        if any(p.grad.is_sparse for p in ready):
            raise RuntimeError("sparse gradients are not supported")
        return ready


class Adam(_Loop):
    """``torch.optim.Adam(params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay, foreach=True)``."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.state: dict[torch.nn.Parameter, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def step(self) -> None:
        params = self._with_grad()
        for p in params:
            if p not in self.state:  # as torch: created at the parameter's first step with a gradient
                self.state[p] = (torch.tensor(0.0, dtype=torch.get_default_dtype()),
                                 torch.zeros_like(p, memory_format=torch.preserve_format),
                                 torch.zeros_like(p, memory_format=torch.preserve_format))
        steps, exp_avgs, exp_avg_sqs = ([self.state[p][i] for p in params] for i in range(3))
        _multi_tensor_adam(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps, None, None,
                           amsgrad=False, has_complex=False, beta1=self.betas[0], beta2=self.betas[1],
                           lr=self.lr, weight_decay=self.weight_decay, eps=self.eps, maximize=False,
                           capturable=False, differentiable=False, decoupled_weight_decay=False)


class SGD(_Loop):
    """``torch.optim.SGD(params, lr, momentum, nesterov, weight_decay, foreach=True)`` (no dampening)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum requires a momentum")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.buffers: dict[torch.nn.Parameter, torch.Tensor] = {}

    @torch.no_grad()
    def step(self) -> None:
        params = self._with_grad()
        buffers: list[torch.Tensor | None] = [self.buffers.get(p) for p in params]
        _multi_tensor_sgd(params, [p.grad for p in params], buffers, None, None,
                          weight_decay=self.weight_decay, momentum=self.momentum, lr=self.lr, dampening=0.0,
                          nesterov=self.nesterov, maximize=False, has_sparse_grad=False)
        if self.momentum != 0:
            for p, buf in zip(params, buffers):
                self.buffers[p] = buf  # type: ignore[assignment]
