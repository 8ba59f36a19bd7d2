"""The simulated clock: how long a transfer or a computation takes on a device.

Transfer model (documented in ``docs/devices.md``)
--------------------------------------------------
A payload of ``B`` bytes is ``8·B`` bits. Without framing it is one burst of airtime
``A = 8·B / bps``. With ``frame_payload_bytes = P`` it is split into ``n = ceil(B / P)`` frames;
frame ``i`` carries ``p_i`` payload bytes plus ``frame_overhead_bytes = H`` of headers, so its
airtime is ``a_i = 8·(p_i + H) / bps`` (or Semtech's LoRa time-on-air of a ``p_i + H`` byte PHY
payload, see :func:`lora_time_on_air_s`), and each frame also costs ``frame_gap_s = g``.

With a duty cycle ``d`` the transmitter must stay silent ``a_i·(1/d − 1)`` after each frame, so

    T = latency + Σ_i (g + a_i) + Σ_{i<n} a_i·(1/d − 1)          (framed)
    T = latency + A / d                                          (unframed: a fluid stream at d·bps)

(the silence after the *last* frame does not delay arrival). Without a duty cycle
``T = latency + Σ_i (g + a_i)``. ``latency_s`` is paid once per transfer.

Compute model: ``t = FLOPs / compute_flop_per_s``, or, for a profile given as a multiple of the
simulation host, ``t = measured_host_s / relative_speed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

from edgeupdate.fleet.profiles import DeviceProfile

Direction = Literal["down", "up"]


class NetworkModelError(ValueError):
    """Bad input to the time model (one-line message)."""


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NetworkModelError(f"{name} must be an integer >= 0, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise NetworkModelError(f"{name} must be a finite number > 0, got {value!r}")


def lora_time_on_air_s(phy_payload_bytes: int, spreading_factor: int,
                       bandwidth_hz: float = 125_000.0, coding_rate: int = 1,
                       preamble_symbols: int = 8, explicit_header: bool = True,
                       crc: bool = True, low_data_rate_optimize: bool | None = None) -> float:
    """Seconds on air of one LoRa packet (Semtech SX1276/7/8/9 datasheet §4.1.1.7, AN1200.13).

    ``T_sym = 2^SF / BW``; preamble ``(n_preamble + 4.25)·T_sym``; payload
    ``8 + max(ceil((8·PL − 4·SF + 28 + 16·CRC − 20·IH) / (4·(SF − 2·DE)))·(CR + 4), 0)`` symbols.
    ``coding_rate`` 1..4 means 4/5..4/8. Low-data-rate optimisation defaults to on when
    ``T_sym >= 16 ms`` (SF11/SF12 at 125 kHz), as LoRaWAN mandates. LoRaWAN downlinks carry no
    payload CRC (``crc=False``); uplinks do.
    """
    _check_count("phy_payload_bytes", phy_payload_bytes)
    if spreading_factor not in range(6, 13):
        raise NetworkModelError(f"spreading_factor must be 6..12, got {spreading_factor!r}")
    if coding_rate not in (1, 2, 3, 4):
        raise NetworkModelError(f"coding_rate must be 1..4 (4/5..4/8), got {coding_rate!r}")
    _check_positive("bandwidth_hz", bandwidth_hz)
    t_sym = (2 ** spreading_factor) / bandwidth_hz
    de = (t_sym >= 0.016) if low_data_rate_optimize is None else low_data_rate_optimize
    numerator = (8 * phy_payload_bytes - 4 * spreading_factor + 28 + 16 * int(crc)
                 - 20 * int(not explicit_header))
    denominator = 4 * (spreading_factor - 2 * int(de))
    payload_symbols = 8 + max(math.ceil(numerator / denominator) * (coding_rate + 4), 0)
    return (preamble_symbols + 4.25) * t_sym + payload_symbols * t_sym


def transfer_time_s(payload_bytes: int, bps: float, latency_s: float = 0.0,
                    duty_cycle: float | None = None, *, frame_payload_bytes: int | None = None,
                    frame_overhead_bytes: int = 0, frame_gap_s: float = 0.0,
                    frame_airtime_s: Callable[[int], float] | None = None) -> float:
    """Seconds until ``payload_bytes`` have arrived over a link (model in the module docstring).

    ``bps`` is bit/s: 1000 bytes at 8000 bit/s take 1 s (+ latency). ``frame_airtime_s``, if
    given, maps the on-air bytes of one frame (payload + overhead) to its airtime and replaces
    ``8·bytes/bps``. A zero-byte transfer costs only the latency.
    """
    _check_count("payload_bytes", payload_bytes)
    _check_positive("bps", bps)
    if isinstance(latency_s, bool) or not math.isfinite(latency_s) or latency_s < 0:
        raise NetworkModelError(f"latency_s must be a finite number >= 0, got {latency_s!r}")
    if duty_cycle is not None:
        _check_positive("duty_cycle", duty_cycle)
        if duty_cycle > 1:
            raise NetworkModelError(f"duty_cycle is a fraction in (0, 1], got {duty_cycle!r}")
    if payload_bytes == 0:
        return float(latency_s)
    stretch = 0.0 if duty_cycle is None else (1.0 / duty_cycle - 1.0)

    def airtime(on_air_bytes: int) -> float:
        if frame_airtime_s is not None:
            return float(frame_airtime_s(on_air_bytes))
        return 8.0 * on_air_bytes / bps

    if frame_payload_bytes is None:
        return latency_s + frame_gap_s + airtime(payload_bytes + frame_overhead_bytes) * (1 + stretch)
    if isinstance(frame_payload_bytes, bool) or not isinstance(frame_payload_bytes, int) \
            or frame_payload_bytes <= 0:
        raise NetworkModelError(
            f"frame_payload_bytes must be a positive integer, got {frame_payload_bytes!r}")
    _check_count("frame_overhead_bytes", frame_overhead_bytes)
    full_frames, last_payload = divmod(payload_bytes, frame_payload_bytes)
    frames = [(full_frames, frame_payload_bytes)]
    if last_payload:
        frames.append((1, last_payload))
    n_frames = full_frames + (1 if last_payload else 0)
    on_air_s = sum(count * airtime(size + frame_overhead_bytes) for count, size in frames)
    last_frame_s = airtime((last_payload or frame_payload_bytes) + frame_overhead_bytes)
    silence_s = (on_air_s - last_frame_s) * stretch
    return latency_s + n_frames * frame_gap_s + on_air_s + silence_s


def link_transfer_time_s(profile: DeviceProfile, payload_bytes: int,
                         direction: Direction = "down") -> float:
    """:func:`transfer_time_s` with the link parameters of ``profile`` in one direction."""
    if direction not in ("down", "up"):
        raise NetworkModelError(f"direction must be 'down' or 'up', got {direction!r}")
    bps = profile.downlink_bps if direction == "down" else profile.uplink_bps
    airtime = None
    if profile.lora_spreading_factor is not None:
        sf, bw = profile.lora_spreading_factor, profile.lora_bandwidth_hz
        crc = direction == "up"  # LoRaWAN: uplinks carry a PHY payload CRC, downlinks do not

        def airtime(on_air_bytes: int) -> float:
            return lora_time_on_air_s(on_air_bytes, sf, bw, crc=crc)

    return transfer_time_s(
        payload_bytes, bps, profile.latency_s, profile.duty_cycle,
        frame_payload_bytes=profile.frame_payload_bytes,
        frame_overhead_bytes=profile.frame_overhead_bytes,
        frame_gap_s=profile.frame_gap_s, frame_airtime_s=airtime)


def compute_time_s(flops: float, profile: DeviceProfile, host_time_s: float | None = None) -> float:
    """Seconds the device needs for ``flops`` FLOPs (or for work that took ``host_time_s`` here).

    A profile with ``compute_flop_per_s`` uses ``flops / compute_flop_per_s``; a profile with
    ``relative_speed`` needs the measured ``host_time_s`` and returns ``host_time_s / speed``.
    """
    if isinstance(flops, bool) or not isinstance(flops, (int, float)) \
            or not math.isfinite(flops) or flops < 0:
        raise NetworkModelError(f"flops must be a finite number >= 0, got {flops!r}")
    if profile.compute_flop_per_s is not None:
        return float(flops) / profile.compute_flop_per_s
    if host_time_s is None:
        if flops == 0:
            return 0.0
        raise NetworkModelError(
            f"{profile.tier}: profile gives relative_speed, so host_time_s is required")
    if not math.isfinite(host_time_s) or host_time_s < 0:
        raise NetworkModelError(f"host_time_s must be a finite number >= 0, got {host_time_s!r}")
    assert profile.relative_speed is not None
    return float(host_time_s) / profile.relative_speed


# --------------------------------------------------------------------------- budgets


def largest_fitting_int(fits: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """The largest ``k`` in ``[lo, hi]`` with ``fits(k)``, for a monotone ``fits`` (True then False).

    ``fits`` is evaluated O(log(hi − lo)) times; ``None`` when even ``lo`` does not fit.
    """
    if isinstance(lo, bool) or isinstance(hi, bool) or not isinstance(lo, int) \
            or not isinstance(hi, int) or hi < lo:
        raise NetworkModelError(f"need integers lo <= hi, got lo={lo!r}, hi={hi!r}")
    if not fits(lo):
        return None
    if fits(hi):
        return hi
    good, bad = lo, hi
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def largest_fitting_ratio(fits: Callable[[float], bool], lo: float = 0.0, hi: float = 1.0,
                          tol: float = 1e-3) -> float | None:
    """The largest ratio in ``[lo, hi]`` (to within ``tol``) with ``fits(ratio)``, by bisection.

    The returned value always fits; ``None`` when even ``lo`` does not.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise NetworkModelError(f"need finite lo <= hi, got lo={lo!r}, hi={hi!r}")
    _check_positive("tol", tol)
    if not fits(lo):
        return None
    if fits(hi):
        return float(hi)
    good, bad = float(lo), float(hi)
    while bad - good > tol:
        mid = 0.5 * (good + bad)
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def max_bytes_in_time(profile: DeviceProfile, time_budget_s: float,
                      direction: Direction = "down", upper_bytes: int = 1 << 40) -> int:
    """The largest payload (bytes) that arrives within ``time_budget_s`` on ``profile``'s link.

    0 when not even an empty transfer (the latency) fits.
    """
    if not math.isfinite(time_budget_s):
        raise NetworkModelError(f"time_budget_s must be finite, got {time_budget_s!r}")
    best = largest_fitting_int(
        lambda b: link_transfer_time_s(profile, b, direction) <= time_budget_s, 0, upper_bytes)
    return 0 if best is None else best


def largest_k_within_deadline(profile: DeviceProfile, deadline_s: float,
                              package_bytes: Callable[[int], int], lo: int, hi: int,
                              other_time_s: float = 0.0) -> int | None:
    """The largest integer knob ``k`` (e.g. KA rank n, kept weights) whose package arrives in time.

    ``package_bytes(k)`` must be non-decreasing in ``k``; the package fits when its download plus
    ``other_time_s`` (apply, inference, upload) is within ``deadline_s``. ``None`` if ``lo`` misses.
    """
    budget_s = deadline_s - other_time_s
    return largest_fitting_int(
        lambda k: link_transfer_time_s(profile, int(package_bytes(k)), "down") <= budget_s, lo, hi)


def largest_ratio_within_deadline(profile: DeviceProfile, deadline_s: float,
                                  package_bytes: Callable[[float], int], lo: float = 0.0,
                                  hi: float = 1.0, other_time_s: float = 0.0,
                                  tol: float = 1e-3) -> float | None:
    """Like :func:`largest_k_within_deadline` for a ratio (e.g. DPU's updating ratio k ∈ (0, 1])."""
    budget_s = deadline_s - other_time_s
    return largest_fitting_ratio(
        lambda r: link_transfer_time_s(profile, int(package_bytes(r)), "down") <= budget_s,
        lo, hi, tol)


def transfer_time_markdown_table(sizes_bytes: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000)
                                 ) -> str:
    """Download time of each catalog tier for a few payload sizes (the table in docs/devices.md)."""
    from edgeupdate.fleet.catalog import CATALOG

    def fmt(seconds: float) -> str:
        for limit, unit in ((86_400.0, "d"), (3_600.0, "h"), (60.0, "min")):
            if seconds >= limit:
                return f"{seconds / limit:.3g} {unit}"
        return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"

    def size(n: int) -> str:
        return f"{n / 1e6:g} MB" if n >= 1_000_000 else f"{n / 1e3:g} kB"

    lines = ["| tier | " + " | ".join(size(n) for n in sizes_bytes) + " |",
             "|---|" + "---|" * len(sizes_bytes)]
    for name, entry in CATALOG.items():
        cells = " | ".join(fmt(link_transfer_time_s(entry.profile, n)) for n in sizes_bytes)
        lines.append(f"| `{name}` | {cells} |")
    return "\n".join(lines)
