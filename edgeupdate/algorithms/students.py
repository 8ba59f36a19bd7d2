"""Tiered students: activation-based filter pruning of the server model (Zhao, Chen & Zhao, §3).

"Enabling Deep Learning on Edge Devices through Filter Pruning and Knowledge Transfer"
(``shared/papers/filter-pruning-knowledge-transfer-zhao.txt``) compresses the server's model into
a *student* in two steps (§3); :mod:`edgeupdate.algorithms.knowledge_transfer` then trains it.

1. **Depth** (residual nets, ``shallow=True``): "a shallower model that has the same number of
   groups as the on-server model, but each group only keeps the last block". The paper's WRN
   blocks all carry 1×1 projection shortcuts; our option-A CIFAR ResNets change resolution and
   width only in a stage's *first* block, which therefore stays too when it is such a transition
   (its stride/width change cannot be skipped while reusing the teacher's weights). resnet20 →
   blocks (1, 2, 2); tiny-resnet (one block per stage) is unchanged.
2. **Width** (Eq. 1–2): for image m the activation map a_ij^m = G(F(X)) of filter j in layer i
   has ``perc = 1 − ‖a‖₀ / (h·w)`` zeros; the filter is *safe to prune* on that image when
   ``perc ≥ P``. Over M randomly chosen images, avgc_i is the mean number of safe filters and the
   layer keeps ``w_i = n_i − avgc_i`` filters. A Linear neuron is a 1×1 map (perc ∈ {0, 1}).

Choices the paper leaves open, made here:

* *Which* filters go: the paper fixes only their number. The avgc_i filters that were safe on the
  most images go (ties: higher mean zero fraction, then higher index), so a filter that is always
  silent is always among them. ``avgc_i`` is rounded half up; every layer keeps ≥ 1 filter.
* The layers: every conv/Linear whose output passes a ReLU and reaches only channel-wise ops and
  the next conv/Linear, found by the fx plan of :mod:`edgeupdate.algorithms.filter_pruning`
  (``all_layers=True``); the classifier is never pruned. In residual nets the residual stream
  (stem, every block's second conv, the zero-padding shortcut) keeps its width: the additions tie
  its channels across a stage and the option-A shortcut across stages, and the paper's way out
  (projection shortcuts everywhere) is not our architecture. So, as Li et al. 2017 do for
  ResNet-56/110, a block is pruned inside: conv1's filters, bn1, conv2's input channels.
* Statistics are taken in eval mode (BatchNorm running statistics) on the source model.
* Memory fitting (:func:`fit_student`) first lowers P from 1.0 towards ``min_threshold`` (the
  paper's knob, evaluated 0.7–1.0); when even that student is too big it keeps removing filters in
  the same activation order, scaling every width by ``width_scale`` < 1.

Everything takes and returns state dicts; a :class:`StudentSpec` (JSON-serialisable) says how to
build the student: ``spec.build()``. Deterministic from ``seed`` (the choice of the M images).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgeupdate.algorithms.activations import ActivationStats, activation_zero_fractions, filters_to_keep
from edgeupdate.algorithms.errors import StudentError
from edgeupdate.algorithms.filter_pruning import PruneGroup, PruningError, channel_selections, pruning_plan
from edgeupdate.models.zoo import (
    MODEL_NAMES,
    RESIDUAL_MODELS,
    ArchitectureError,
    InputShape,
    build_model,
    infer_architecture,
    model_for_state,
)
from edgeupdate.seeding import torch_generator
from edgeupdate.training import TensorData
from edgeupdate.updates import StateDict



@dataclass(frozen=True)
class StudentSpec:
    """How a student was cut from its teacher; enough to build it (``build()``) and to place its
    channels among the teacher's (knowledge transfer zero-pads by ``kept``).

    ``kept[i]``: the teacher's filter indices kept in the i-th prunable layer (forward order, as in
    :func:`edgeupdate.models.zoo.build_model`'s ``widths``); ``blocks``: residual blocks per stage
    of the student and ``kept_blocks`` the teacher blocks they are (residual nets only);
    ``threshold`` P, ``images`` M and ``width_scale`` record how ``kept`` was chosen.
    """

    model: str
    input_shape: tuple[int, int, int]
    num_classes: int
    kept: tuple[tuple[int, ...], ...]
    blocks: tuple[int, ...] | None = None
    kept_blocks: tuple[int, ...] | None = None
    threshold: float = 1.0
    images: int = 0
    width_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise StudentError(f"unknown model {self.model!r}; choose one of {', '.join(MODEL_NAMES)}")
        if len(self.input_shape) != 3 or any(int(v) < 1 for v in self.input_shape) or self.num_classes < 1:
            raise StudentError(f"bad input_shape {self.input_shape!r} / num_classes {self.num_classes!r}")
        if not self.kept:
            raise StudentError("kept must list the kept filters of at least one layer")
        for i, layer in enumerate(self.kept):
            if not layer or list(layer) != sorted(set(layer)) or layer[0] < 0:
                raise StudentError(f"kept[{i}] must be non-empty, sorted, unique indices >= 0, got {list(layer)!r}")
        if (self.blocks is None) != (self.kept_blocks is None) or \
                (self.blocks is not None and sum(self.blocks) != len(self.kept_blocks or ())):
            raise StudentError(f"blocks {self.blocks!r} and kept_blocks {self.kept_blocks!r} disagree")
        if not 0.0 <= self.threshold <= 1.0 or not 0.0 <= self.width_scale <= 1.0:
            raise StudentError(f"threshold and width_scale must lie in [0, 1], "
                               f"got {self.threshold}, {self.width_scale}")

    @property
    def widths(self) -> tuple[int, ...]:
        """The student's per-layer widths (``build_model``'s ``widths``)."""
        return tuple(len(k) for k in self.kept)

    def build(self, seed: int = 0) -> nn.Module:
        """The student architecture (weights from ``seed``; load the student's state into it)."""
        return build_model(self.model, self.input_shape, self.num_classes, seed, widths=self.widths,
                           blocks=self.blocks)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return json.loads(json.dumps(d))  # tuples → lists

    @classmethod
    def from_dict(cls, d: Mapping) -> "StudentSpec":
        d = dict(d)
        widths = d.pop("widths", None)
        blocks, kept_blocks = d.pop("blocks", None), d.pop("kept_blocks", None)
        try:
            spec = cls(model=str(d.pop("model")), input_shape=tuple(int(v) for v in d.pop("input_shape")),
                       num_classes=int(d.pop("num_classes")),
                       kept=tuple(tuple(int(i) for i in layer) for layer in d.pop("kept")),
                       blocks=None if blocks is None else tuple(int(b) for b in blocks),
                       kept_blocks=None if kept_blocks is None else tuple(int(b) for b in kept_blocks),
                       threshold=float(d.pop("threshold", 1.0)), images=int(d.pop("images", 0)),
                       width_scale=float(d.pop("width_scale", 1.0)))
        except KeyError as exc:
            raise StudentError(f"student spec lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, StudentError):
                raise
            raise StudentError(f"bad student spec: {exc}") from None
        if d:
            raise StudentError(f"unknown student spec keys: {', '.join(sorted(d))}")
        if widths is not None and tuple(widths) != spec.widths:
            raise StudentError(f"student spec widths {list(widths)} disagree with kept {list(spec.widths)}")
        return spec

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StudentSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StudentError(f"student spec is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise StudentError("student spec JSON must be an object")
        return cls.from_dict(data)


def state_bytes(state: Mapping[str, torch.Tensor]) -> int:
    """Bytes a device needs to hold ``state`` (every parameter and buffer, at its dtype)."""
    return sum(t.numel() * t.element_size() for t in state.values())


# --------------------------------------------------------------------------- depth (§3, step 1)


def shallow_state(name: str, teacher_state: Mapping[str, torch.Tensor]
                  ) -> tuple[StateDict, tuple[int, ...], tuple[int, ...]]:
    """The teacher cut to one block per group (§3): each stage keeps its last block, plus its first
    when that block changes resolution or width. Returns (state, kept teacher blocks, blocks per stage).
    """
    if name not in RESIDUAL_MODELS:
        raise StudentError(f"depth reduction is for residual models ({', '.join(RESIDUAL_MODELS)}), not {name!r}")
    arch = infer_architecture(name, teacher_state)
    assert arch.blocks is not None
    kept: list[int] = []
    per_stage: list[int] = []
    start = 0
    for stage, n in enumerate(arch.blocks):
        first = start
        w_in = teacher_state[f"layers.{first}.conv1.weight"].shape[1]
        w_out = teacher_state[f"layers.{first}.conv2.weight"].shape[0]
        chosen = [start + n - 1]
        if n > 1 and (stage > 0 or w_in != w_out):  # CifarResNet strides a stage's first block (stage > 0)
            chosen.insert(0, first)
        kept += chosen
        per_stage.append(len(chosen))
        start += n
    renumber = {old: new for new, old in enumerate(kept)}
    state: StateDict = {}
    for key, value in teacher_state.items():
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
        if m is None:
            state[key] = value.detach().clone()
        elif int(m.group(1)) in renumber:
            state[f"layers.{renumber[int(m.group(1))]}.{m.group(2)}"] = value.detach().clone()
    return state, tuple(kept), tuple(per_stage)


# --------------------------------------------------------------------------- the physical student


@dataclass(frozen=True)
class _Source:
    """The model the student is cut from: the teacher, or its shallow version."""

    model: nn.Module
    state: StateDict
    plan: list[PruneGroup]
    kept_blocks: tuple[int, ...] | None
    blocks: tuple[int, ...] | None


def _source(name: str, input_shape: InputShape, num_classes: int, teacher_state: Mapping[str, torch.Tensor],
            shallow: bool) -> _Source:
    if name not in MODEL_NAMES:
        raise StudentError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    kept_blocks = blocks = None
    state = {k: v.detach().cpu().clone() for k, v in teacher_state.items()}
    if name in RESIDUAL_MODELS:
        if shallow:
            state, kept_blocks, blocks = shallow_state(name, state)
        else:
            blocks = infer_architecture(name, state).blocks
            kept_blocks = tuple(range(sum(blocks or ())))
    try:
        model = model_for_state(name, input_shape, num_classes, state)
    except ArchitectureError as exc:
        raise StudentError(f"teacher state: {exc}") from None
    try:
        plan = pruning_plan(model, all_layers=True)
    except PruningError as exc:
        raise StudentError(str(exc)) from None
    if not plan:
        raise StudentError(f"{name} has no prunable layer")
    return _Source(model, state, plan, kept_blocks, blocks)


def _check_kept(source: _Source, kept: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    if len(kept) != len(source.plan):
        raise StudentError(f"kept lists {len(kept)} layers, the model has {len(source.plan)} prunable layers")
    out = {}
    for group, layer in zip(source.plan, kept):
        n = source.model.get_submodule(group.conv).weight.shape[0]
        index = sorted(set(int(i) for i in layer))
        if not index or index[0] < 0 or index[-1] >= n:
            raise StudentError(f"kept filters of {group.conv} must be indices in [0, {n}), got {list(layer)!r}")
        out[group.conv] = torch.tensor(index, dtype=torch.long)
    return out


def _slice(state: Mapping[str, torch.Tensor], selections: Mapping[str, Mapping[int, torch.Tensor]]) -> StateDict:
    out = {}
    for key, value in state.items():
        for dim, index in selections.get(key, {}).items():
            value = value.index_select(dim, index)
        out[key] = value.clone()
    return out


def _sliced_bytes(state: Mapping[str, torch.Tensor], selections: Mapping[str, Mapping[int, torch.Tensor]]) -> int:
    total = 0
    for key, value in state.items():
        shape = list(value.shape)
        for dim, index in selections.get(key, {}).items():
            shape[dim] = len(index)
        total += math.prod(shape) * value.element_size()
    return total


def _spec(source: _Source, name: str, input_shape: InputShape, num_classes: int, keep: Mapping[str, torch.Tensor],
          threshold: float, images: int, width_scale: float) -> StudentSpec:
    return StudentSpec(name, tuple(int(v) for v in input_shape), int(num_classes),
                       tuple(tuple(int(i) for i in keep[g.conv]) for g in source.plan), source.blocks,
                       source.kept_blocks, float(threshold), int(images), float(width_scale))


def _cut(source: _Source, spec: StudentSpec) -> StateDict:
    keep = _check_kept(source, spec.kept)
    state = _slice(source.state, channel_selections(source.model, source.plan, keep, buffers=True))
    student = spec.build()
    student.load_state_dict(state, strict=True)  # the zoo builds exactly the sliced shapes
    return state


def prune_student(name: str, input_shape: InputShape, num_classes: int, teacher_state: Mapping[str, torch.Tensor],
                  kept: Sequence[Sequence[int]], *, shallow: bool = False, threshold: float = 1.0, images: int = 0,
                  width_scale: float = 1.0) -> tuple[StudentSpec, StateDict]:
    """The physically smaller student keeping filters ``kept`` (per prunable layer, forward order),
    its weights copied from the teacher; ``shallow`` first drops blocks (§3 step 1)."""
    source = _source(name, input_shape, num_classes, teacher_state, shallow)
    keep = _check_kept(source, kept)
    spec = _spec(source, name, input_shape, num_classes, keep, threshold, images, width_scale)
    return spec, _cut(source, spec)


def _images(data: TensorData | torch.Tensor, images: int, seed: int) -> torch.Tensor:
    """``images`` of ``data`` (a tensor, or anything with ``subset``: TensorData, a dataset split), seeded."""
    if images < 1:
        raise StudentError(f"images M must be >= 1, got {images}")
    if len(data) == 0:
        raise StudentError("no images to take activation statistics on")
    order = torch.randperm(len(data), generator=torch_generator(seed, "student-images"))
    return data[order[:images]] if isinstance(data, torch.Tensor) else data.subset(order[:images]).x


def derive_student(name: str, input_shape: InputShape, num_classes: int, teacher_state: Mapping[str, torch.Tensor],
                   data: TensorData | torch.Tensor, threshold: float, *, images: int = 128, seed: int = 0,
                   shallow: bool = True, width_scale: float = 1.0) -> tuple[StudentSpec, StateDict]:
    """§3: cut a student from the teacher at pruning threshold P = ``threshold``.

    M = ``images`` images are drawn from ``data`` (seeded; the paper sets M to the batch size,
    128); all of ``data`` if it has fewer. Returns the spec and the student's state (kept weights
    and BatchNorm statistics copied from the teacher).
    """
    source = _source(name, input_shape, num_classes, teacher_state, shallow)
    stats = activation_zero_fractions(source.model, _images(data, images, seed))
    keep = dict(zip(stats.layers, (torch.tensor(k) for k in filters_to_keep(stats, threshold, width_scale))))
    spec = _spec(source, name, input_shape, num_classes, keep, threshold, stats.images, width_scale)
    return spec, _cut(source, spec)


Overhead = int | Callable[[int], int]


def fit_student(name: str, input_shape: InputShape, num_classes: int, teacher_state: Mapping[str, torch.Tensor],
                data: TensorData | torch.Tensor, budget_bytes: int, *, apply_overhead_bytes: Overhead = 0,
                images: int = 128, seed: int = 0, shallow: bool = True,
                min_threshold: float = 0.7) -> tuple[StudentSpec, StateDict]:
    """The least-pruned student whose state bytes + apply overhead fit ``budget_bytes``.

    ``apply_overhead_bytes``: bytes the device needs besides the student's weights to apply an
    update, fixed or a non-decreasing function of the student's state bytes (e.g. ``lambda b: b``
    for a second copy). P is lowered from 1.0 to ``min_threshold`` (every distinct perc value in
    between is a candidate); below that ``width_scale`` shrinks from 1 towards one filter per layer.
    Raises :class:`StudentError` when even one filter per layer does not fit.
    """
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes <= 0:
        raise StudentError(f"budget_bytes must be a positive integer, got {budget_bytes!r}")
    if not 0.0 <= min_threshold <= 1.0:
        raise StudentError(f"min_threshold must lie in [0, 1], got {min_threshold!r}")
    overhead = apply_overhead_bytes if callable(apply_overhead_bytes) else (lambda _b, o=int(apply_overhead_bytes): o)
    source = _source(name, input_shape, num_classes, teacher_state, shallow)
    stats = activation_zero_fractions(source.model, _images(data, images, seed))

    def need(threshold: float, scale: float) -> tuple[int, dict[str, torch.Tensor]]:
        keep = dict(zip(stats.layers, (torch.tensor(k) for k in filters_to_keep(stats, threshold, scale))))
        weights = _sliced_bytes(source.state, channel_selections(source.model, source.plan, keep, buffers=True))
        return weights + int(overhead(weights)), keep

    values = torch.cat([z.flatten() for z in stats.zero_fraction]).unique().tolist()
    candidates = sorted({1.0, float(min_threshold)} | {v for v in values if min_threshold <= v <= 1.0}, reverse=True)
    options = [(p, 1.0) for p in candidates] + [(float(min_threshold), k / 100) for k in range(99, -1, -1)]
    lo, hi = 0, len(options)  # sizes are non-increasing along ``options``: find the first that fits
    while lo < hi:
        mid = (lo + hi) // 2
        if need(*options[mid])[0] <= budget_bytes:
            hi = mid
        else:
            lo = mid + 1
    if lo == len(options):
        smallest = need(*options[-1])[0]
        raise StudentError(f"no {name} student fits {budget_bytes} bytes: the smallest (one filter per "
                           f"layer) needs {smallest} bytes including the apply overhead")
    threshold, scale = options[lo]
    keep = need(threshold, scale)[1]
    spec = _spec(source, name, input_shape, num_classes, keep, threshold, stats.images, scale)
    return spec, _cut(source, spec)
