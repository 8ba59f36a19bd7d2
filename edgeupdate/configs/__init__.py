"""Typed experiment configs: schema, TOML loading, ``--set`` overrides, validation."""

from edgeupdate.configs.loader import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
)
from edgeupdate.configs.schema import ExperimentConfig

__all__ = ["ConfigError", "ExperimentConfig", "apply_overrides", "config_from_dict", "dump_config", "load_config"]
