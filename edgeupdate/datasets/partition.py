"""Split sample indices across devices: IID, Dirichlet(α) label skew, or label shards.

All methods return ``num_parts`` sorted int64 index arrays that are disjoint, cover ``0..N-1`` and are
non-empty; the same ``(labels, num_parts, method, seed, ...)`` always gives the same result.
"""

from __future__ import annotations

import math

import numpy as np

from edgeupdate.seeding import numpy_rng

PARTITION_METHODS = ("iid", "dirichlet", "shards")


def partition_indices(
    labels: np.ndarray,
    num_parts: int,
    method: str,
    seed: int,
    *,
    alpha: float = 0.5,
    shards_per_part: int = 2,
) -> list[np.ndarray]:
    """Partition the indices of ``labels`` into ``num_parts`` disjoint parts (non-empty, but for IID
    with more parts than samples).

    * ``iid``: a random permutation cut into near-equal parts (sizes differ by at most 1). With more
      parts than samples (a fleet larger than the data), a seeded choice of parts holds one sample
      each and the others hold none.
    * ``dirichlet``: for every class, proportions p ~ Dir(α·1) over the parts and the class's samples
      are dealt out in those proportions (Hsu et al. 2019). Small α → few classes per part; large α →
      close to IID. Parts left empty are topped up with one sample from the largest part.
    * ``shards``: samples sorted by label are cut into ``num_parts·shards_per_part`` shards and each
      part gets ``shards_per_part`` random shards (McMahan et al. 2017). Shards are cut inside each class
      (shard counts per class in proportion to class size), so a part holds at most ``shards_per_part``
      labels whenever there are at least as many shards as classes.

    Raises ``ValueError`` for impossible requests (non-IID with more parts or shards than samples, α ≤ 0, ...).
    """
    y = _check_labels(labels)
    if not _is_positive_int(num_parts):
        raise ValueError(f"num_parts must be a positive integer, got {num_parts!r}")
    num_parts = int(num_parts)
    if num_parts > y.size and method != "iid":
        raise ValueError(f"num_parts={num_parts} is more than the {y.size} samples to partition")
    if method == "iid":
        parts = _iid(y.size, num_parts, seed)
    elif method == "dirichlet":
        is_number = isinstance(alpha, (int, float, np.integer, np.floating)) and not isinstance(alpha, bool)
        if not (is_number and math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"dirichlet alpha must be a finite number > 0, got {alpha!r}")
        parts = _dirichlet(y, num_parts, float(alpha), seed)
    elif method == "shards":
        if not _is_positive_int(shards_per_part):
            raise ValueError(f"shards_per_part must be a positive integer, got {shards_per_part!r}")
        num_shards = num_parts * int(shards_per_part)
        if num_shards > y.size:
            raise ValueError(
                f"num_parts*shards_per_part={num_shards} shards is more than the {y.size} samples to partition"
            )
        parts = _shards(y, num_parts, int(shards_per_part), seed)
    else:
        raise ValueError(f"unknown partition method {method!r}; choose one of {PARTITION_METHODS}")
    return [np.sort(p).astype(np.int64, copy=False) for p in parts]


def _is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_labels(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("labels is empty: nothing to partition")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    return y


def _iid(n: int, num_parts: int, seed: int) -> list[np.ndarray]:
    perm = numpy_rng(seed, "partition", "iid").permutation(n)
    parts = list(np.array_split(perm, num_parts))
    if num_parts > n:  # which parts get the samples is random too, not the first n
        order = numpy_rng(seed, "partition", "iid-holders").permutation(num_parts)
        parts = [parts[i] for i in order]
    return parts


def _dirichlet(y: np.ndarray, num_parts: int, alpha: float, seed: int) -> list[np.ndarray]:
    rng = numpy_rng(seed, "partition", "dirichlet")
    buckets: list[list[np.ndarray]] = [[] for _ in range(num_parts)]
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        proportions = rng.dirichlet(np.full(num_parts, alpha))
        cuts = np.round(np.cumsum(proportions)[:-1] * members.size).astype(np.int64)
        for part, chunk in enumerate(np.split(members, cuts)):
            buckets[part].append(chunk)
    parts = [np.concatenate(b) if b else np.empty(0, dtype=np.int64) for b in buckets]
    # Every device needs data: move single samples from the largest part into each empty one.
    for empty in [i for i, p in enumerate(parts) if p.size == 0]:
        donor = max(range(num_parts), key=lambda i: (parts[i].size, -i))
        pick = int(rng.integers(parts[donor].size))
        parts[empty] = parts[donor][pick : pick + 1]
        parts[donor] = np.delete(parts[donor], pick)
    return parts


def _shard_counts(class_sizes: np.ndarray, num_shards: int) -> np.ndarray:
    """Shards per class: proportional to class size (largest remainder), ≥ 1 each, ≤ class size."""
    ideal = class_sizes * (num_shards / class_sizes.sum())
    counts = np.clip(np.floor(ideal).astype(np.int64), 1, class_sizes)
    while counts.sum() < num_shards:
        room = counts < class_sizes
        gap = np.where(room, ideal - counts, -np.inf)
        counts[int(np.argmax(gap))] += 1
    while counts.sum() > num_shards:
        room = counts > 1
        gap = np.where(room, ideal - counts, np.inf)
        counts[int(np.argmin(gap))] -= 1
    return counts


def _shards(y: np.ndarray, num_parts: int, shards_per_part: int, seed: int) -> list[np.ndarray]:
    rng = numpy_rng(seed, "partition", "shards")
    num_shards = num_parts * shards_per_part
    classes, class_sizes = np.unique(y, return_counts=True)
    shards: list[np.ndarray] = []
    if num_shards >= classes.size:
        # Label-pure shards: each class is cut into its own share of the shards.
        for cls, k in zip(classes, _shard_counts(class_sizes, num_shards)):
            members = rng.permutation(np.flatnonzero(y == cls))
            shards.extend(np.array_split(members, int(k)))
    else:
        # Fewer shards than classes: contiguous cuts of the label-sorted order (shards mix labels).
        shuffled = rng.permutation(y.size)
        by_label = shuffled[np.argsort(y[shuffled], kind="stable")]
        shards.extend(np.array_split(by_label, num_shards))
    order = rng.permutation(num_shards)
    return [
        np.concatenate([shards[s] for s in order[p * shards_per_part : (p + 1) * shards_per_part]])
        for p in range(num_parts)
    ]
