"""Load, override and validate experiment configs.

``load_config(path, overrides)`` reads a TOML file, applies ``--set key=value`` overrides (values
parsed as TOML, so ``rounds=3``, ``model.hidden=[64,64]``, ``strategy.params.k=0.01``; anything that is
not valid TOML is taken as a string) and builds an :class:`ExperimentConfig`. Every problem raises
:class:`ConfigError` whose message is one line naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from edgeupdate.configs.schema import ExperimentConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem; ``str(err)`` is one line that names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}" if key else problem)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (list, Sequence):
        (inner,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    if origin is dict:
        return "table"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "none"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it in canonical form."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a table, got {value!r}")
        return build_dataclass(tp, value, key)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
        return [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a table, got {value!r}")
        _, inner = typing.get_args(tp)
        return {str(k): _convert(v, inner, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is type(None):
        if value is None:
            return None
    else:  # pragma: no cover - schema uses only the types above
        raise ConfigError(key, f"unsupported schema type {tp!r}")
    raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")


def _check_constraints(value: Any, meta: Mapping[str, Any], key: str) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(map(str, choices))}; got {value!r}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(key, f"must be >= {meta['min']}; got {value!r}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(key, f"must be <= {meta['max']}; got {value!r}")
    if meta.get("gt") is not None and value <= meta["gt"]:
        raise ConfigError(key, f"must be > {meta['gt']}; got {value!r}")


def build_dataclass(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and bad values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in data:
        if name not in fields:
            full = f"{prefix}.{name}" if prefix else name
            raise ConfigError(full, f"unknown key (known: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        converted = _convert(value, hints[name], key)
        _check_constraints(converted, fields[name].metadata, key)
        kwargs[name] = converted
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # __post_init__ checks
        raise ConfigError(prefix, str(err)) from None


def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b=3"`` → ``("a.b", 3)``; a value that is not TOML is kept as a string."""
    if "=" not in item:
        raise ConfigError(item, "--set expects key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(item, "--set expects key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key=value`` overrides applied (dotted keys)."""
    out = _deep_copy(data)
    for item in overrides:
        key, value = parse_override(item)
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[: i + 1]), "is a value, not a table")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("", f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("", f"config file {p} is not valid TOML: {err}") from None


def config_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a mapping into an :class:`ExperimentConfig`.

    ``strategy.params`` stays a table here: the strategy's own ``Params`` are built and checked
    once per run by :func:`edgeupdate.strategies.registry.resolve_strategy`.
    """
    return build_dataclass(ExperimentConfig, data)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read ``path``, apply ``overrides`` and validate."""
    data = read_toml(path)
    data.setdefault("name", Path(path).stem)
    return config_from_dict(apply_overrides(data, overrides))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain TOML-able data (None values dropped)."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return clean(dataclasses.asdict(cfg))


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config as TOML text (round-trips through :func:`config_from_dict`)."""
    return tomli_w.dumps(config_to_dict(cfg))
