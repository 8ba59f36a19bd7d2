"""What every party derives from the config alone: data, layout, initial model, keys.

A device process (Ray actor) and the server both call :func:`experiment_runtime` with the same
config; the result is cached per process, so a device handling many virtual nodes loads the dataset
once.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgeupdate.configs import ConfigError, ExperimentConfig, config_from_dict, dump_config
from edgeupdate.datasets import DATASET_SHAPES, Dataset, load_dataset
from edgeupdate.datasets.base import ImageData
from edgeupdate.datasets.stream import DataLayout, StreamSizeError, make_layout
from edgeupdate.fleet.gateways import devices_per_node, node_count
from edgeupdate.models import build_model
from edgeupdate.models.zoo import model_for_state
from edgeupdate.models.cost import ForwardProfile, forward_profile
from edgeupdate.seeding import derive_seed
from edgeupdate.training import TensorData
from edgeupdate.updates import Ed25519Signer, HmacKey, Signer, StateDict, Verifier, state_hash
from edgeupdate.updates.auth import load_ed25519_signer
from edgeupdate.updates.cost import state_bytes

if TYPE_CHECKING:
    from edgeupdate.fleet.simulated import SimulatedFleet

DENSE_APPLY_FACTOR = 3  # a dense update needs the old model, the package and a staged copy
EMPTY_STATE_HASH = state_hash({})  # what a student device holds before its first student model


def config_model(cfg: ExperimentConfig, seed: int) -> nn.Module:
    """``cfg``'s model for its dataset's input shape and classes (known without reading data)."""
    shape, classes = DATASET_SHAPES[cfg.dataset.name]
    m = cfg.model
    return build_model(m.name, shape, classes, seed=seed, hidden=m.hidden if m.name == "mlp" else None)


@dataclass(frozen=True)
class ExperimentRuntime:
    """Everything derived deterministically from an :class:`ExperimentConfig`."""

    cfg: ExperimentConfig
    dataset: Dataset  # its train split holds only the images the run reads (DataLayout.train_rows)
    layout: DataLayout

    def new_model(self, seed_part: int | str = 0) -> nn.Module:
        """A fresh model whose weights derive from (seed, "init", seed_part)."""
        return config_model(self.cfg, derive_seed(self.cfg.seed, "init", seed_part))

    @functools.cached_property
    def initial_state(self) -> StateDict:
        """Version 0: the factory image every device ships with (regenerable from the seed)."""
        return {k: v.detach().clone() for k, v in self.new_model(0).state_dict().items()}

    @functools.cached_property
    def initial_hash(self) -> str:
        return state_hash(self.initial_state)

    def device_test(self, device_id: int) -> TensorData:
        """The device's local test images (:meth:`~edgeupdate.datasets.stream.DataLayout.test_indices`)."""
        return self.dataset.test.subset(torch.as_tensor(self.layout.test_indices(device_id)))

    @functools.cached_property
    def test_pool(self) -> ImageData:
        """Every image any device tests on (the test set less the server's validation part), held raw:
        every process keeps it for the run, and evaluation normalises it a batch at a time."""
        return self.dataset.test.take(self.layout.test_pool)

    @functools.cached_property
    def devices_per_node(self) -> int:
        """How many devices one Flower node (a gateway) serves (:func:`devices_per_node`)."""
        return devices_per_node(self.cfg.num_devices, self.cfg.simulation.devices_per_node)

    @property
    def num_nodes(self) -> int:
        return node_count(self.cfg.num_devices, self.cfg.simulation.devices_per_node)

    def node_devices(self, partition_id: int) -> range:
        """The device ids the node with ``partition-id`` serves."""
        if not 0 <= partition_id < self.num_nodes:
            raise ValueError(f"partition-id {partition_id} is out of range: this run has {self.num_nodes} nodes "
                             f"(0..{self.num_nodes - 1}) of {self.devices_per_node} devices")
        per = self.devices_per_node
        return range(partition_id * per, min((partition_id + 1) * per, self.cfg.num_devices))

    def devices_of_node(self, node_config: Mapping[str, Any]) -> range:
        """The device ids of the node whose Flower node config is ``node_config`` (its ``partition-id``)."""
        pid = node_config.get("partition-id")
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ValueError(f"this node has no integer partition-id (node config {dict(node_config)}): start it with "
                             f"flower-supernode --node-config 'partition-id=N', N = 0..{self.num_nodes - 1}")
        return self.node_devices(pid)

    def validation(self) -> TensorData:
        return self.dataset.test.subset(torch.as_tensor(self.layout.validation))

    def train_subset(self, indices) -> TensorData:
        return self.dataset.train.subset(torch.as_tensor(indices, dtype=torch.long))

    @functools.cached_property
    def fleet(self) -> "SimulatedFleet":
        """The simulated devices (profiles, faults, deadline) — the same in every process."""
        from edgeupdate.fleet.simulated import simulated_fleet

        return simulated_fleet(self.cfg)

    @functools.cached_property
    def forward(self) -> ForwardProfile:
        """Per-sample forward-pass costs of the model (FLOPs, activations)."""
        return forward_profile(self.new_model(0), self.dataset.input_shape)

    @functools.cached_property
    def model_bytes(self) -> int:
        """Bytes of the deployed model's tensors."""
        return state_bytes(self.initial_state)

    def student_memory(self, device_id: int) -> int | None:
        """The memory budget of the student this device runs; None when it runs the full model.

        With ``fleet.students.enabled`` a device gets a student when it cannot hold a dense update
        of the model: its old weights, the package and a staged copy (``DENSE_APPLY_FACTOR`` ×).
        """
        if not self.cfg.fleet.students.enabled:
            return None
        memory = self.fleet.memory_bytes(device_id)
        return memory if memory < DENSE_APPLY_FACTOR * self.model_bytes else None

    def factory_hash(self, device_id: int) -> str:
        """Hash of what the device ships with: version 0 of the model, or nothing on a student device."""
        return EMPTY_STATE_HASH if self.student_memory(device_id) is not None else self.initial_hash

    @functools.cached_property
    def factory_states(self) -> dict[str, StateDict]:
        """Every state a device can ship with, by hash (regenerable from the config, never stored)."""
        return {self.initial_hash: self.initial_state, EMPTY_STATE_HASH: {}}

    def model_for(self, weights: StateDict) -> nn.Module:
        """A model of the configured architecture (the full one or a student) holding ``weights``."""
        return model_for_state(self.cfg.model.name, self.dataset.input_shape, self.dataset.num_classes, weights)

    def signing_key(self) -> Signer | None:
        """The server's key packages are signed with (None when signing is off): the shared HMAC
        secret, or the Ed25519 private key from ``package.key_file`` or derived from the seed."""
        return _signing_key(self.cfg.package.signing, self.cfg.package.key, self.cfg.package.key_file, self.cfg.seed)

    def package_verifier(self) -> Verifier | None:
        """What a device verifies packages with: the shared HMAC secret, or only the Ed25519 public key."""
        key = self.signing_key()
        return key.verifier() if isinstance(key, Ed25519Signer) else key


@functools.lru_cache(maxsize=8)
def _signing_key(signing: str, secret: str, key_file: str, seed: int) -> Signer | None:
    if signing == "hmac":
        return HmacKey(secret.encode())
    if signing != "ed25519":
        return None
    if key_file:
        try:
            return load_ed25519_signer(Path(key_file).read_bytes())
        except (OSError, ValueError) as err:
            raise ConfigError("package.key_file", f"cannot read an Ed25519 private key from {key_file}: {err}") from None
    seed_bytes = hashlib.blake2b(str(derive_seed(seed, "ed25519-signing-key")).encode(), digest_size=32).digest()
    return Ed25519Signer(seed_bytes)


def build_runtime(cfg: ExperimentConfig, data_dir: str | None = None) -> ExperimentRuntime:
    dataset = load_dataset(cfg.dataset.name, data_dir or cfg.dataset.data_dir or None,
                           download=cfg.dataset.download)
    try:
        layout = make_layout(
            dataset.train.y.numpy(), len(dataset.test), num_devices=cfg.num_devices, rounds=cfg.rounds,
            initial_samples=cfg.stream.initial_samples, samples_per_round=cfg.stream.samples_per_round,
            partition=cfg.partition.method, seed=cfg.seed, alpha=cfg.partition.alpha,
            shards_per_part=cfg.partition.shards_per_part,
            validation_fraction=cfg.dataset.validation_fraction, test_samples=cfg.dataset.device_test_samples)
    except StreamSizeError as err:
        raise ConfigError(err.key, str(err)) from None
    except ValueError as err:
        raise ConfigError("", str(err)) from None
    # the run reads only the training images its devices collect (10,000 devices × 10 rounds of
    # scale-mnist: 11,000 of MNIST's 60,000); every process keeps just those
    return ExperimentRuntime(cfg, dataset.keeping_train(layout.train_rows()), layout)


@functools.lru_cache(maxsize=4)
def _cached_runtime(cfg_toml: str, data_dir: str | None) -> ExperimentRuntime:
    import tomllib

    return build_runtime(config_from_dict(tomllib.loads(cfg_toml)), data_dir)


def experiment_runtime(cfg: ExperimentConfig, data_dir: str | None = None) -> ExperimentRuntime:
    """The per-process cached runtime for ``cfg``."""
    return _cached_runtime(dump_config(cfg), data_dir)
