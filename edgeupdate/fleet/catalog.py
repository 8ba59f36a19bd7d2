"""A catalog of device tiers built from published figures (table and sources: ``docs/devices.md``).

Each :class:`CatalogEntry` carries its :class:`~edgeupdate.fleet.profiles.DeviceProfile`, the
source of every figure, and which values are assumptions. Values are per device; where a
standard gives a peak and deployments see less, the entry says which one it uses.

Sources (short keys used below):

* ``[RP002]`` LoRa Alliance, *RP002-1.0.3 LoRaWAN Regional Parameters* (2021), EU863-870:
  DR0..DR5 = SF12..SF7 at 125 kHz, indicative bit rates 250/440/980/1760/3125/5470 bit/s,
  max application payload N = 51/51/51/115/222/222 bytes.
* ``[L2]`` LoRa Alliance, *LoRaWAN L2 1.0.4 Specification* (2020): frame overhead MHDR 1 + FHDR 7
  (no FOpts) + FPort 1 + MIC 4 = 13 bytes; RECEIVE_DELAY1 = 1 s.
* ``[ETSI]`` ETSI EN 300 220-2 V3.2.1 (2018), sub-band g1 (868.0-868.6 MHz): 1 % duty cycle.
* ``[SX]`` Semtech SX1276/77/78/79 datasheet rev. 7 (2020) §4.1.1.7: LoRa time on air.
* ``[STM32WL]`` ST, STM32WLE5xx datasheet DS13105: Cortex-M4 up to 48 MHz, 256 KB flash, 64 KB SRAM.
* ``[NRF9160]`` Nordic, nRF9160 product specification v2.1: Cortex-M33 64 MHz, 1 MB flash,
  256 KB RAM, LTE-M/NB-IoT modem.
* ``[NRF52840]`` Nordic, nRF52840 product specification v1.7: Cortex-M4F 64 MHz, 1 MB flash, 256 KB RAM.
* ``[NBIOT]`` Y.-P. E. Wang et al., "A Primer on 3GPP Narrowband Internet of Things", IEEE
  Communications Magazine 55(3), 2017: Cat-NB1 ≈ 26 kbit/s DL, ≈ 62.5 kbit/s UL (multi-tone).
* ``[GSMA]`` GSMA, *LTE-M Deployment Guide to Basic Feature Set Requirements* (2019) and *NB-IoT
  Deployment Guide* (2019): LTE-M latency 10-15 ms; NB-IoT latency 1.6-10 s (3GPP TR 45.820 target).
* ``[TS36306]`` 3GPP TS 36.306 (Rel-13) UE radio access capabilities: Cat-M1 1000-bit transport
  block per 1 ms TTI, i.e. 1 Mbit/s peak DL and UL (full-duplex FDD).
* ``[SBD]`` Iridium 9603 SBD transceiver developer's guide: MT message <= 270 bytes, MO <= 340
  bytes; Iridium channel rate 2.4 kbit/s; NAL Research SBD note: delivery latency ≈ 5 s (short)
  to ≈ 20 s (maximum-length message).
* ``[FEDSCALE]`` F. Lai et al., "FedScale: Benchmarking Model and System Performance of Federated
  Learning at Scale", ICML 2022: per-client network throughput from MobiPerf measurements
  (median ≈ 6 Mbit/s; one rate used for both directions), availability from user traces.
* ``[RPI4]`` Raspberry Pi 4 Model B product brief (2019): Cortex-A72 quad core 1.5 GHz, 1/2/4/8 GB
  LPDDR4, Gigabit Ethernet. ``[DPU]`` L. Qu, thesis Table 3.2: dense MobileNetV1 on a Raspberry
  Pi 4 (TFLite + XNNPACK, 4 threads) in 83 ms; ``[MOBILENET]`` A. Howard et al., "MobileNets",
  2017: 569 M multiply-adds = 1.138 GFLOP, i.e. ≈ 13.7 GFLOP/s sustained.
* ``[JETSON]`` NVIDIA Jetson Nano module datasheet DA-09366-001: 128-core Maxwell GPU, 472 GFLOPS
  FP16 (236 GFLOPS FP32), 4 GB LPDDR4, Gigabit Ethernet.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from edgeupdate.fleet.profiles import ALWAYS_ON, BernoulliAvailability, DeviceProfile

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class UnknownTierError(KeyError):
    """A tier name that is not in the catalog."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class CatalogEntry:
    """A tier: its profile, the sources of its figures and what is assumed rather than cited."""

    profile: DeviceProfile
    source: str
    assumptions: str


# LoRaWAN EU868 data rates [RP002]: (spreading factor, indicative bit/s, max app payload bytes)
LORA_EU868_DATA_RATES = {
    0: (12, 250.0, 51),
    1: (11, 440.0, 51),
    2: (10, 980.0, 51),
    3: (9, 1760.0, 115),
    4: (8, 3125.0, 222),
    5: (7, 5470.0, 222),
}
LORAWAN_FRAME_OVERHEAD_BYTES = 13  # MHDR 1 + FHDR 7 + FPort 1 + MIC 4 [L2]
EU868_G1_DUTY_CYCLE = 0.01  # [ETSI]


def _lora_entry(data_rate: int) -> CatalogEntry:
    sf, bps, payload = LORA_EU868_DATA_RATES[data_rate]
    profile = DeviceProfile(
        tier=f"lora-sf{sf}", downlink_bps=bps, uplink_bps=bps, latency_s=1.0,
        duty_cycle=EU868_G1_DUTY_CYCLE, memory_bytes=256 * KIB, compute_flop_per_s=48e6,
        availability=ALWAYS_ON, frame_payload_bytes=payload,
        frame_overhead_bytes=LORAWAN_FRAME_OVERHEAD_BYTES, lora_spreading_factor=sf)
    return CatalogEntry(
        profile,
        source=(f"[RP002] EU868 DR{data_rate}: SF{sf}/125 kHz, {bps:g} bit/s, {payload} B payload; "
                f"[L2] 13 B overhead, 1 s RX delay; [ETSI] 1 % duty cycle; [SX] airtime; "
                f"[STM32WL] 256 KB flash, 48 MHz"),
        assumptions=("class-C style downlink on the uplink's sub-band (1 %; the RX2 sub-band "
                     "would allow 10 %); whole flash usable for model + apply; 1 op per cycle; "
                     "always on"))


def _build() -> dict[str, CatalogEntry]:
    entries = {e.profile.tier: e for e in (_lora_entry(dr) for dr in range(5, -1, -1))}
    entries["nbiot"] = CatalogEntry(
        DeviceProfile(tier="nbiot", downlink_bps=26_000.0, uplink_bps=62_500.0, latency_s=10.0,
                      memory_bytes=1 * MIB, compute_flop_per_s=64e6),
        source="[NBIOT] Cat-NB1 26 kbit/s DL, 62.5 kbit/s UL; [GSMA] latency <= 10 s; "
               "[NRF9160] 1 MB flash, Cortex-M33 64 MHz",
        assumptions="worst-case 10 s latency of the 1.6-10 s range; 1 op per cycle; always on")
    entries["ltem"] = CatalogEntry(
        DeviceProfile(tier="ltem", downlink_bps=1_000_000.0, uplink_bps=1_000_000.0,
                      latency_s=0.015, memory_bytes=1 * MIB, compute_flop_per_s=64e6),
        source="[TS36306] Cat-M1 1 Mbit/s peak; [GSMA] latency 10-15 ms; "
               "[NRF9160] 1 MB flash, Cortex-M33 64 MHz",
        assumptions="full-duplex peak rate (half-duplex modems reach ~300 kbit/s DL); "
                    "1 op per cycle; always on")
    entries["satellite-sbd"] = CatalogEntry(
        DeviceProfile(tier="satellite-sbd", downlink_bps=2_400.0, uplink_bps=2_400.0,
                      latency_s=5.0, frame_payload_bytes=270, frame_gap_s=15.0,
                      memory_bytes=1 * MIB, compute_flop_per_s=64e6),
        source="[SBD] 270 B per MT message, 2.4 kbit/s channel, 5-20 s per message; "
               "[NRF52840] host MCU 1 MB flash, 64 MHz",
        assumptions="one message per SBD session, sessions back to back (15 s each beyond the "
                    "5 s base latency); 270 B frames also for uplink (MO allows 340 B); host "
                    "MCU class; 1 op per cycle; always on")
    entries["phone-wifi"] = CatalogEntry(
        DeviceProfile(tier="phone-wifi", downlink_bps=6_000_000.0, uplink_bps=6_000_000.0,
                      latency_s=0.05, memory_bytes=512 * MIB, compute_flop_per_s=10e9,
                      availability=BernoulliAvailability(0.8)),
        source="[FEDSCALE] MobiPerf-derived median ≈ 6 Mbit/s, one rate for both directions",
        assumptions="50 ms latency; 512 MiB for the app; 10 GFLOP/s CPU; online in 80 % of "
                    "rounds (idle, charging, on WiFi)")
    entries["rpi-gateway"] = CatalogEntry(
        DeviceProfile(tier="rpi-gateway", downlink_bps=1e9, uplink_bps=1e9, latency_s=0.02,
                      memory_bytes=4 * GIB, compute_flop_per_s=13.7e9),
        source="[RPI4] 4 GB, Gigabit Ethernet; [DPU]+[MOBILENET] 13.7 GFLOP/s measured",
        assumptions="link at the Ethernet line rate (an upper bound); 20 ms latency; whole RAM "
                    "usable; always on")
    entries["jetson-box"] = CatalogEntry(
        DeviceProfile(tier="jetson-box", downlink_bps=1e9, uplink_bps=1e9, latency_s=0.02,
                      memory_bytes=4 * GIB, compute_flop_per_s=236e9),
        source="[JETSON] Nano: 236 GFLOPS FP32 peak, 4 GB, Gigabit Ethernet",
        assumptions="peak FP32 rate (sustained is lower); link at the Ethernet line rate; 20 ms "
                    "latency; RAM shared by CPU and GPU all usable; always on")
    return entries


CATALOG: MappingProxyType[str, CatalogEntry] = MappingProxyType(_build())
"""Tier name → entry (read-only)."""

ALIASES: MappingProxyType[str, str] = MappingProxyType({
    "lora-sensor": "lora-sf12",
    "lora": "lora-sf12",
    "nb-iot": "nbiot",
    "lte-m": "ltem",
    "satellite": "satellite-sbd",
    "phone": "phone-wifi",
    "raspberry-pi": "rpi-gateway",
    "jetson": "jetson-box",
})
"""Convenience names accepted by :func:`get_profile` (e.g. the issue's ``lora-sensor``)."""


def tier_names() -> list[str]:
    """The catalog's tier names, in catalog order."""
    return list(CATALOG)


def resolve_tier(name: str) -> str:
    """The canonical tier name for ``name`` (an alias or a tier; case-insensitive)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in CATALOG:
        raise UnknownTierError(
            f"unknown device tier {name!r}; known tiers: {', '.join(CATALOG)} "
            f"(aliases: {', '.join(ALIASES)})")
    return key


def get_entry(name: str) -> CatalogEntry:
    """The catalog entry of a tier (or alias)."""
    return CATALOG[resolve_tier(name)]


def get_profile(name: str) -> DeviceProfile:
    """The :class:`DeviceProfile` of a tier (or alias)."""
    return get_entry(name).profile


# --------------------------------------------------------------------------- documentation


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _binary_bytes(value: int) -> str:
    for factor, unit in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if value >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value} B"


def _seconds(value: float) -> str:
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"


def catalog_markdown_table() -> str:
    """The catalog as the markdown table in ``docs/devices.md`` (a test keeps them equal)."""
    lines = ["| tier | downlink | uplink | latency | duty cycle | frame | memory | compute "
             "| availability | source | assumptions |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in CATALOG.items():
        p = entry.profile
        frame = "—"
        if p.frame_payload_bytes is not None:
            frame = f"{p.frame_payload_bytes} B + {p.frame_overhead_bytes} B"
            if p.frame_gap_s:
                frame += f", +{_seconds(p.frame_gap_s)}"
        compute = (_si(p.compute_flop_per_s, "FLOP/s") if p.compute_flop_per_s is not None
                   else f"×{p.relative_speed:g} host")
        lines.append(
            f"| `{name}` | {_si(p.downlink_bps, 'bit/s')} | {_si(p.uplink_bps, 'bit/s')} "
            f"| {_seconds(p.latency_s)} | {'—' if p.duty_cycle is None else f'{p.duty_cycle:.0%}'} "
            f"| {frame} | {_binary_bytes(p.memory_bytes)} | {compute} "
            f"| `{p.availability.spec()}` | {entry.source} | {entry.assumptions} |")
    return "\n".join(lines)
