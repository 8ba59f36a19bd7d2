"""What a device regenerates from a seed instead of receiving it.

* ``mask_positions`` / ``seeded_mask``: the Bernoulli(p) random mask of the RM baseline
  (Konečný et al. 2016, "random mask"): derived from ``(seed, "mask", tensor name)``, so the
  server trains under exactly the mask the device will regenerate and no positions are sent.
* Initializers: a registry ``name -> fn(seed) -> StateDict`` used by re-initialisation packages
  (DPU §5.4.2). Names of the form ``zoo:<model>:<C>x<H>x<W>:<classes>[:<h1>,<h2>,...]`` resolve
  to :func:`edgeupdate.models.build_model` without registration, so every process agrees;
  anything else must be registered with :func:`register_initializer` (no Flower import needed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from edgeupdate.seeding import numpy_rng

StateDict = dict[str, torch.Tensor]
Initializer = Callable[[int], StateDict]

INITIALIZERS: dict[str, Initializer] = {}
_CHUNK = 1 << 20


def mask_positions(seed: int, name: str, numel: int, p: float) -> np.ndarray:
    """Sorted flat positions of the Bernoulli(``p``) mask for tensor ``name`` (deterministic in seed, name)."""
    rng = numpy_rng(seed, "mask", name)
    parts = []
    for start in range(0, numel, _CHUNK):
        n = min(_CHUNK, numel - start)
        parts.append(np.flatnonzero(rng.random(n) < p) + start)
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def seeded_mask(seed: int, name: str, shape: tuple[int, ...] | torch.Size, p: float) -> torch.Tensor:
    """The same mask as a boolean tensor of ``shape`` (for the server's masked training)."""
    numel = int(np.prod(tuple(shape), dtype=np.int64))
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.from_numpy(mask_positions(seed, name, numel, p))] = True
    return mask.reshape(tuple(shape))


def register_initializer(name: str, fn: Initializer) -> None:
    """Register ``fn(seed) -> StateDict`` under ``name`` (must be deterministic in ``seed``)."""
    if not name or name.startswith("zoo:"):
        raise ValueError(f"initializer name {name!r} is empty or uses the reserved 'zoo:' prefix")
    INITIALIZERS[name] = fn


def zoo_initializer_name(model: str, input_shape: tuple[int, int, int], num_classes: int,
                         hidden: tuple[int, ...] | None = None) -> str:
    """The self-describing initializer name for a model of the zoo."""
    c, h, w = input_shape
    name = f"zoo:{model}:{c}x{h}x{w}:{num_classes}"
    return name + (":" + ",".join(map(str, hidden)) if hidden else "")


def _zoo_initializer(name: str) -> Initializer:
    parts = name.split(":")
    if len(parts) not in (4, 5):
        raise KeyError(name)
    try:
        c, h, w = (int(x) for x in parts[2].split("x"))
        classes = int(parts[3])
        hidden = tuple(int(x) for x in parts[4].split(",")) if len(parts) == 5 else None
    except ValueError:
        raise KeyError(name) from None
    model = parts[1]

    def init(seed: int) -> StateDict:
        from edgeupdate.models.zoo import build_model

        kwargs = {"hidden": hidden} if hidden else {}
        return {k: v.detach().clone() for k, v in build_model(model, (c, h, w), classes, seed, **kwargs).state_dict().items()}

    return init


def resolve_initializer(name: str) -> Initializer:
    """The initializer registered (or zoo-described) as ``name``; ``KeyError`` if none."""
    if name in INITIALIZERS:
        return INITIALIZERS[name]
    if name.startswith("zoo:"):
        return _zoo_initializer(name)
    raise KeyError(name)
