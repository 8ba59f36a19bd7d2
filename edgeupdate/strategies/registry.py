"""Strategies by name, and the plug-in hook for your own.

``strategy.name`` in a config is either a registered name (``full``, ``fedavg``, ...) or an import
path ``package.module:ClassName`` or a file ``path/to/file.py:ClassName`` of an :class:`~edgeupdate.strategies.base.EdgeStrategy` subclass —
so a strategy in your own file needs no edit of this package.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeupdate.configs import ExperimentConfig
    from edgeupdate.strategies.base import EdgeStrategy

STRATEGIES: dict[str, type[EdgeStrategy]] = {}


def register(cls: type[EdgeStrategy]) -> type[EdgeStrategy]:
    """Class decorator: make ``cls`` available as ``strategy.name = cls.name``."""
    STRATEGIES[cls.name] = cls
    return cls


def strategy_class(name: str) -> type[EdgeStrategy]:
    """Look up a registered name or import ``module:Class``."""
    from edgeupdate.configs.loader import ConfigError
    import edgeupdate.strategies  # noqa: F401  (registers the built-in strategies)

    if name in STRATEGIES:
        return STRATEGIES[name]
    if ":" in name:
        module, _, attr = name.rpartition(":")
        try:
            cls = getattr(_import(module), attr)
        except (ImportError, AttributeError, OSError) as err:
            raise ConfigError("strategy.name", f"cannot import {name!r}: {err}") from None
        from edgeupdate.strategies.base import EdgeStrategy

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


def validate_strategy(name: str, params: dict[str, Any], cfg: ExperimentConfig | None = None) -> Any:
    """The strategy's ``Params`` built from ``params`` (raises ConfigError naming the key).

    With ``cfg``, a strategy class that defines ``check_config(cfg, params)`` (a classmethod) also
    checks its parameters against the rest of the config — e.g. the KA family's ranks against the
    layers of ``cfg``'s model — so an impossible setting fails at load time, before any training.
    """
    from edgeupdate.configs.loader import build_dataclass

    cls = strategy_class(name)
    built = build_dataclass(cls.Params, params, "strategy.params")
    check = getattr(cls, "check_config", None)
    if cfg is not None and check is not None:
        check(cfg, built)
    return built
