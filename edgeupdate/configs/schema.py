"""The experiment schema: frozen dataclasses, one per TOML table.

Constraints live next to the fields (``metadata``): ``choices``, ``min``/``max`` (inclusive),
``gt`` (exclusive). :mod:`edgeupdate.configs.loader` checks every key, type and constraint and
reports the first problem as one line naming the dotted key.

Strategy-specific parameters (``[strategy.params]``) are validated against the dataclass that the
strategy declares (see :mod:`edgeupdate.strategies.registry`), so a new strategy brings its own
schema and needs no edit here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeupdate.train_config import TrainConfig


def choice(default: Any, *choices: Any) -> Any:
    return field(default=default, metadata={"choices": choices})


def bounded(default: Any, *, min: float | None = None, max: float | None = None,
            gt: float | None = None) -> Any:
    return field(default=default, metadata={"min": min, "max": max, "gt": gt})


@dataclass(frozen=True)
class DatasetConfig:
    """Which data: an embedded default (``digits``) or files under a data directory."""

    name: str = choice("digits", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
    data_dir: str = ""  # empty: --data-dir, then $EDGEUPDATE_DATA, then the user cache dir
    download: bool = False
    validation_fraction: float = bounded(0.3, min=0.0, max=0.9)  # of the test set, kept by the server for model selection
    device_test_samples: int = bounded(0, min=0)  # 0: each device tests on a disjoint share; N: N images drawn from the pool


@dataclass(frozen=True)
class PartitionConfig:
    """How the training (and device test) data is split over devices."""

    method: str = choice("iid", "iid", "dirichlet", "shards")
    alpha: float = bounded(0.5, gt=0.0)
    shards_per_part: int = bounded(2, min=1)


@dataclass(frozen=True)
class StreamConfig:
    """The data-arrival stream: D¹ of ``initial_samples``, then δD of ``samples_per_round``."""

    initial_samples: int = bounded(1000, min=1)
    samples_per_round: int = bounded(1000, min=0)
    source: str = choice("devices", "devices", "server")  # devices upload δD (counted in bytes_up) or a server-side source


@dataclass(frozen=True)
class ModelConfig:
    name: str = choice("mlp", "mlp", "vgg-tiny", "tiny-resnet", "resnet20", "resnet56", "vggnet")
    hidden: list[int] = field(default_factory=lambda: [512, 512])  # MLP hidden layer sizes


@dataclass(frozen=True)
class ClientTrainConfig:
    """On-device training for federated strategies."""

    epochs: int = bounded(1, min=1)
    batch_size: int = bounded(32, min=1)
    lr: float = bounded(0.01, gt=0.0)
    optimizer: str = choice("sgd", "sgd", "adam")
    momentum: float = bounded(0.0, min=0.0, max=1.0)
    fraction_train: float = bounded(1.0, gt=0.0, max=1.0)  # devices sampled for training each round


@dataclass(frozen=True)
class PackageConfig:
    """How packages are encoded (see :mod:`edgeupdate.updates`)."""

    precision: str = choice("fp32", "fp32", "fp16", "int8", "int8-channel")
    coding: str = choice("golomb", "golomb", "varint", "bitmap", "context", "auto")  # positions; auto = smallest per tensor
    value_coding: str = choice("raw", "raw", "entropy")  # entropy: int8 symbols coded with an adaptive ANS model
    signing: str = choice("none", "none", "hmac", "ed25519")
    key: str = "edgeupdate-demo-key"  # shared HMAC secret when signing = "hmac"
    # ed25519: the server's private key (PEM, 32 raw bytes or 64 hex digits); empty: derived from
    # the seed. Devices get only the public key (see edgeupdate.runtime.ExperimentRuntime.package_verifier).
    key_file: str = ""


@dataclass(frozen=True)
class StrategyConfig:
    name: str = "full"
    params: dict[str, Any] = field(default_factory=dict)  # validated by the strategy's own Params


@dataclass(frozen=True)
class SimulationConfig:
    """Flower simulation engine (Ray) settings."""

    num_cpus_per_device: float = bounded(1.0, gt=0.0)
    num_cpus: int = bounded(0, min=0)  # Ray's CPU pool, a node worker per CPU; 0 = automatic (fleet/gateways.py)
    round_timeout_s: float = bounded(3600.0, gt=0.0)
    torch_threads: int = bounded(1, min=1)  # per simulated device process
    server_threads: int = bounded(0, min=0)  # the server's retraining; 0 = torch's default (one per core)
    devices_per_node: int = bounded(0, min=0)  # devices one Flower node (a gateway) serves; 0 = automatic
    save_packages: bool = False  # packages/, models/ and packages.csv in the run dir (strategies.saved_packages)
    ray_address: str = ""  # "" = start a local Ray; "auto" or "host:port" = attach to a running Ray cluster

    def __post_init__(self) -> None:
        check_ray_address(self.ray_address, self.num_cpus)


def check_ray_address(address: str, num_cpus: int) -> None:
    """``""``, ``"auto"`` or ``"host:port"``; a cluster brings its own CPUs, so ``num_cpus`` must be 0."""
    if address not in ("", "auto"):
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"ray_address must be \"\", \"auto\" or \"host:port\"; got {address!r}")
    if address and num_cpus:
        raise ValueError(f"num_cpus must be 0 with ray_address = {address!r} (the cluster's nodes bring their CPUs)")


@dataclass(frozen=True)
class FaultsConfig:
    """Fault injection (see :mod:`edgeupdate.fleet.faults`): per (round, device) probabilities."""

    dropout_prob: float = bounded(0.0, min=0.0, max=1.0)  # unreachable for the whole round
    corruption_prob: float = bounded(0.0, min=0.0, max=1.0)  # the download arrives with flipped bytes
    crash_prob: float = bounded(0.0, min=0.0, max=1.0)  # the device crashes part-way through applying
    corrupt_bytes: int = bounded(1, min=1)  # bytes flipped in a corrupted transfer
    replay_prob: float = bounded(0.0, min=0.0, max=1.0)  # an attacker replays an older, validly signed package
    forge_prob: float = bounded(0.0, min=0.0, max=1.0)  # an attacker sends a forged package (needs signing)
    lost_prob: float = bounded(0.0, min=0.0, max=1.0)  # the device process dies mid-phase and never answers it


@dataclass(frozen=True)
class StudentsConfig:
    """Tiered models (Zhao et al.): a pruned student for every device that cannot hold a dense update.

    Such a device (memory < 3 × the model's bytes: old model, package, staged copy) runs a student
    cut from the server's model by activation-based filter pruning (threshold P lowered from 1 to
    ``min_threshold``, then narrower, until the student and its own dense update fit the device's
    memory; M = ``images``) and trained each round by layer-wise knowledge transfer from the
    server's new model (``trainable``: ``all`` layers or the paper's ``last-in-group``).
    """

    enabled: bool = False
    min_threshold: float = bounded(0.7, min=0.0, max=1.0)
    images: int = bounded(128, min=1)
    trainable: str = choice("all", "all", "last-in-group")


@dataclass(frozen=True)
class FleetConfig:
    """The simulated devices: who they are (tiers or a CSV), the round deadline and faults.

    ``tiers`` maps catalog tier names (``docs/devices.md``) to fractions of ``num_devices``;
    ``csv`` (a path, relative to the working directory) lists one device per row instead.
    ``deadline_s`` bounds each phase a device takes part in (upload / local training, and the
    push: download + apply + first inference); ``inf`` means none. Rounds start back to back on
    the simulated clock, at least ``round_interval_s`` apart. With ``budgets`` a device that would
    miss the deadline or lack memory gets the largest top-|Δ| share of its update that fits.
    """

    tiers: dict[str, float] = field(default_factory=lambda: {"rpi-gateway": 1.0})
    csv: str = ""
    deadline_s: float = bounded(float("inf"), gt=0.0)
    round_interval_s: float = bounded(0.0, min=0.0)
    budgets: bool = False
    server_flop_per_s: float = bounded(10e12, gt=0.0)  # the retraining server's sustained FLOP/s
    host_flop_per_s: float = bounded(50e9, gt=0.0)  # what relative_speed = 1 means (deterministic clock)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    students: StudentsConfig = field(default_factory=StudentsConfig)


@dataclass(frozen=True)
class ExperimentConfig:
    """One runnable scenario (a TOML file under ``configs/``)."""

    name: str = "experiment"
    seed: int = 0
    rounds: int = bounded(5, min=1)
    num_devices: int = bounded(10, min=1)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    client: ClientTrainConfig = field(default_factory=ClientTrainConfig)
    package: PackageConfig = field(default_factory=PackageConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-strategy params for `compare`
    fleet: FleetConfig = field(default_factory=FleetConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
