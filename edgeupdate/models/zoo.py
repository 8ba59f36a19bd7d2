"""The papers' networks, by name.

| name         | source                                   | shape                                               |
|--------------|------------------------------------------|-----------------------------------------------------|
| mlp          | Qu thesis §5.5.1.1 (MNIST)               | in-512-512-classes (hidden sizes configurable)      |
| vgg-tiny     | Chen et al. 2022 §5 (26 554 params, CIFAR)| 4×(conv3 16,16,32,64 + ReLU + maxpool2), GAP, FC   |
| tiny-resnet  | Chen et al. 2022 §5 (MNIST)              | stem, 3 basic residual blocks (16,32,64), GAP, FC   |
| resnet20/56  | He et al. 2016 (CIFAR, option-A shortcut)| 3 stages × n basic blocks, n = 3 / 9                |
| vggnet       | Qu thesis §5.5.1.2 (CIFAR-10)            | 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC-10     |

Every model can be built narrower (``widths``) and residual nets shallower (``blocks``) — the
students of :mod:`edgeupdate.algorithms.students`. ``widths`` lists the output width of each
*prunable* layer in forward order (the layers :func:`edgeupdate.algorithms.filter_pruning.pruning_plan`
finds with ``all_layers=True``):

| name        | ``widths``                                   | default                        |
|-------------|----------------------------------------------|--------------------------------|
| mlp         | hidden sizes (same as ``hidden``)            | (512, 512)                     |
| vgg-tiny    | the 4 conv widths                            | (16, 16, 32, 64)               |
| vggnet      | the 6 conv widths, then the 2 hidden FC sizes| (128,128,256,256,512,512,1024,1024) |
| resnets     | each block's inner width (conv1 filters)     | the stage width of each block  |

Residual nets keep their residual stream (stem, each block's second conv, shortcut) whole; see
:mod:`edgeupdate.algorithms.students` for why. :func:`model_for_state` goes the other way: it reads
``widths``/``blocks`` from a state dict's shapes and builds the model those weights belong to, so a
device can run whatever (student) weights it holds.

Weights are initialised from a seed inside ``torch.random.fork_rng`` so building a model never
disturbs the caller's RNG state and the same ``(name, shape, seed)`` gives identical weights in
every process (a device can regenerate a re-initialised model from the seed alone).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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


def _vgg_tiny(shape: InputShape, num_classes: int, widths: Sequence[int] = (16, 16, 32, 64)) -> nn.Module:
    c = shape[0]
    layers: list[nn.Module] = []
    for out in widths:
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block; ``shortcut='A'`` pads channels with zeros (He et al., CIFAR)."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str = "A", mid: int | None = None) -> None:
        super().__init__()
        mid = cout if mid is None else mid  # inner width: conv1's filters (pruned in students)
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
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
    """ResNet for small images: a stem and three stages of ``blocks_per_stage`` basic blocks.

    ``widths`` are the stage (residual stream) widths; ``inner`` optionally gives every block's
    inner width (default: its stage width).
    """

    def __init__(self, shape: InputShape, num_classes: int, blocks_per_stage: Sequence[int],
                 widths: Sequence[int] = (16, 32, 64), shortcut: str = "A",
                 inner: Sequence[int] | None = None) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(shape[0], widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = widths[0]
        for stage, (width, n) in enumerate(zip(widths, blocks_per_stage)):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                mid = inner[len(blocks)] if inner is not None else None
                blocks.append(BasicBlock(cin, width, stride, shortcut, mid))
                cin = width
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


_VGGNET_WIDTHS = (128, 128, 256, 256, 512, 512, 1024, 1024)


def _vggnet(shape: InputShape, num_classes: int, widths: Sequence[int] = _VGGNET_WIDTHS) -> nn.Module:
    c, h, w = shape
    layers: list[nn.Module] = []
    convs, fcs = widths[:6], widths[6:]
    for stage in range(3):
        for out in convs[2 * stage: 2 * stage + 2]:
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        layers.append(nn.MaxPool2d(2))
        h, w = h // 2, w // 2
    layers.append(nn.Flatten())
    features = c * h * w
    for units in fcs:
        layers += [nn.Linear(features, units, bias=False), nn.BatchNorm1d(units), nn.ReLU()]
        features = units
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


_RESNET_BLOCKS = {"tiny-resnet": (1, 1, 1), "resnet20": (3, 3, 3), "resnet56": (9, 9, 9)}
_RESNET_STAGE_WIDTHS = (16, 32, 64)


def _resnet(blocks: tuple[int, ...]) -> Callable[..., nn.Module]:
    def build(s: InputShape, n: int, widths: Sequence[int] | None = None,
              blocks: Sequence[int] = blocks, stage_widths: Sequence[int] = _RESNET_STAGE_WIDTHS) -> nn.Module:
        return CifarResNet(s, n, tuple(blocks), tuple(stage_widths), inner=widths)
    return build


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp,
    "vgg-tiny": _vgg_tiny,
    "tiny-resnet": _resnet(_RESNET_BLOCKS["tiny-resnet"]),
    "resnet20": _resnet(_RESNET_BLOCKS["resnet20"]),
    "resnet56": _resnet(_RESNET_BLOCKS["resnet56"]),
    "vggnet": _vggnet,
}
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
RESIDUAL_MODELS: tuple[str, ...] = tuple(_RESNET_BLOCKS)
_FIXED_WIDTHS = {"vgg-tiny": 4, "vggnet": len(_VGGNET_WIDTHS)}


def _positive_ints(what: str, values: Sequence[int]) -> tuple[int, ...]:
    out = tuple(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise ValueError(f"{what} must be a non-empty list of positive integers, got {list(values)!r}")
    return out


def build_model(name: str, input_shape: InputShape, num_classes: int, seed: int,
                hidden: Sequence[int] | None = None, *, widths: Sequence[int] | None = None,
                blocks: Sequence[int] | None = None) -> nn.Module:
    """Build model ``name`` with weights initialised deterministically from ``seed``.

    ``hidden`` overrides the MLP's hidden layer sizes (ignored by the other models). ``widths``
    gives the output width of every prunable layer (see the module docstring); ``blocks`` the
    residual blocks per stage (residual nets only). Both default to the named architecture.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    kwargs: dict[str, object] = {}
    if blocks is not None:
        if name not in _RESNET_BLOCKS:
            raise ValueError(f"blocks is only for residual models ({', '.join(RESIDUAL_MODELS)}), not {name!r}")
        kwargs["blocks"] = _positive_ints("blocks", blocks)
        if len(kwargs["blocks"]) != len(_RESNET_STAGE_WIDTHS):  # type: ignore[arg-type]
            raise ValueError(f"blocks must give {len(_RESNET_STAGE_WIDTHS)} stages, got {list(blocks)!r}")
    if widths is not None:
        widths = _positive_ints("widths", widths)
        if name == "mlp" and hidden is not None and tuple(hidden) != widths:
            raise ValueError(f"mlp: hidden {list(hidden)!r} and widths {list(widths)!r} disagree")
        expected = _FIXED_WIDTHS.get(name)
        if name in _RESNET_BLOCKS:
            expected = sum(kwargs.get("blocks", _RESNET_BLOCKS[name]))  # type: ignore[arg-type]
        if expected is not None and len(widths) != expected:
            raise ValueError(f"{name}: widths must list {expected} layer widths, got {len(widths)}")
        kwargs["hidden" if name == "mlp" else "widths"] = widths
    elif name == "mlp" and hidden is not None:
        kwargs["hidden"] = tuple(hidden)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _BUILDERS[name](tuple(input_shape), num_classes, **kwargs)
    return model


@dataclass(frozen=True)
class Architecture:
    """What :func:`build_model` needs besides the name: prunable-layer ``widths`` and, for residual
    nets, ``blocks`` per stage and the residual stream's ``stage_widths``."""

    widths: tuple[int, ...]
    blocks: tuple[int, ...] | None = None
    stage_widths: tuple[int, ...] | None = None


class ArchitectureError(ValueError):
    """A state dict does not describe a model of the named architecture."""


def _sequential_weights(state: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    found = []
    for key, value in state.items():
        m = re.fullmatch(r"(\d+)\.weight", key)
        if m and value.dim() in (2, 4):  # conv (4-D) and linear (2-D); BatchNorm weights are 1-D
            found.append((int(m.group(1)), value))
    return [v for _, v in sorted(found, key=lambda item: item[0])]


def infer_architecture(name: str, state: Mapping[str, torch.Tensor]) -> Architecture:
    """Read ``widths`` (and ``blocks``) of model ``name`` from the tensor shapes of ``state``."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if name in _RESNET_BLOCKS:
        inner, stream = [], []
        while f"layers.{len(inner)}.conv1.weight" in state and f"layers.{len(inner)}.conv2.weight" in state:
            i = len(inner)
            inner.append(int(state[f"layers.{i}.conv1.weight"].shape[0]))
            stream.append(int(state[f"layers.{i}.conv2.weight"].shape[0]))
        if not inner:
            raise ArchitectureError(f"{name}: state has no residual blocks (layers.0.conv1.weight)")
        stage_widths: list[int] = []
        blocks: list[int] = []
        for width in stream:  # a stage ends where the residual stream changes width
            if stage_widths and stage_widths[-1] == width:
                blocks[-1] += 1
            else:
                stage_widths.append(width)
                blocks.append(1)
        return Architecture(tuple(inner), tuple(blocks), tuple(stage_widths))
    weights = _sequential_weights(state)
    if len(weights) < 2:
        raise ArchitectureError(f"{name}: state has {len(weights)} conv/linear weights, need at least 2")
    return Architecture(tuple(int(w.shape[0]) for w in weights[:-1]))


def model_for_state(name: str, input_shape: InputShape, num_classes: int,
                    state: Mapping[str, torch.Tensor]) -> nn.Module:
    """The model of architecture ``name`` that ``state`` belongs to, with ``state`` loaded.

    Widths (and residual depth) are read from the tensor shapes, so a device can build a model for
    whatever weights it holds (the full model or a pruned student). Raises
    :class:`ArchitectureError` naming the mismatch when ``state`` fits no such model.
    """
    arch = infer_architecture(name, state)
    try:
        if name in _RESNET_BLOCKS:
            if len(arch.blocks or ()) != len(_RESNET_STAGE_WIDTHS):
                raise ArchitectureError(f"{name}: state has {len(arch.blocks or ())} stages, "
                                        f"expected {len(_RESNET_STAGE_WIDTHS)}")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = _BUILDERS[name](tuple(input_shape), num_classes, widths=arch.widths,
                                        blocks=arch.blocks, stage_widths=arch.stage_widths)
        else:
            model = build_model(name, input_shape, num_classes, 0, widths=arch.widths)
        model.load_state_dict(dict(state), strict=True)
    except (RuntimeError, ValueError) as exc:
        if isinstance(exc, ArchitectureError):
            raise
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ArchitectureError(f"state does not fit model {name!r} {tuple(input_shape)} -> {num_classes}: "
                                f"{detail}") from exc
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (the papers' model size unit)."""
    return sum(p.numel() for p in model.parameters())
