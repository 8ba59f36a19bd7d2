"""The data-arrival stream and who holds which sample.

The training set is partitioned over the devices (IID, Dirichlet(α) or shards); each device's
partition is shuffled once (seeded) into the order in which the device *collects* it. Round 1 makes
``initial_samples`` available (D¹, thesis §5.4.2: the data before deployment), every later round
``samples_per_round`` more (δDʳ), split over devices in proportion to what they have left (largest
remainder, deterministic). So at round r the union of what devices collected is exactly Dʳ:

* server-retrain strategies train on Dʳ at the server (δDʳ uploaded by the devices, or taken from
  a server-side source, per ``stream.source``);
* federated strategies let each device train on its own collected prefix.

Both families therefore see the same samples. The test set is split into a server-side validation
part (model selection) and the devices' pool. Each device tests on a disjoint share of the pool
(``test_samples = 0``) or, for fleets larger than the test set, on ``test_samples`` images drawn from
the pool, seeded by (seed, device) (:meth:`DataLayout.test_indices`). Every device process and the
server rebuild the same layout from the config alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeupdate.datasets.partition import partition_indices
from edgeupdate.seeding import numpy_rng


class StreamSizeError(ValueError):
    """The stream asks for more samples than the training set has; ``key`` names the config key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


@dataclass(frozen=True)
class DataLayout:
    """Which indices of the train/test sets each party holds, round by round."""

    device_train: tuple[np.ndarray, ...]  # per device: partition indices in collection order
    device_test: tuple[np.ndarray, ...]  # per device: its disjoint share of the pool (test_samples = 0)
    validation: np.ndarray  # server-side validation indices into the test set
    collected: np.ndarray  # collected[r, d] = samples device d holds after round r (row 0 = nothing)
    test_pool: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # the devices' test indices, sorted
    test_samples: int = 0  # > 0: each device draws this many images from the pool
    seed: int = 0

    def test_indices(self, device: int) -> np.ndarray:
        """Indices into the test set that device ``device`` evaluates on (sorted)."""
        if self.test_samples <= 0:
            return self.device_test[device]
        draw = numpy_rng(self.seed, "device-test", device).choice(len(self.test_pool), self.test_samples, replace=False)
        return self.test_pool[np.sort(draw)]

    @property
    def num_devices(self) -> int:
        return len(self.device_train)

    @property
    def rounds(self) -> int:
        return self.collected.shape[0] - 1

    def collected_indices(self, device: int, round_: int) -> np.ndarray:
        """Training indices device ``device`` has collected by the end of round ``round_``."""
        return self.device_train[device][: self.collected[round_, device]]

    def arrivals(self, device: int, round_: int) -> np.ndarray:
        """Indices device ``device`` collects in round ``round_`` (δD share; round 1: D¹ share)."""
        lo, hi = self.collected[round_ - 1, device], self.collected[round_, device]
        return self.device_train[device][lo:hi]

    def train_rows(self) -> np.ndarray:
        """Every training index any party can read in the run (sorted): what the devices hold by the
        last round. A process keeps only these images (:meth:`~edgeupdate.datasets.base.ImageData.keep`)."""
        return np.unique(self.server_pool(self.rounds))

    def server_pool(self, round_: int) -> np.ndarray:
        """Dʳ: every index collected by any device up to round ``round_``, in a fixed order."""
        return np.concatenate([self.collected_indices(d, round_) for d in range(self.num_devices)])


def _allocate(total: int, room: np.ndarray) -> np.ndarray:
    """Split ``total`` over parts in proportion to ``room`` (largest remainder, capped by room)."""
    total = int(min(total, room.sum()))
    out = np.zeros_like(room)
    while total > 0:
        weights = room - out
        share = weights / weights.sum() * total
        base = np.floor(share).astype(np.int64)
        base = np.minimum(base, weights)
        left = total - int(base.sum())
        order = np.lexsort((np.arange(len(room)), -(share - base)))  # largest remainder, then index
        for i in order:
            if left == 0:
                break
            if base[i] < weights[i]:
                base[i] += 1
                left -= 1
        out += base
        total -= int(base.sum())
    return out


def make_layout(train_labels: np.ndarray, test_size: int, *, num_devices: int, rounds: int,
                initial_samples: int, samples_per_round: int, partition: str, seed: int,
                alpha: float = 0.5, shards_per_part: int = 2,
                validation_fraction: float = 0.3, test_samples: int = 0) -> DataLayout:
    """Build the deterministic data layout for an experiment (``test_samples``: see :class:`DataLayout`)."""
    if num_devices > len(train_labels) and partition != "iid":
        raise ValueError(f"num_devices ({num_devices}) exceeds the training set ({len(train_labels)} samples)")
    parts = partition_indices(np.asarray(train_labels), num_devices, partition, seed,
                              alpha=alpha, shards_per_part=shards_per_part)
    device_train = tuple(numpy_rng(seed, "collect-order", d).permutation(p) for d, p in enumerate(parts))
    sizes = np.array([len(p) for p in device_train], dtype=np.int64)
    if initial_samples > sizes.sum():
        raise StreamSizeError("stream.initial_samples", f"{initial_samples} samples asked for D¹, but the training "
                                                        f"set has {int(sizes.sum())}")
    needed = initial_samples + (rounds - 1) * samples_per_round
    if needed > sizes.sum():
        raise StreamSizeError("stream.samples_per_round", f"{rounds} rounds need {needed} training samples "
                                                          f"({initial_samples} + {rounds - 1} × {samples_per_round}), "
                                                          f"the training set has {int(sizes.sum())}")
    collected = np.zeros((rounds + 1, num_devices), dtype=np.int64)
    for r in range(1, rounds + 1):
        want = initial_samples if r == 1 else samples_per_round
        collected[r] = collected[r - 1] + _allocate(want, sizes - collected[r - 1])
    test_order = numpy_rng(seed, "test-split").permutation(test_size)
    n_val = int(round(validation_fraction * test_size))
    validation = np.sort(test_order[:n_val])
    pool = np.sort(test_order[n_val:])
    if test_samples > 0:
        if test_samples > len(pool):
            raise ValueError(f"dataset.device_test_samples = {test_samples} exceeds the devices' test pool "
                             f"({len(pool)} images)")
        return DataLayout(device_train, (), validation, collected, pool, test_samples, seed)
    device_test = tuple(np.sort(chunk) for chunk in np.array_split(test_order[n_val:], num_devices))
    if any(len(t) == 0 for t in device_test):
        raise ValueError(f"test set of {test_size} samples leaves some of {num_devices} devices without a test "
                         f"split; set dataset.device_test_samples to draw each device's test images from the pool")
    return DataLayout(device_train, device_test, validation, collected, pool, 0, seed)
