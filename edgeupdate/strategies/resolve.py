"""Which strategy a config chooses: built-in names, your own ``module:Class``, checked parameters.

``strategy.name`` in a config is either a registered name (``full``, ``fedavg``, ...) or an import
path ``package.module:ClassName`` or a file ``path/to/file.py:ClassName`` of an
:class:`~edgeupdate.strategies.base.EdgeStrategy` subclass — so a strategy in your own file needs no
edit of this package. :func:`resolve_strategy` builds and checks a run's parameters once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeupdate.configs import ConfigError, ExperimentConfig
from edgeupdate.configs.loader import build_dataclass
from edgeupdate.strategies import dpu, fl_strategies, full, ka, pruning  # noqa: F401  (they register themselves)
from edgeupdate.strategies.base import EdgeStrategy
from edgeupdate.strategies.registry import STRATEGIES


def strategy_class(name: str) -> type[EdgeStrategy]:
    """Look up a registered name or import ``module:Class``."""
    if name in STRATEGIES:
        return STRATEGIES[name]
    if ":" in name:
        module, _, attr = name.rpartition(":")
        try:
            cls = getattr(_import(module), attr)
        except (ImportError, AttributeError, OSError) as err:
            raise ConfigError("strategy.name", f"cannot import {name!r}: {err}") from None
        if not (isinstance(cls, type) and issubclass(cls, EdgeStrategy)):
            raise ConfigError("strategy.name", f"{name!r} is not an EdgeStrategy subclass")
        return cls
    raise ConfigError("strategy.name", f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))}, or module:Class)")


def _import(module: str):
    """Import ``pkg.module`` or a file path ``dir/file.py`` (relative to the working directory)."""
    if module.endswith(".py"):
        path = Path(module).resolve()
        spec = importlib.util.spec_from_file_location(f"edgeupdate_user_{path.stem}", path)
        if spec is None or spec.loader is None or not path.exists():
            raise ImportError(f"no Python file at {path}")
        mod = sys.modules.get(spec.name)
        if mod is None:
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
        return mod
    return importlib.import_module(module)


def validate_strategy(name: str, params: dict[str, Any], cfg: ExperimentConfig | None = None,
                      key: str = "strategy.params") -> Any:
    """The strategy's ``Params`` built from ``params`` (raises ConfigError naming the key).

    With ``cfg``, the strategy's ``check_config(cfg, params)`` also checks its parameters against
    the rest of the config — e.g. the KA family's ranks against the layers of ``cfg``'s model — so
    an impossible setting fails before any training.
    """
    cls = strategy_class(name)
    built = build_dataclass(cls.Params, params, key)
    if cfg is not None:
        cls.check_config(cfg, built)
    return built


@dataclass(frozen=True)
class StrategyChoice:
    """A strategy class with its built and checked parameters: made once per run
    (:func:`resolve_strategy`) and passed along, so nothing validates it again."""

    cls: type[EdgeStrategy]
    params: Any

    @property
    def name(self) -> str:
        return self.cls.name


def resolve_strategy(cfg: ExperimentConfig, key: str = "strategy.params") -> StrategyChoice:
    """``cfg.strategy`` as a :class:`StrategyChoice`: parameters built and checked against ``cfg``.

    ``key`` names where the parameters came from in error messages (``strategies.<label>`` for a
    compare label).
    """
    cls = strategy_class(cfg.strategy.name)
    return StrategyChoice(cls, validate_strategy(cfg.strategy.name, cfg.strategy.params, cfg, key))
