"""Server-side builders: one function per body kind.

Every builder computes the target hash by applying the finished package to the base itself, so
the hash is of exactly what a device will hold (lossy fp16/int8 values included). The caller gets
the deployed state with ``pkg.apply(base)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from edgeupdate.updates.entropy import pack_entropy
from edgeupdate.updates.hashing import StateDict, state_hash
from edgeupdate.updates.package import (
    FORMAT_VERSION,
    FactorInfo,
    PackageHeader,
    TensorBlobs,
    TensorInfo,
    UpdatePackage,
)
from edgeupdate.updates.positions import encode_positions
from edgeupdate.updates.reconstitution import RULES
from edgeupdate.updates.seeded import mask_positions, resolve_initializer
from edgeupdate.updates.values import (
    LOSSLESS,
    VALUE_COMPRESSIONS,
    QuantisationError,
    channels_of,
    decode_values,
    dtype_name,
    effective_precision,
    encode_values,
    pack_values,
    quantisation_error,
)
from edgeupdate.updates.wire import Params

_PLACEHOLDER_HASH = "0" * 64
VALUE_CODINGS = ("raw", "entropy")
ENTROPY_PRECISIONS = ("int8", "int8-channel")
_Entry = tuple[TensorInfo, TensorBlobs, QuantisationError | None]


@dataclass(frozen=True)
class LayerFactors:
    """Factors of one Conv/FC weight and the rule (see ``reconstitution.RULES``) that rebuilds it."""

    rule: str
    tensors: dict[str, torch.Tensor]
    params: dict[str, int | float | str] = field(default_factory=dict)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().reshape(-1)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """A view whose equality is bitwise (so -0.0 vs 0.0 and NaN payloads count as changes)."""
    flat = _flat(t)
    if flat.dtype.is_floating_point:
        return flat.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()])
    return flat


def _lossy_values(values: torch.Tensor, precision: str, channels: np.ndarray, dtype: torch.dtype) -> tuple[bytes, QuantisationError | None]:
    blob = encode_values(values, precision, channels)
    if precision in LOSSLESS:
        return blob, None
    sent = decode_values(blob, precision, values.numel(), dtype, channels)
    return blob, quantisation_error(values, sent)


def _packed(blob: bytes, prec: str, dtype: torch.dtype, compression: str, value_coding: str,
            channels: np.ndarray) -> tuple[bytes, str]:
    """The smallest lossless packing of ``blob`` that the options allow (ties keep ``plain``)."""
    if compression not in VALUE_COMPRESSIONS:
        raise ValueError(f"unknown value compression {compression!r}; expected one of {VALUE_COMPRESSIONS}")
    if value_coding not in VALUE_CODINGS:
        raise ValueError(f"unknown value coding {value_coding!r}; expected one of {VALUE_CODINGS}")
    candidates = [(blob, "plain")]
    if compression == "zstd" and blob:
        candidates.append((pack_values(blob, prec, dtype), "zstd"))
    if value_coding == "entropy" and blob and prec in ENTROPY_PRECISIONS:
        n_channels = int(np.unique(channels).size) if prec == "int8-channel" else 1
        packed = pack_entropy(blob, prec, n_channels)
        if packed is not None:
            candidates.append((packed, "entropy"))
    return min(candidates, key=lambda c: len(c[0]))


def _dense_entry(name: str, tensor: torch.Tensor, precision: str, compression: str = "none",
                 value_coding: str = "raw") -> _Entry:
    t = tensor.detach().to("cpu")
    prec = effective_precision(precision, t.dtype, t.dim())
    numel = t.numel()
    values = _flat(t) if prec in LOSSLESS else _flat(t).to(torch.float32)
    channels = channels_of(np.arange(numel, dtype=np.int64), tuple(t.shape))
    blob, err = _lossy_values(values, prec, channels, t.dtype)
    blob, packing = _packed(blob, prec, t.dtype, compression, value_coding, channels)
    info = TensorInfo(name, "dense", tuple(t.shape), dtype_name(t.dtype), "none", prec, "set", "base",
                      numel, 0, len(blob), values_packing=packing)
    return info, TensorBlobs(values=blob), err


def _delta_values(base: torch.Tensor | None, target: torch.Tensor, pos: np.ndarray, prec: str) -> tuple[str, torch.Tensor]:
    idx = torch.from_numpy(pos)
    new = _flat(target)[idx]
    if prec in LOSSLESS:
        return "replace", new
    old = _flat(base)[idx].to(torch.float64) if base is not None else torch.zeros(len(pos), dtype=torch.float64)
    return "add", (new.to(torch.float64) - old).to(torch.float32)


def _sparse_entry(name: str, base: torch.Tensor | None, target: torch.Tensor, positions: np.ndarray,
                  precision: str, coding: str, origin: str, kind: str = "sparse",
                  params: Params | None = None, compression: str = "none", value_coding: str = "raw") -> _Entry:
    t = target.detach().to("cpu")
    prec = effective_precision(precision, t.dtype, t.dim())
    mode, values = _delta_values(base, t, positions, prec)
    channels = channels_of(positions, tuple(t.shape))
    blob, err = _lossy_values(values, prec, channels, t.dtype)
    blob, packing = _packed(blob, prec, t.dtype, compression, value_coding, channels)
    if kind == "sparse":
        coding, pos_blob, pos_params = encode_positions(positions, t.numel(), coding, tuple(t.shape))
    else:
        coding, pos_blob, pos_params = "seeded", b"", {}
    info = TensorInfo(name, kind, tuple(t.shape), dtype_name(t.dtype), coding, prec, mode, origin,
                      int(positions.size), len(pos_blob), len(blob), (), {**pos_params, **(params or {})}, packing)
    return info, TensorBlobs(positions=pos_blob, values=blob), err


def _int8_at_step(values: torch.Tensor, step: np.float32) -> bytes:
    """int8 value bytes (scale + symbols) of ``values`` at a given ``step``; their |values| must fit 127 steps."""
    q = np.clip(np.rint(values.numpy().astype(np.float32) / step), -127, 127).astype(np.int8)
    return np.float32(step).astype("<f4").tobytes() + q.tobytes()


def _dense_or_delta_entry(name: str, base: torch.Tensor, target: torch.Tensor, precision: str, coding: str,
                          compression: str, value_coding: str) -> _Entry | None:
    """A tensor meant to be sent whole. With entropy-coded int8 values it may instead go as the changed
    entries' deltas quantised at the *whole tensor's* int8 step (so its error bound is that of the
    dense int8 tensor): small changes then cost a few bits each. The smaller of the two is kept;
    ``None`` when the tensor did not change at all."""
    dense = _dense_entry(name, target, precision, compression, value_coding)
    t = target.detach().to("cpu")
    prec = effective_precision(precision, t.dtype, t.dim())
    if value_coding != "entropy" or prec != "int8":
        return dense
    pos = _changed_positions(base, t)
    if pos.size == 0:
        return None
    step = np.frombuffer(dense[1].values[:4], dtype="<f4")[0] if dense[0].values_packing != "zstd" else np.float32(0)
    _, delta = _delta_values(base, t, pos, prec)
    if not step > 0 or float(delta.abs().max()) > 127 * float(step):
        return dense
    blob = _int8_at_step(delta, step)
    sent = decode_values(blob, prec, pos.size, t.dtype)
    channels = channels_of(pos, tuple(t.shape))
    blob, packing = _packed(blob, prec, t.dtype, compression, value_coding, channels)
    coding, pos_blob, pos_params = encode_positions(pos, t.numel(), coding, tuple(t.shape))
    info = TensorInfo(name, "sparse", tuple(t.shape), dtype_name(t.dtype), coding, prec, "add", "base",
                      int(pos.size), len(pos_blob), len(blob), (), dict(pos_params), packing)
    delta_entry = (info, TensorBlobs(positions=pos_blob, values=blob), quantisation_error(delta, sent))
    return min((dense, delta_entry), key=lambda e: e[0].body_bytes)


def _changed_positions(base: torch.Tensor | None, target: torch.Tensor) -> np.ndarray:
    tb = _bits(target)
    if base is None:
        changed = tb != 0
    else:
        changed = _bits(base) != tb
    return torch.nonzero(changed).reshape(-1).numpy().astype(np.int64)


def _check_pair(name: str, base: torch.Tensor, target: torch.Tensor) -> None:
    if base.shape != target.shape or base.dtype != target.dtype:
        raise ValueError(f"tensor {name!r} is {base.dtype}{list(base.shape)} in the base but "
                         f"{target.dtype}{list(target.shape)} in the target")


def _assemble(entries: list[_Entry], *, method: str, base: StateDict | None, base_version: int | None,
              target_version: int, extra: Mapping | None, complete: bool,
              initializer: str | None = None, initializer_seed: int | None = None) -> UpdatePackage:
    if target_version < 0 or (base_version is not None and base_version < 0):
        raise ValueError("versions must be non-negative integers")
    header = PackageHeader(  # base-free: base_version (if given) is the version it replaces
        FORMAT_VERSION, method, base_version,
        state_hash(base) if base is not None else None, target_version, _PLACEHOLDER_HASH,
        tuple(e[0] for e in entries), dict(extra or {}), complete, initializer, initializer_seed)
    quant = {e[0].name: e[2] for e in entries if e[2] is not None}
    pkg = UpdatePackage(header, [e[1] for e in entries], quant)
    return pkg.with_target(base)


def dense_package(target: StateDict, *, method: str, target_version: int, base: StateDict | None = None,
                  base_version: int | None = None, precision: str = "fp32", extra: dict | None = None,
                  value_compression: str = "none", value_coding: str = "raw") -> UpdatePackage:
    """The whole model; with ``base`` the package is bound to that base's hash (used only for the check).

    ``value_compression="zstd"``: byte-plane shuffle + zstd of each tensor's value bytes where smaller (lossless).
    ``value_coding="entropy"``: int8 symbols entropy-coded (adaptive ANS) where smaller (lossless over the symbols).
    """
    entries = [_dense_entry(name, t, precision, value_compression, value_coding) for name, t in target.items()]
    return _assemble(entries, method=method, base=base, base_version=base_version,
                     target_version=target_version, extra=extra, complete=True)


def sparse_package(base: StateDict | None, target: StateDict, *, method: str, target_version: int,
                   base_version: int | None = None, precision: str = "fp32", coding: str = "golomb",
                   dense_names: Iterable[str] = (), extra: dict | None = None,
                   value_compression: str = "none", value_coding: str = "raw") -> UpdatePackage:
    """Per tensor, the positions where ``target`` differs (bitwise) from ``base`` plus values.

    ``base=None``: an all-zero base (a pruned model from scratch, no base binding; every tensor is
    listed); ``base_version`` then names the version it replaces (a device refuses a target that is
    not newer than what it holds, :mod:`edgeupdate.updates.verify`). fp32 sends the new values
    ("replace", bit-identical result); fp16/int8/int8-channel quantise and add the delta ("add").
    ``coding``: bitmap | varint | golomb | context | auto (smallest). Tensors in ``dense_names`` are
    sent whole; unchanged tensors are skipped. With ``value_coding="entropy"`` and int8, a
    ``dense_names`` tensor may instead be sent as its changed entries' deltas at the dense tensor's
    own int8 step (same error bound), whichever is smaller.
    ``value_compression="zstd"``: byte-plane shuffle + zstd of each tensor's value bytes where smaller (lossless).
    ``value_coding="entropy"``: int8 symbols entropy-coded (adaptive ANS) where smaller (lossless over the symbols).
    """
    dense = set(dense_names)
    unknown = dense - set(target)
    if unknown:
        raise ValueError(f"dense_names not in the target: {sorted(unknown)}")
    if base is not None and set(base) != set(target):
        raise ValueError(f"base and target hold different tensors: {sorted(set(base) ^ set(target))}")
    entries: list[_Entry] = []
    for name, t in target.items():
        if name in dense:
            entry = (_dense_entry(name, t, precision, value_compression, value_coding) if base is None else
                     _dense_or_delta_entry(name, base[name], t, precision, coding, value_compression, value_coding))
            if entry is not None:
                entries.append(entry)
            continue
        b = None if base is None else base[name]
        if b is not None:
            _check_pair(name, b, t)
        pos = _changed_positions(b, t)
        if pos.size == 0 and base is not None:
            continue
        entries.append(_sparse_entry(name, b, t, pos, precision, coding, "zero" if base is None else "base",
                                     compression=value_compression, value_coding=value_coding))
    return _assemble(entries, method=method, base=base, base_version=base_version,
                     target_version=target_version, extra=extra, complete=base is None)


def factor_package(base: StateDict, factors: Mapping[str, LayerFactors], dense: StateDict, *, method: str,
                   target_version: int, base_version: int, precision: str = "fp32",
                   extra: dict | None = None, value_compression: str = "none",
                   value_coding: str = "raw") -> UpdatePackage:
    """Factor sets for Conv/FC weights (rebuilt on the device from its own weight) plus dense tensors."""
    entries: list[_Entry] = []
    for name, lf in factors.items():
        if name not in base:
            raise ValueError(f"factorised tensor {name!r} is not in the base")
        if lf.rule not in RULES:
            raise ValueError(f"unknown reconstitution rule {lf.rule!r} for {name!r}; expected one of {sorted(RULES)}")
        if "rule" in lf.params or "layer" in lf.params:
            raise ValueError(f"params for {name!r} must not use the reserved keys 'rule'/'layer'")
        w = base[name]
        prec = effective_precision(precision, w.dtype, 2)
        infos, blobs, errs = [], [], []
        for fname in sorted(lf.tensors):
            f = lf.tensors[fname].detach().to("cpu")
            values = _flat(f).to(w.dtype if prec in LOSSLESS else torch.float32)
            blob, err = _lossy_values(values, prec, channels_of(np.arange(f.numel(), dtype=np.int64), tuple(f.shape)), w.dtype)
            infos.append(FactorInfo(fname, tuple(f.shape), len(blob)))
            blobs.append(blob)
            if err is not None:
                errs.append(err)
        info = TensorInfo(name, "factor", tuple(w.shape), dtype_name(w.dtype), "none", prec, "set", "base",
                          0, 0, 0, tuple(infos), {"rule": lf.rule, **lf.params})
        worst = max(errs, key=lambda e: e.rms) if errs else None
        entries.append((info, TensorBlobs(factors=tuple(blobs)), worst))
    for name, t in dense.items():
        if name in factors:
            raise ValueError(f"tensor {name!r} is both factorised and dense")
        entries.append(_dense_entry(name, t, precision, value_compression, value_coding))
    return _assemble(entries, method=method, base=base, base_version=base_version,
                     target_version=target_version, extra=extra, complete=False)


def seeded_package(base: StateDict, *, generator: str, seed: int, params: dict,
                   values: Mapping[str, torch.Tensor] | None, dense: StateDict, method: str,
                   target_version: int, base_version: int, precision: str = "fp32",
                   coding: str = "golomb", extra: dict | None = None, value_compression: str = "none",
                   value_coding: str = "raw") -> UpdatePackage:
    """A seed plus trained values; the device regenerates the rest deterministically.

    generator ``"mask"`` (RM, Konečný et al. 2016): ``params["p"]``; for each tensor in ``values``
    (full-shape target tensors) only the values at the Bernoulli(p) mask from (seed, name) are
    sent, zero position bytes. generator ``"init"`` (DPU re-initialisation, thesis §5.4.2):
    ``params["initializer"]`` names a registered or ``zoo:`` initializer; the device replaces its
    weights with ``initializer(seed)``, then applies sparse ``values`` (diffed against that
    initial model) and the ``dense`` tensors.
    """
    if seed < 0:
        raise ValueError("seed must be non-negative")
    values = dict(values or {})
    overlap = set(values) & set(dense)
    if overlap:
        raise ValueError(f"tensors both in values and dense: {sorted(overlap)}")
    entries: list[_Entry] = []
    initializer: str | None = None
    if generator == "mask":
        p = float(params.get("p", -1.0))
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"mask generator needs params['p'] in [0, 1], got {params.get('p')!r}")
        for name, t in values.items():
            if name not in base:
                raise ValueError(f"masked tensor {name!r} is not in the base")
            _check_pair(name, base[name], t)
            pos = mask_positions(seed, name, t.numel(), p)
            entries.append(_sparse_entry(name, base[name], t, pos, precision, "none", "base",
                                         kind="masked", params={"seed": int(seed), "p": p},
                                         compression=value_compression, value_coding=value_coding))
    elif generator == "init":
        initializer = params.get("initializer")
        if not isinstance(initializer, str):
            raise ValueError("init generator needs params['initializer'] (a registered or 'zoo:' name)")
        init = resolve_initializer(initializer)(int(seed))
        for name, t in values.items():
            if name not in init:
                raise ValueError(f"tensor {name!r} is not produced by initializer {initializer!r}")
            _check_pair(name, init[name], t)
            pos = _changed_positions(init[name], t)
            if pos.size:
                entries.append(_sparse_entry(name, init[name], t, pos, precision, coding, "base",
                                             compression=value_compression, value_coding=value_coding))
    else:
        raise ValueError(f"unknown generator {generator!r}; expected 'mask' or 'init'")
    entries += [_dense_entry(name, t, precision, value_compression, value_coding) for name, t in dense.items()]
    return _assemble(entries, method=method, base=base, base_version=base_version, target_version=target_version,
                     extra=extra, complete=False, initializer=initializer,
                     initializer_seed=int(seed) if initializer else None)


def quantised_error_summary(pkg: UpdatePackage) -> dict[str, float]:
    """Worst max-abs and rms quantisation error over the package's tensors (0 when lossless)."""
    errs = list(pkg.quantisation.values())
    if not errs:
        return {"max_abs": 0.0, "rms": 0.0}
    total = sum(1 for _ in errs)
    return {"max_abs": max(e.max_abs for e in errs), "rms": math.sqrt(sum(e.rms ** 2 for e in errs) / total)}
