"""``state_hash``: the identity of a model version, over exact bytes."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping

import torch

StateDict = dict[str, torch.Tensor]


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Raw little-endian bytes of ``tensor`` (detached, on CPU, contiguous)."""
    t = tensor.detach().to("cpu").contiguous()
    raw = t.reshape(-1).view(torch.uint8).numpy()
    if sys.byteorder == "big" and t.element_size() > 1:  # pragma: no cover - little-endian hosts only
        raw = raw.reshape(-1, t.element_size())[:, ::-1].reshape(-1)
    return raw.tobytes()


def state_hash(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 hex digest over every tensor's name (sorted), dtype, shape and raw bytes.

    Two states hash equal only if they hold bit-identical tensors under the same names, so a
    device that reports this hash proves exactly which model version it runs.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state entry {name!r} is {type(t).__name__}, not a torch.Tensor")
        meta = f"{name}\x00{str(t.dtype).removeprefix('torch.')}\x00{','.join(map(str, t.shape))}\x00"
        h.update(len(meta).to_bytes(8, "little"))
        h.update(meta.encode("utf-8"))
        data = tensor_bytes(t)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
