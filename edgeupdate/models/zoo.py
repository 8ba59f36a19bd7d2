"""The papers' networks, by name.

| name         | source                                   | shape                                               |
|--------------|------------------------------------------|-----------------------------------------------------|
| mlp          | Qu thesis §5.5.1.1 (MNIST)               | in-512-512-classes (hidden sizes configurable)      |
| vgg-tiny     | Chen et al. 2022 §5 (26 554 params, CIFAR)| 4×(conv3 16,16,32,64 + ReLU + maxpool2), GAP, FC   |
| tiny-resnet  | Chen et al. 2022 §5 (MNIST)              | stem, 3 basic residual blocks (16,32,64), GAP, FC   |
| resnet20/56  | He et al. 2016 (CIFAR, option-A shortcut)| 3 stages × n basic blocks, n = 3 / 9                |
| vggnet       | Qu thesis §5.5.1.2 (CIFAR-10)            | 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC-10     |

Weights are initialised from a seed inside ``torch.random.fork_rng`` so building a model never
disturbs the caller's RNG state and the same ``(name, shape, seed)`` gives identical weights in
every process (a device can regenerate a re-initialised model from the seed alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

InputShape = tuple[int, int, int]  # (channels, height, width)


def _mlp(shape: InputShape, num_classes: int, hidden: Sequence[int] = (512, 512)) -> nn.Module:
    c, h, w = shape
    layers: list[nn.Module] = [nn.Flatten()]
    width = c * h * w
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _vgg_tiny(shape: InputShape, num_classes: int) -> nn.Module:
    c = shape[0]
    layers: list[nn.Module] = []
    for out in (16, 16, 32, 64):
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block; ``shortcut='A'`` pads channels with zeros (He et al., CIFAR)."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin
        self.proj: nn.Module | None = None
        if (stride != 1 or cin != cout) and shortcut == "B":
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: a stem and three stages of ``blocks_per_stage`` basic blocks."""

    def __init__(self, shape: InputShape, num_classes: int, blocks_per_stage: Sequence[int],
                 widths: Sequence[int] = (16, 32, 64), shortcut: str = "A") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(shape[0], widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = widths[0]
        for stage, (width, n) in enumerate(zip(widths, blocks_per_stage)):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(BasicBlock(cin, width, stride, shortcut))
                cin = width
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


def _vggnet(shape: InputShape, num_classes: int) -> nn.Module:
    c, h, w = shape
    layers: list[nn.Module] = []
    for out in (128, 256, 512):
        for _ in range(2):
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        layers.append(nn.MaxPool2d(2))
        h, w = h // 2, w // 2
    layers += [nn.Flatten(),
               nn.Linear(c * h * w, 1024, bias=False), nn.BatchNorm1d(1024), nn.ReLU(),
               nn.Linear(1024, 1024, bias=False), nn.BatchNorm1d(1024), nn.ReLU(),
               nn.Linear(1024, num_classes)]
    return nn.Sequential(*layers)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp,
    "vgg-tiny": _vgg_tiny,
    "tiny-resnet": lambda s, n: CifarResNet(s, n, (1, 1, 1)),
    "resnet20": lambda s, n: CifarResNet(s, n, (3, 3, 3)),
    "resnet56": lambda s, n: CifarResNet(s, n, (9, 9, 9)),
    "vggnet": _vggnet,
}
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, input_shape: InputShape, num_classes: int, seed: int,
                hidden: Sequence[int] | None = None) -> nn.Module:
    """Build model ``name`` with weights initialised deterministically from ``seed``.

    ``hidden`` overrides the MLP's hidden layer sizes (ignored by the other models).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "mlp" and hidden is not None:
            model = _mlp(tuple(input_shape), num_classes, tuple(hidden))
        else:
            model = _BUILDERS[name](tuple(input_shape), num_classes)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (the papers' model size unit)."""
    return sum(p.numel() for p in model.parameters())
