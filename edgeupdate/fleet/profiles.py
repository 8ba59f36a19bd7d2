"""What a simulated edge device can do: its link, memory, compute, availability and energy.

A :class:`DeviceProfile` is pure data (frozen, validated on construction); the time model that
uses it lives in :mod:`edgeupdate.fleet.network` and the per-round decisions in
:mod:`edgeupdate.fleet.rounds`. Units are in every field name: ``_bps`` is bit/s on the
link, ``_bytes`` is bytes, ``_s`` is seconds of simulated time, ``_flop_per_s`` is FLOP/s.

Availability says whether a device is reachable in a round. Every random draw derives from
``(seed, "availability", round, device_id)`` (see :mod:`edgeupdate.seeding`), so the server and a
device process agree without talking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

from edgeupdate.seeding import derive_seed

DeviceId = Union[int, str]


class ProfileError(ValueError):
    """A device profile or availability specification is invalid (one-line message)."""


def _finite_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProfileError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ProfileError(f"{name} must be a finite number > 0, got {value!r}")


def _finite_non_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProfileError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ProfileError(f"{name} must be a finite number >= 0, got {value!r}")


def _unit_uniform(seed: int, *parts: object) -> float:
    """A deterministic uniform draw in [0, 1) for ``(seed, *parts)``."""
    return derive_seed(seed, *[str(p) for p in parts]) / float(1 << 63)


# --------------------------------------------------------------------------- availability


@dataclass(frozen=True)
class AlwaysOn:
    """The device is reachable in every round."""

    def online(self, seed: int, round_num: int, device_id: DeviceId,
               start_s: float = 0.0, end_s: float | None = None) -> bool:
        """Always ``True``."""
        return True

    def spec(self) -> str:
        return "always"


@dataclass(frozen=True)
class BernoulliAvailability:
    """Online in each round independently with probability ``p``.

    The draw derives from ``(seed, "availability", round, device_id)``: the same arguments always
    give the same answer, and rounds/devices are independent.
    """

    p: float

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) \
                or not (0.0 <= self.p <= 1.0):
            raise ProfileError(f"availability probability must be in [0, 1], got {self.p!r}")

    def online(self, seed: int, round_num: int, device_id: DeviceId,
               start_s: float = 0.0, end_s: float | None = None) -> bool:
        """Whether the device is online in ``round_num`` (time arguments are ignored)."""
        return _unit_uniform(seed, "availability", round_num, device_id) < self.p

    def spec(self) -> str:
        return f"bernoulli:{self.p:g}"


@dataclass(frozen=True)
class TraceAvailability:
    """Online during the given ``[on_s, off_s)`` intervals of simulated time.

    With ``period_s`` the trace repeats (e.g. a 24 h charging pattern, as in FedScale's
    availability traces); without it the device is offline after the last interval. A device
    counts as online for a round only if one interval covers the whole span
    ``[start_s, end_s]`` it needs (a device that goes offline mid-transfer misses the round).
    """

    on_intervals_s: tuple[tuple[float, float], ...]
    period_s: float | None = None

    def __post_init__(self) -> None:
        intervals = tuple((float(a), float(b)) for a, b in self.on_intervals_s)
        object.__setattr__(self, "on_intervals_s", intervals)
        if not intervals:
            raise ProfileError("availability trace needs at least one on-interval")
        previous_end = -math.inf
        for on_s, off_s in intervals:
            if not (math.isfinite(on_s) and math.isfinite(off_s)) or on_s < 0 or off_s <= on_s:
                raise ProfileError(
                    f"availability interval must satisfy 0 <= on < off, got ({on_s:g}, {off_s:g})")
            if on_s < previous_end:
                raise ProfileError("availability intervals must be sorted and not overlap")
            previous_end = off_s
        if self.period_s is not None:
            _finite_positive("availability period_s", self.period_s)
            if previous_end > self.period_s:
                raise ProfileError(
                    f"availability intervals end at {previous_end:g} s, after period_s="
                    f"{self.period_s:g}")

    def online(self, seed: int, round_num: int, device_id: DeviceId,
               start_s: float = 0.0, end_s: float | None = None) -> bool:
        """Whether one on-interval covers ``[start_s, end_s]`` (``end_s`` defaults to start)."""
        end = start_s if end_s is None else max(end_s, start_s)
        if self.period_s is None:
            spans = list(self.on_intervals_s)
        else:
            first = math.floor(start_s / self.period_s)
            last = math.floor(end / self.period_s) + 1
            spans = [(on_s + k * self.period_s, off_s + k * self.period_s)
                     for k in range(first, last + 1) for on_s, off_s in self.on_intervals_s]
        merged: list[list[float]] = []
        for on_s, off_s in spans:  # intervals touching across a period boundary join up
            if merged and on_s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], off_s)
            else:
                merged.append([on_s, off_s])
        return any(on_s <= start_s and end < off_s for on_s, off_s in merged)

    def spec(self) -> str:
        body = ";".join(f"{a:g}-{b:g}" for a, b in self.on_intervals_s)
        return f"trace:{body}" + (f"@{self.period_s:g}" if self.period_s is not None else "")


Availability = Union[AlwaysOn, BernoulliAvailability, TraceAvailability]
ALWAYS_ON = AlwaysOn()


def parse_availability(text: str) -> Availability:
    """Parse ``always`` | ``bernoulli:P`` | ``trace:ON-OFF;ON-OFF[@PERIOD]`` (seconds).

    >>> parse_availability("trace:0-3600;7200-10800@86400").period_s
    86400.0
    """
    raw = str(text).strip()
    kind, _, rest = raw.partition(":")
    kind = kind.strip().lower()
    if kind in ("always", "always-on", "on"):
        if rest.strip():
            raise ProfileError(f"availability 'always' takes no argument, got {raw!r}")
        return ALWAYS_ON
    if kind == "bernoulli":
        try:
            return BernoulliAvailability(float(rest))
        except ValueError as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"availability 'bernoulli:P' needs a number P, got {raw!r}") from None
    if kind == "trace":
        body, _, period = rest.partition("@")
        try:
            intervals = tuple(
                (float(a), float(b))
                for a, b in (part.split("-", 1) for part in body.split(";") if part.strip()))
            period_s = float(period) if period.strip() else None
        except ValueError:
            raise ProfileError(
                f"availability trace must look like 'trace:0-3600;7200-9000@86400', got {raw!r}"
            ) from None
        return TraceAvailability(intervals, period_s)
    raise ProfileError(
        f"unknown availability {raw!r}: expected 'always', 'bernoulli:P' or 'trace:ON-OFF;...'")


# --------------------------------------------------------------------------- the profile


@dataclass(frozen=True)
class DeviceProfile:
    """One device class: link, memory, compute, availability and (optional) energy.

    Link: ``downlink_bps``/``uplink_bps`` are the bit rates while transmitting; ``latency_s`` is
    the one-way latency paid once per transfer; ``duty_cycle`` (``None`` or a fraction in (0, 1])
    forces the radio to stay silent ``t·(1/d − 1)`` seconds after sending for ``t`` seconds (LoRa
    EU868 sub-band g1: 1 %). Packets: ``frame_payload_bytes`` (max useful payload per frame, e.g.
    51 B at LoRaWAN DR0), ``frame_overhead_bytes`` (headers sent with every frame) and
    ``frame_gap_s`` (fixed per-frame cost such as a satellite session set-up). With
    ``lora_spreading_factor`` the frame airtime follows Semtech's LoRa time-on-air formula
    instead of ``bits / bps`` (see :func:`edgeupdate.fleet.network.lora_time_on_air_s`).

    Memory: ``memory_bytes`` is what is available for the deployed model *and* the apply step
    (old weights + package + working buffers). Compute: exactly one of ``compute_flop_per_s``
    (FLOP/s the device sustains) or ``relative_speed`` (multiple of the simulation host's speed;
    the caller then supplies measured host seconds).
    """

    tier: str
    downlink_bps: float
    uplink_bps: float
    memory_bytes: int
    latency_s: float = 0.0
    duty_cycle: float | None = None
    compute_flop_per_s: float | None = None
    relative_speed: float | None = None
    availability: Availability = field(default=ALWAYS_ON)
    frame_payload_bytes: int | None = None
    frame_overhead_bytes: int = 0
    frame_gap_s: float = 0.0
    lora_spreading_factor: int | None = None
    lora_bandwidth_hz: float = 125_000.0
    energy_j_per_byte_down: float | None = None
    energy_j_per_byte_up: float | None = None
    energy_j_per_flop: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tier, str) or not self.tier.strip():
            raise ProfileError(f"tier must be a non-empty string, got {self.tier!r}")
        _finite_positive(f"{self.tier}: downlink_bps", self.downlink_bps)
        _finite_positive(f"{self.tier}: uplink_bps", self.uplink_bps)
        _finite_non_negative(f"{self.tier}: latency_s", self.latency_s)
        if isinstance(self.memory_bytes, bool) or not isinstance(self.memory_bytes, int) \
                or self.memory_bytes <= 0:
            raise ProfileError(
                f"{self.tier}: memory_bytes must be a positive integer, got {self.memory_bytes!r}")
        if self.duty_cycle is not None:
            _finite_positive(f"{self.tier}: duty_cycle", self.duty_cycle)
            if self.duty_cycle > 1.0:
                raise ProfileError(
                    f"{self.tier}: duty_cycle is a fraction in (0, 1], got {self.duty_cycle!r}")
        if (self.compute_flop_per_s is None) == (self.relative_speed is None):
            raise ProfileError(
                f"{self.tier}: give exactly one of compute_flop_per_s or relative_speed")
        if self.compute_flop_per_s is not None:
            _finite_positive(f"{self.tier}: compute_flop_per_s", self.compute_flop_per_s)
        if self.relative_speed is not None:
            _finite_positive(f"{self.tier}: relative_speed", self.relative_speed)
        if not isinstance(self.availability, (AlwaysOn, BernoulliAvailability, TraceAvailability)):
            raise ProfileError(
                f"{self.tier}: availability must be AlwaysOn, BernoulliAvailability or "
                f"TraceAvailability, got {type(self.availability).__name__}")
        if self.frame_payload_bytes is not None and (
                isinstance(self.frame_payload_bytes, bool)
                or not isinstance(self.frame_payload_bytes, int) or self.frame_payload_bytes <= 0):
            raise ProfileError(f"{self.tier}: frame_payload_bytes must be a positive integer, "
                               f"got {self.frame_payload_bytes!r}")
        if isinstance(self.frame_overhead_bytes, bool) \
                or not isinstance(self.frame_overhead_bytes, int) or self.frame_overhead_bytes < 0:
            raise ProfileError(f"{self.tier}: frame_overhead_bytes must be an integer >= 0, "
                               f"got {self.frame_overhead_bytes!r}")
        _finite_non_negative(f"{self.tier}: frame_gap_s", self.frame_gap_s)
        if self.lora_spreading_factor is not None:
            if self.lora_spreading_factor not in range(6, 13):
                raise ProfileError(f"{self.tier}: lora_spreading_factor must be 6..12, "
                                   f"got {self.lora_spreading_factor!r}")
            if self.frame_payload_bytes is None:
                raise ProfileError(f"{self.tier}: a LoRa profile needs frame_payload_bytes")
        _finite_positive(f"{self.tier}: lora_bandwidth_hz", self.lora_bandwidth_hz)
        for name in ("energy_j_per_byte_down", "energy_j_per_byte_up", "energy_j_per_flop"):
            value = getattr(self, name)
            if value is not None:
                _finite_non_negative(f"{self.tier}: {name}", value)

    def is_online(self, seed: int, round_num: int, device_id: DeviceId,
                  start_s: float = 0.0, end_s: float | None = None) -> bool:
        """Whether this device is reachable for ``[start_s, end_s]`` of ``round_num``."""
        return self.availability.online(seed, round_num, device_id, start_s, end_s)
