"""What running or training a model costs a device: FLOPs and peak memory, counted on the model.

:func:`forward_profile` runs one sample through the model with forward hooks on its leaf modules
and counts multiply-adds as 2 FLOPs (Linear: 2·in·out, Conv: 2·(c_in/groups)·k_h·k_w·c_out·H·W),
element-wise layers (activations, normalisation, pooling) as one FLOP per output element, and the
activation elements a backward pass must keep.

:func:`training_cost` and :func:`inference_cost` turn that into what the fleet model charges
(:mod:`edgeupdate.fleet.rounds`): training costs ≈ 3× the forward FLOPs per sample and epoch
(forward + backward w.r.t. activations and weights) and holds weights, gradients, optimiser slots
and a batch of activations — which is why on-device training needs far more memory than inference
(Qu thesis ch. 4, Table 4.2: 2.7–3× the compute and 47–103× the peak memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

FLOAT32_BYTES = 4


@dataclass(frozen=True)
class ForwardProfile:
    """Per-sample costs of one forward pass."""

    flops: float
    activation_elements: int  # every leaf module's output, kept for the backward pass
    largest_activation_elements: int  # the largest single output (inference working set)
    input_elements: int
    parameter_elements: int


@dataclass(frozen=True)
class ComputeCost:
    """Arithmetic and peak memory of a piece of on-device work."""

    flops: float
    peak_memory_bytes: int


def _leaf_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> float:
    if isinstance(module, nn.Linear):
        flops = 2.0 * module.in_features * module.out_features
        return flops + (module.out_features if module.bias is not None else 0)
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = math.prod(module.kernel_size)
        per_output = 2.0 * (module.in_channels // module.groups) * kernel
        return per_output * output.numel() + (output.numel() if module.bias is not None else 0)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) and inputs:
        return float(inputs[0].numel())
    return float(output.numel())


def forward_profile(model: nn.Module, input_shape: tuple[int, ...]) -> ForwardProfile:
    """Count one sample's forward pass through ``model`` (inputs of ``input_shape``, no batch dim)."""
    flops = 0.0
    elements = 0
    largest = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal flops, elements, largest
        if not isinstance(output, torch.Tensor):
            return
        flops += _leaf_flops(module, inputs, output)
        elements += output.numel()
        largest = max(largest, output.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        x = torch.zeros((1, *input_shape), dtype=torch.float32,
                        device=param.device if param is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ForwardProfile(flops=flops, activation_elements=elements, largest_activation_elements=largest,
                          input_elements=math.prod(input_shape),
                          parameter_elements=sum(p.numel() for p in model.parameters()))


def optimizer_slots(optimizer: str, momentum: float) -> int:
    """Per-parameter state an optimiser keeps: Adam 2 (m, v), SGD with momentum 1, plain SGD 0."""
    if optimizer == "adam":
        return 2
    return 1 if momentum > 0 else 0


def training_cost(profile: ForwardProfile, num_samples: int, epochs: int, batch_size: int,
                  optimizer: str = "sgd", momentum: float = 0.0) -> ComputeCost:
    """Local training of ``epochs`` over ``num_samples`` in batches of ``batch_size``."""
    if num_samples < 0 or epochs < 0 or batch_size < 1:
        raise ValueError("num_samples and epochs must be >= 0 and batch_size >= 1")
    flops = 3.0 * profile.flops * num_samples * epochs
    batch = min(batch_size, max(num_samples, 1))
    params = profile.parameter_elements * (2 + optimizer_slots(optimizer, momentum))  # weights, grads, slots
    activations = batch * (2 * profile.activation_elements + profile.input_elements)  # kept + their grads
    return ComputeCost(flops=flops, peak_memory_bytes=FLOAT32_BYTES * (params + activations))


def inference_cost(profile: ForwardProfile, num_samples: int = 1) -> ComputeCost:
    """Inference on ``num_samples`` samples, one at a time (weights + two live activations)."""
    memory = profile.parameter_elements + profile.input_elements + 2 * profile.largest_activation_elements
    return ComputeCost(flops=profile.flops * num_samples, peak_memory_bytes=FLOAT32_BYTES * memory)
