"""What every party derives from the config alone: data, layout, initial model, keys.

A device process (Ray actor) and the server both call :func:`experiment_runtime` with the same
config; the result is cached per process, so a device handling many virtual nodes loads the dataset
once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from edgeupdate.configs import ExperimentConfig, config_from_dict, dump_config
from edgeupdate.datasets import DATASET_SHAPES, Dataset, load_dataset
from edgeupdate.datasets.stream import DataLayout, make_layout
from edgeupdate.models import build_model
from edgeupdate.seeding import derive_seed
from edgeupdate.training import TensorData
from edgeupdate.updates import HmacKey, state_hash

StateDict = dict[str, torch.Tensor]


def config_model(cfg: ExperimentConfig, seed: int) -> nn.Module:
    """``cfg``'s model for its dataset's input shape and classes (known without reading data)."""
    shape, classes = DATASET_SHAPES[cfg.dataset.name]
    m = cfg.model
    return build_model(m.name, shape, classes, seed=seed, hidden=m.hidden if m.name == "mlp" else None)


@dataclass(frozen=True)
class ExperimentRuntime:
    """Everything derived deterministically from an :class:`ExperimentConfig`."""

    cfg: ExperimentConfig
    dataset: Dataset
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
        return self.dataset.test.subset(torch.as_tensor(self.layout.device_test[device_id]))

    def validation(self) -> TensorData:
        return self.dataset.test.subset(torch.as_tensor(self.layout.validation))

    def train_subset(self, indices) -> TensorData:
        return self.dataset.train.subset(torch.as_tensor(indices, dtype=torch.long))

    def signing_key(self) -> HmacKey | None:
        """The shared key packages are signed with (None when signing is off)."""
        if self.cfg.package.signing == "hmac":
            return HmacKey(self.cfg.package.key.encode())
        return None


def build_runtime(cfg: ExperimentConfig, data_dir: str | None = None) -> ExperimentRuntime:
    dataset = load_dataset(cfg.dataset.name, data_dir or cfg.dataset.data_dir or None,
                           download=cfg.dataset.download)
    layout = make_layout(
        dataset.train.y.numpy(), len(dataset.test), num_devices=cfg.num_devices, rounds=cfg.rounds,
        initial_samples=cfg.stream.initial_samples, samples_per_round=cfg.stream.samples_per_round,
        partition=cfg.partition.method, seed=cfg.seed, alpha=cfg.partition.alpha,
        shards_per_part=cfg.partition.shards_per_part,
        validation_fraction=cfg.dataset.validation_fraction)
    return ExperimentRuntime(cfg, dataset, layout)


@functools.lru_cache(maxsize=4)
def _cached_runtime(cfg_toml: str, data_dir: str | None) -> ExperimentRuntime:
    import tomllib

    return build_runtime(config_from_dict(tomllib.loads(cfg_toml)), data_dir)


def experiment_runtime(cfg: ExperimentConfig, data_dir: str | None = None) -> ExperimentRuntime:
    """The per-process cached runtime for ``cfg``."""
    return _cached_runtime(dump_config(cfg), data_dir)
