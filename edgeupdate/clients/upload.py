"""How an FL device encodes its upload: the spec, and the sketched encodings (dense, top-k).

The server states the encoding in every fit task (:meth:`UploadSpec.to_task`); the device builds an
:class:`~edgeupdate.updates.UpdatePackage` against the global model it trained from, so the server
decodes it with ``UpdatePackage.decode(payload).apply(global)`` whatever the kind, and ``bytes_up``
is ``len(payload)``. The structured kinds (``rm``, ``lru``) constrain training itself and live in
:mod:`edgeupdate.clients.upload_structured`.

Error feedback (top-k, lossy dense): the device adds the residual e (what it did not send last
time) to its update, sends C(Δ + e) and keeps e ← Δ + e − C(Δ + e), where C(·) is measured as the
package applied minus the base — so quantisation error is fed back too. e lives in the device's
``Context.state`` (a :class:`~flwr.app.RecordDict`) between rounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from flwr.app import ArrayRecord, RecordDict

from edgeupdate.updates import PRECISIONS, StateDict, UpdatePackage, dense_package, seeded_package, sparse_package

UPLOAD_KINDS = ("dense", "topk", "rm", "lru")
UPLOAD_CODINGS = ("golomb", "varint", "bitmap", "auto")
RESIDUAL_KEY = "fl_upload_residual"
_TASK_PREFIX = "upload-"


class UploadError(ValueError):
    """An upload cannot be encoded as asked (bad spec, missing residual store)."""


@dataclass(frozen=True)
class UploadSpec:
    """How a device encodes its upload (``strategy.params.upload`` in a config)."""

    kind: str = field(default="dense", metadata={"choices": UPLOAD_KINDS})
    precision: str = field(default="fp32", metadata={"choices": PRECISIONS})
    fraction: float = field(default=0.01, metadata={"gt": 0.0, "max": 1.0})  # topk: share of entries sent
    error_feedback: bool = True  # topk / lossy dense: carry the unsent residual to the next round
    coding: str = field(default="golomb", metadata={"choices": UPLOAD_CODINGS})  # topk position coding
    p: float = field(default=0.1, metadata={"gt": 0.0, "max": 1.0})  # rm: mask probability
    rank: int = field(default=4, metadata={"min": 1})  # lru: rank r of L (o × r)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise UploadError(f"upload.{f.name} must be one of {', '.join(meta['choices'])}; got {value!r}")
            if meta.get("gt") is not None and not value > meta["gt"]:
                raise UploadError(f"upload.{f.name} must be > {meta['gt']}; got {value!r}")
            if meta.get("min") is not None and not value >= meta["min"]:
                raise UploadError(f"upload.{f.name} must be >= {meta['min']}; got {value!r}")
            if meta.get("max") is not None and not value <= meta["max"]:
                raise UploadError(f"upload.{f.name} must be <= {meta['max']}; got {value!r}")

    @property
    def keeps_residual(self) -> bool:
        """Whether this encoding carries an error-feedback residual between rounds."""
        lossy_dense = self.kind == "dense" and self.precision != "fp32"
        return self.error_feedback and (self.kind == "topk" or lossy_dense)

    def to_task(self) -> dict[str, Any]:
        """Fit-task entries (``upload-<field>``) that tell the device how to upload."""
        return {_TASK_PREFIX + f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_task(cls, task: Mapping[str, Any]) -> "UploadSpec":
        """The spec in a fit task; absent entries take their defaults (a plain dense upload)."""
        kwargs = {}
        for f in fields(cls):
            key = _TASK_PREFIX + f.name.replace("_", "-")
            if key in task:
                kwargs[f.name] = type(f.default)(task[key])
        return cls(**kwargs)


# ---------------------------------------------------------------------------------- residual
def load_residual(store: RecordDict | None, spec: UploadSpec, like: StateDict) -> StateDict:
    """The residual e kept in ``store`` (zeros on the first round or without error feedback)."""
    zeros = {k: torch.zeros_like(v) for k, v in like.items() if v.is_floating_point()}
    if not spec.keeps_residual:
        return zeros
    if store is None:
        raise UploadError(f"upload kind {spec.kind!r} with error feedback needs the device's state store")
    if RESIDUAL_KEY not in store:
        return zeros
    saved = store[RESIDUAL_KEY].to_torch_state_dict()
    if set(saved) != set(zeros) or any(saved[k].shape != zeros[k].shape for k in zeros):
        raise UploadError("the stored upload residual does not match the model's tensors")
    return {k: saved[k].to(zeros[k].dtype) for k in zeros}


def save_residual(store: RecordDict | None, spec: UploadSpec, residual: StateDict) -> None:
    """Keep ``residual`` in ``store`` for the next round (nothing without error feedback)."""
    if spec.keeps_residual and store is not None:
        store[RESIDUAL_KEY] = ArrayRecord({k: v.detach().clone() for k, v in residual.items()})


def residual_l2(residual: Mapping[str, torch.Tensor]) -> float:
    """‖e‖₂ over all tensors."""
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in residual.values()))


# ---------------------------------------------------------------------------------- encoders
@dataclass(frozen=True)
class SketchedUpload:
    """An encoded sketched upload and the residual the device keeps."""

    package: UpdatePackage
    residual: StateDict


def top_k_positions(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """Flat indices of the ⌈fraction·n⌉ largest |values| (ties: lower index first; at least one)."""
    flat = values.reshape(-1)
    k = min(flat.numel(), max(1, math.ceil(fraction * flat.numel())))
    order = torch.sort(flat.abs(), descending=True, stable=True).indices
    return torch.sort(order[:k]).values


def encode_sketched(spec: UploadSpec, base: StateDict, trained: StateDict, version: int,
                    residual: StateDict) -> SketchedUpload:
    """Encode ``trained`` (trained from ``base``) as a dense or top-k package; return the new residual.

    fp32 dense sends the trained weights. A lossy dense upload sends the quantised update of every
    entry (a random mask with p = 1: all positions, none sent). Top-k sends, per floating tensor,
    the ``spec.fraction`` largest entries of Δ + e as sparse (position, value) pairs.
    """
    if spec.kind not in ("dense", "topk"):
        raise UploadError(f"encode_sketched handles dense and topk uploads, not {spec.kind!r}")
    if spec.kind == "dense" and spec.precision == "fp32":  # lossless: the residual has nothing to carry
        package = dense_package(trained, method="fl-dense", target_version=version, base=base,
                                base_version=version)
        return SketchedUpload(package, residual)
    floats = {k for k, v in base.items() if v.is_floating_point()}
    intended = {k: (trained[k].double() - base[k].double() + residual[k].double()) for k in floats}
    if spec.kind == "dense":
        target = {k: (base[k].double() + intended[k]).to(base[k].dtype) if k in floats else trained[k]
                  for k in base}
        package = seeded_package(base, generator="mask", seed=0, params={"p": 1.0}, values=target, dense={},
                                 method="fl-dense-update", target_version=version, base_version=version,
                                 precision=spec.precision)
    else:
        target = {}
        for k, b in base.items():
            if k not in floats:
                target[k] = trained[k]
                continue
            pos = top_k_positions(intended[k], spec.fraction)
            flat = b.double().reshape(-1).clone()
            flat[pos] += intended[k].reshape(-1)[pos]
            target[k] = flat.reshape(b.shape).to(b.dtype)
        package = sparse_package(base, target, method="fl-topk", target_version=version, base_version=version,
                                 precision=spec.precision, coding=spec.coding)
    sent = package.apply(base)
    new_residual = {k: (intended[k] - (sent[k].double() - base[k].double())).to(base[k].dtype) for k in floats}
    return SketchedUpload(package, new_residual)
