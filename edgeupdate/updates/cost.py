"""What applying a package costs a device: arithmetic and peak memory, from the header alone.

The fleet model (:mod:`edgeupdate.fleet.rounds`) charges a device for the apply step with these
numbers, and a device checks :attr:`ApplyCost.peak_memory_bytes` against its memory *before* it
applies anything (status ``no_memory``). Both sides derive them from the package header and the
size of the deployed model, so they agree without measuring anything (measured wall time depends
on the simulation host; these do not).

The model follows what :meth:`~edgeupdate.updates.UpdatePackage.apply` really does:

* the received package stays buffered (``package_bytes``) and the deployed model stays in memory
  until the new one is verified (``model_bytes``);
* every tensor the package touches is built into a staging copy (crash-safe A/B apply), so its
  bytes are held once more; a complete package or a seeded re-initialisation stages the whole model;
* factor tensors are reconstituted one at a time in float64 (:mod:`edgeupdate.updates.reconstitution`):
  the o×i view of the current weight, its thin SVD (U: o×m, s: m, V: i×m, m = min(o, i)) for the
  rules that need it (KA, ML), the augmented factors and the o×i product. The largest such working
  set counts once.

FLOPs: sparse and dense entries cost one operation per written element; a thin SVD of an o×i matrix
costs ≈ 4·o·i·m + 22·m³ (Golub & Van Loan, *Matrix Computations*, 4th ed., Fig. 8.6.1, R-SVD);
a product of an o×r and an r×i matrix 2·o·r·i; hashing the result one operation per byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeupdate.updates.package import PackageHeader, TensorInfo

FLOAT64_BYTES = 8
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4,
             "int16": 2, "int8": 1, "uint8": 1, "bool": 1}
_SVD_RULES = ("ka", "ml")


@dataclass(frozen=True)
class ApplyCost:
    """Arithmetic (``flops``) and peak memory (``peak_memory_bytes``) of one apply step."""

    flops: float
    peak_memory_bytes: int


def _matrix_dims(info: TensorInfo) -> tuple[int, int]:
    o = info.shape[0]
    return o, math.prod(info.shape[1:])


def _factor_cols(info: TensorInfo) -> int:
    """Inner dimension r of the factor product (n for KA, r for ML/LRA/LRU)."""
    for f in info.factors:
        if f.name in ("U", "L") and len(f.shape) == 2:
            return int(f.shape[1])
    return 0


def _factor_cost(info: TensorInfo) -> tuple[float, int]:
    """(FLOPs, float64 working-set bytes) of reconstituting one factor tensor."""
    o, i = _matrix_dims(info)
    m = min(o, i)
    r = _factor_cols(info)
    rule = str(info.params.get("rule", ""))
    elements = o * i  # float64 view of the current weight
    flops = 0.0
    if rule in _SVD_RULES:
        elements += o * m + m + i * m
        flops += 4.0 * o * i * m + 22.0 * m ** 3
    if rule == "ka":
        elements += (o + i + 1) * (m + r)  # [U, U′], [V, V′], s′
        flops += 2.0 * o * i * (m + r) + o * (m + r)
    else:
        elements += (o + i) * r
        flops += 2.0 * o * i * r + (o * i if rule == "lru" else 0)
    elements += o * i  # the product
    return flops, FLOAT64_BYTES * elements


def apply_cost(header: PackageHeader, package_bytes: int, model_bytes: int) -> ApplyCost:
    """The cost of applying a package with ``header`` (``package_bytes`` long) to a model of ``model_bytes``."""
    if package_bytes < 0 or model_bytes < 0:
        raise ValueError("package_bytes and model_bytes must be >= 0")
    staged = 0
    flops = 0.0
    workspace = 0
    for info in header.tensors:
        tensor_bytes = info.numel * _ITEMSIZE.get(info.dtype, 4)
        staged += tensor_bytes
        if info.kind == "factor":
            f, w = _factor_cost(info)
            flops += f
            workspace = max(workspace, w)
        elif info.kind == "dense":
            flops += info.numel
        else:  # sparse / masked: decode positions, write values
            flops += 2 * info.count
    if header.complete or header.initializer:
        staged = max(staged, model_bytes)
        if header.initializer:
            flops += model_bytes // 4  # regenerate the seeded init, one draw per weight
    result_bytes = model_bytes if not header.complete else staged
    flops += result_bytes  # hash the result (target-hash check)
    return ApplyCost(flops=float(flops), peak_memory_bytes=int(model_bytes + package_bytes + staged + workspace))


def state_bytes(state) -> int:
    """Bytes of a state dict's tensors (what a device holds for its deployed model)."""
    return int(sum(t.numel() * t.element_size() for t in state.values()))
