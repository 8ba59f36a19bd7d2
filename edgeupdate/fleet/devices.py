"""Who the devices are (pure; no Flower): fleets from a tier mixture or a CSV of device rows.

* :func:`fleet_from_mixture` — N devices from ``{"lora-sf12": 0.5, "phone-wifi": 0.5}``: exact
  counts by largest remainder, tiers shuffled onto device ids by the seed.
* :func:`fleet_from_csv` — one row per device (FedScale-style traces); columns in ``CSV_COLUMNS``.
* :func:`build_fleet` — either of the two, from a config value.

What a round does to each device is :mod:`edgeupdate.fleet.rounds`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeupdate.fleet.catalog import UnknownTierError, get_profile, resolve_tier
from edgeupdate.fleet.profiles import DeviceProfile, ProfileError, parse_availability
from edgeupdate.seeding import numpy_rng



class FleetError(ValueError):
    """An invalid fleet specification: mixture, CSV row or workload (one-line message)."""


@dataclass(frozen=True)
class Device:
    """One simulated device: an id (0..N-1, the Flower partition id) and its profile."""

    device_id: int
    profile: DeviceProfile

    @property
    def tier(self) -> str:
        return self.profile.tier


# --------------------------------------------------------------------------- mixtures


def mixture_counts(mixture: Mapping[str, float], num_devices: int) -> dict[str, int]:
    """Exact device counts per tier for ``num_devices`` by the largest-remainder method.

    Weights must be >= 0 and sum to 1 (within 1e-6). Each tier gets ``floor(w·N)`` devices; the
    remaining devices go to the largest fractional parts, ties to the tier listed first.
    """
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise FleetError(f"num_devices must be an integer >= 1, got {num_devices!r}")
    if not isinstance(mixture, Mapping) or not mixture:
        raise FleetError(f"fleet mixture must be a non-empty mapping tier -> fraction, got {mixture!r}")
    weights: list[tuple[str, float]] = []
    for name, weight in mixture.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not math.isfinite(weight) or weight < 0:
            raise FleetError(f"fleet mixture weight of {name!r} must be a number >= 0, got {weight!r}")
        weights.append((str(name), float(weight)))
    total = sum(w for _, w in weights)
    if abs(total - 1.0) > 1e-6:
        listing = ", ".join(f"{n}={w:g}" for n, w in weights)
        raise FleetError(f"fleet mixture fractions must sum to 1, got {total:g} ({listing})")
    # rounding the quotas keeps float noise (0.29·100 = 28.999…96) from moving a device
    quotas = [(name, round(w * num_devices, 9)) for name, w in weights]
    counts = {name: math.floor(q) for name, q in quotas}
    left = num_devices - sum(counts.values())
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i][1] - math.floor(quotas[i][1])), i))
    for i in order[:left]:
        counts[quotas[i][0]] += 1
    return counts


def fleet_from_mixture(mixture: Mapping[str, float], num_devices: int, seed: int,
                       profiles: Mapping[str, DeviceProfile] | None = None) -> list[Device]:
    """``num_devices`` devices drawn from a tier mixture; deterministic from ``seed``.

    Tier names are looked up in ``profiles`` first (custom tiers), then in the catalog (aliases
    allowed). Counts are exact (:func:`mixture_counts`); which device id gets which tier is a
    permutation drawn from ``(seed, "fleet-assignment")``.
    """
    counts = mixture_counts(mixture, num_devices)
    resolved: dict[str, DeviceProfile] = {}
    for name in counts:
        if profiles is not None and name in profiles:
            profile = profiles[name]
        else:
            try:
                profile = get_profile(name)
            except UnknownTierError as exc:
                raise FleetError(str(exc)) from None
        if profile.tier in {p.tier for p in resolved.values()}:
            raise FleetError(f"fleet mixture names tier {profile.tier!r} twice (via {name!r})")
        resolved[name] = profile
    pool = [resolved[name] for name, count in counts.items() for _ in range(count)]
    order = numpy_rng(seed, "fleet-assignment").permutation(len(pool))
    return [Device(device_id=i, profile=pool[j]) for i, j in enumerate(order.tolist())]


# --------------------------------------------------------------------------- CSV fleets

_INT_COLUMNS = ("memory_bytes", "frame_payload_bytes", "frame_overhead_bytes",
                "lora_spreading_factor")
_FLOAT_COLUMNS = ("downlink_bps", "uplink_bps", "latency_s", "duty_cycle", "compute_flop_per_s",
                  "relative_speed", "frame_gap_s", "lora_bandwidth_hz", "energy_j_per_byte_down",
                  "energy_j_per_byte_up", "energy_j_per_flop")
_KBPS_COLUMNS = {"downlink_kbps": "downlink_bps", "uplink_kbps": "uplink_bps"}
CSV_COLUMNS: tuple[str, ...] = (("device_id", "tier", "availability") + _FLOAT_COLUMNS
                                + _INT_COLUMNS + tuple(_KBPS_COLUMNS))
"""Accepted CSV columns. ``device_id`` is required; ``tier`` names a catalog tier whose values
fill empty or missing cells (or labels a custom tier whose required values are all given);
``downlink_kbps``/``uplink_kbps`` (FedScale traces are in kbit/s) may replace the ``_bps``
columns; ``availability`` is ``always`` | ``bernoulli:P`` | ``trace:ON-OFF;...[@PERIOD]``."""
_REQUIRED = ("downlink_bps", "uplink_bps", "memory_bytes")


def _parse_cell(column: str, text: str) -> Any:
    if column in _INT_COLUMNS:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {text!r}")
        return int(value)
    if column in _FLOAT_COLUMNS or column in _KBPS_COLUMNS:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {text!r}")
        return value * 1000.0 if column in _KBPS_COLUMNS else value
    if column == "availability":
        return parse_availability(text)
    return text


def fleet_from_csv(source: str | os.PathLike[str] | io.TextIOBase,
                   profiles: Mapping[str, DeviceProfile] | None = None) -> list[Device]:
    """Devices from a CSV with one row per device (columns: ``CSV_COLUMNS``).

    ``source`` is a path or an open text stream; devices are returned sorted by ``device_id``.
    Blank lines and lines starting with ``#`` are skipped. Bad input raises :class:`FleetError` naming the line and column, e.g.
    ``fleet.csv line 4, column 'downlink_bps': expected a number, got 'fast'``.
    """
    if isinstance(source, (str, os.PathLike)):
        label = Path(source).name
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise FleetError(f"cannot read fleet CSV {str(source)!r}: {exc.strerror}") from None
        stream: Any = io.StringIO(text)
    else:
        label, stream = getattr(source, "name", "<fleet csv>"), source
    reader = csv.reader(stream)
    header: list[str] | None = None
    devices: list[Device] = []
    seen: dict[int, int] = {}
    for row in reader:
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            for col in header:
                if col not in CSV_COLUMNS:
                    raise FleetError(f"{label} line {line}, column {col!r}: unknown column; "
                                     f"expected some of {', '.join(CSV_COLUMNS)}")
            if len(set(header)) != len(header):
                raise FleetError(f"{label} line {line}: duplicate column names")
            if "device_id" not in header:
                raise FleetError(f"{label} line {line}, column 'device_id': missing required column")
            for kbps, bps in _KBPS_COLUMNS.items():
                if kbps in header and bps in header:
                    raise FleetError(f"{label} line {line}, column {kbps!r}: give {kbps} or "
                                     f"{bps}, not both")
            continue
        if len(row) != len(header):
            raise FleetError(f"{label} line {line}: expected {len(header)} cells, got {len(row)}")
        cells = {col: cell.strip() for col, cell in zip(header, row)}
        raw_id = cells["device_id"]
        try:
            device_id = int(raw_id)
            if device_id < 0:
                raise ValueError
        except ValueError:
            raise FleetError(f"{label} line {line}, column 'device_id': expected an integer "
                             f">= 0, got {raw_id!r}") from None
        if device_id in seen:
            raise FleetError(f"{label} line {line}, column 'device_id': duplicate id {device_id} "
                             f"(first on line {seen[device_id]})")
        seen[device_id] = line
        values: dict[str, Any] = {}
        for col, cell in cells.items():
            if col in ("device_id", "tier") or cell == "":
                continue
            try:
                values[_KBPS_COLUMNS.get(col, col)] = _parse_cell(col, cell)
            except (ValueError, ProfileError) as exc:
                raise FleetError(f"{label} line {line}, column {col!r}: {exc}") from None
        tier = cells.get("tier", "")
        base: DeviceProfile | None = None
        if tier:
            if profiles is not None and tier in profiles:
                base = profiles[tier]
            else:
                try:
                    base = get_profile(resolve_tier(tier))
                except UnknownTierError:
                    base = None  # a custom tier label: all required values must be given
        if base is None:
            for col in _REQUIRED:
                if col not in values:
                    raise FleetError(
                        f"{label} line {line}, column {col!r}: required (no catalog tier "
                        f"{tier!r} to take it from)" if tier else
                        f"{label} line {line}, column {col!r}: required when 'tier' is empty")
            if "compute_flop_per_s" not in values and "relative_speed" not in values:
                raise FleetError(f"{label} line {line}, column 'compute_flop_per_s': required "
                                 f"(or relative_speed)")
            label_tier = tier or "custom"
            try:
                profile = DeviceProfile(tier=label_tier, **values)
            except (ProfileError, TypeError) as exc:
                raise FleetError(f"{label} line {line}: {exc}") from None
        else:
            if "compute_flop_per_s" in values:
                values.setdefault("relative_speed", None)
            elif "relative_speed" in values:
                values.setdefault("compute_flop_per_s", None)
            try:
                profile = replace(base, **values)
            except (ProfileError, TypeError) as exc:
                raise FleetError(f"{label} line {line}: {exc}") from None
        devices.append(Device(device_id=device_id, profile=profile))
    if header is None:
        raise FleetError(f"{label}: empty fleet CSV (no header row)")
    if not devices:
        raise FleetError(f"{label}: fleet CSV has a header but no device rows")
    return sorted(devices, key=lambda d: d.device_id)


def build_fleet(spec: Mapping[str, float] | str | os.PathLike[str], num_devices: int, seed: int,
                profiles: Mapping[str, DeviceProfile] | None = None) -> list[Device]:
    """A fleet from a config value: a tier mixture (mapping) or the path of a fleet CSV.

    A CSV fleet must have exactly the device ids ``0..num_devices-1`` (Flower partition ids).
    """
    if isinstance(spec, Mapping):
        return fleet_from_mixture(spec, num_devices, seed, profiles)
    if isinstance(spec, (str, os.PathLike)):
        devices = fleet_from_csv(spec, profiles)
        ids = [d.device_id for d in devices]
        if ids != list(range(num_devices)):
            missing = sorted(set(range(num_devices)) - set(ids))
            extra = sorted(set(ids) - set(range(num_devices)))
            raise FleetError(
                f"fleet CSV {Path(spec).name} must list device ids 0..{num_devices - 1} exactly "
                f"(num_devices={num_devices}); missing {missing[:5]}, unexpected {extra[:5]}")
        return devices
    raise FleetError(f"fleet must be a mapping tier -> fraction or a CSV path, "
                     f"got {type(spec).__name__}")


__all__ = ["CSV_COLUMNS", "Device", "FleetError", "build_fleet", "fleet_from_csv", "fleet_from_mixture",
           "mixture_counts"]
