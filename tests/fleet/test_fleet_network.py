"""The simulated clock: transfer arithmetic, duty cycle, LoRa airtime, compute time, budgets."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeupdate.fleet.catalog import get_profile, tier_names
from edgeupdate.fleet.profiles import DeviceProfile
from edgeupdate.fleet.network import (
    NetworkModelError,
    compute_time_s,
    largest_fitting_int,
    largest_fitting_ratio,
    largest_k_within_deadline,
    largest_ratio_within_deadline,
    link_transfer_time_s,
    lora_time_on_air_s,
    max_bytes_in_time,
    transfer_time_s,
)


def _profile(**overrides):
    values = dict(tier="t", downlink_bps=8_000.0, uplink_bps=4_000.0, memory_bytes=1 << 20,
                  compute_flop_per_s=1e6)
    values.update(overrides)
    return DeviceProfile(**values)


def test_transfer_counts_bits_not_bytes_and_adds_latency_once():
    # 1000 bytes = 8000 bits over 8000 bit/s is one second, plus 0.25 s latency
    assert transfer_time_s(1000, 8000.0, 0.25) == pytest.approx(1.25)
    assert transfer_time_s(2000, 8000.0, 0.25) == pytest.approx(2.25)
    assert transfer_time_s(0, 8000.0, 0.25) == pytest.approx(0.25)


def test_unframed_duty_cycle_stretches_by_one_over_d():
    assert transfer_time_s(1000, 8000.0, 0.0, 0.01) == pytest.approx(100.0)
    assert transfer_time_s(1000, 8000.0, 0.0, 1.0) == pytest.approx(1.0)


def test_framed_duty_cycle_waits_between_frames_but_not_after_the_last():
    # 3 frames of 100 B (+0 overhead) at 800 bit/s: 1 s airtime each; d = 0.1 → 9 s off after
    # each of the first two frames
    t = transfer_time_s(300, 800.0, 2.0, 0.1, frame_payload_bytes=100)
    assert t == pytest.approx(2.0 + 3 * 1.0 + 2 * 9.0)


def test_frames_add_overhead_and_gap_per_frame_including_a_short_last_frame():
    # 250 B in 100 B frames → 100, 100, 50 (+10 B overhead each); 2 s gap per frame
    t = transfer_time_s(250, 800.0, 0.0, None, frame_payload_bytes=100,
                        frame_overhead_bytes=10, frame_gap_s=2.0)
    assert t == pytest.approx((110 + 110 + 60) * 8 / 800 + 3 * 2.0)


def test_lora_time_on_air_matches_semtech_formula_reference_values():
    # SF7/125 kHz, 23-byte PHY payload (10 B app payload + 13 B LoRaWAN overhead), CR 4/5, CRC:
    # 61.696 ms (the value in Semtech's calculator / TTN airtime tables)
    assert lora_time_on_air_s(23, 7) == pytest.approx(0.061696, abs=1e-6)
    # SF12 enables low-data-rate optimisation: 64 B → 2.793 s
    assert lora_time_on_air_s(64, 12) == pytest.approx(2.793472, abs=1e-6)
    assert lora_time_on_air_s(23, 7, crc=False) < lora_time_on_air_s(23, 7)


def test_lora_airtime_exceeds_the_nominal_data_rate_by_the_preamble_but_less_than_40_percent():
    for tier, bps in (("lora-sf12", 250.0), ("lora-sf7", 5470.0)):
        profile = get_profile(tier)
        payload = 10 * profile.frame_payload_bytes
        nominal = transfer_time_s(payload, bps, profile.latency_s, profile.duty_cycle,
                                  frame_payload_bytes=profile.frame_payload_bytes,
                                  frame_overhead_bytes=profile.frame_overhead_bytes)
        assert nominal < link_transfer_time_s(profile, payload) < 1.4 * nominal


def test_lora_sf12_is_slower_than_sf7_by_more_than_the_bit_rate_ratio_times_frames():
    sf12, sf7 = get_profile("lora-sf12"), get_profile("lora-sf7")
    assert link_transfer_time_s(sf12, 10_000) > 15 * link_transfer_time_s(sf7, 10_000)


def test_link_time_uses_direction_specific_rate():
    p = _profile()
    assert link_transfer_time_s(p, 1000, "down") == pytest.approx(1.0)
    assert link_transfer_time_s(p, 1000, "up") == pytest.approx(2.0)
    with pytest.raises(NetworkModelError, match="direction"):
        link_transfer_time_s(p, 1000, "sideways")


@pytest.mark.parametrize("args, match", [
    ((-1, 8000.0), "payload_bytes"),
    ((10, 0.0), "bps"),
    ((10, 8000.0, -1.0), "latency_s"),
    ((10, 8000.0, 0.0, 1.5), "duty_cycle"),
])
def test_transfer_rejects_bad_input(args, match):
    with pytest.raises(NetworkModelError, match=match):
        transfer_time_s(*args)


def test_compute_time_from_flops_or_relative_speed():
    assert compute_time_s(5e6, _profile()) == pytest.approx(5.0)
    slow = _profile(compute_flop_per_s=None, relative_speed=0.25)
    assert compute_time_s(123.0, slow, host_time_s=2.0) == pytest.approx(8.0)
    with pytest.raises(NetworkModelError, match="host_time_s"):
        compute_time_s(1e6, slow)


def test_largest_fitting_int_finds_the_boundary_with_few_calls():
    calls = []

    def fits(k):
        calls.append(k)
        return k <= 737

    assert largest_fitting_int(fits, 0, 10_000) == 737
    assert len(calls) <= 2 + math.ceil(math.log2(10_000)) + 1
    assert largest_fitting_int(lambda k: k <= 10, 0, 5) == 5
    assert largest_fitting_int(lambda k: False, 3, 9) is None


def test_largest_fitting_ratio_result_always_fits():
    r = largest_fitting_ratio(lambda x: x <= 0.3137, 0.0, 1.0, tol=1e-4)
    assert r <= 0.3137 and r == pytest.approx(0.3137, abs=1e-4)
    assert largest_fitting_ratio(lambda x: x < 0.0, 0.0, 1.0) is None


def test_budget_search_fits_package_to_link_and_deadline():
    # 8000 bit/s down, no latency: 10 s leave room for 10_000 bytes
    p = _profile()
    assert max_bytes_in_time(p, 10.0) == 10_000
    # package of k kept weights at 5 B each + 100 B header; 2 s reserved for apply/eval
    k = largest_k_within_deadline(p, 10.0, lambda k: 100 + 5 * k, 1, 1_000_000, other_time_s=2.0)
    assert k == (8_000 - 100) // 5
    assert link_transfer_time_s(p, 100 + 5 * k) <= 8.0 < link_transfer_time_s(p, 100 + 5 * (k + 1))
    ratio = largest_ratio_within_deadline(p, 10.0, lambda r: int(50_000 * r), other_time_s=0.0)
    assert ratio == pytest.approx(0.2, abs=1e-3) and int(50_000 * ratio) <= 10_000
    assert largest_k_within_deadline(p, 1.0, lambda k: 10_000 + k, 0, 10) is None


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(tier=st.sampled_from(tier_names()), size=st.integers(0, 20_000),
       extra=st.integers(1, 600), direction=st.sampled_from(["down", "up"]))
def test_link_time_is_monotone_in_bytes_for_every_tier(tier, size, extra, direction):
    # the budget searches rely on this: more bytes never arrive sooner
    p = get_profile(tier)
    assert link_transfer_time_s(p, size, direction) <= link_transfer_time_s(p, size + extra, direction)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 5_000), frame=st.one_of(st.none(), st.integers(1, 300)),
       duty=st.floats(0.001, 1.0))
def test_duty_cycle_never_speeds_a_transfer_up(size, frame, duty):
    free = transfer_time_s(size, 1000.0, 0.1, None, frame_payload_bytes=frame)
    limited = transfer_time_s(size, 1000.0, 0.1, duty, frame_payload_bytes=frame)
    assert limited >= free - 1e-12


@settings(max_examples=40, deadline=None)
@given(threshold=st.integers(-5, 120), lo=st.integers(0, 10), span=st.integers(0, 100))
def test_largest_fitting_int_agrees_with_brute_force(threshold, lo, span):
    hi = lo + span
    brute = [k for k in range(lo, hi + 1) if k <= threshold]
    assert largest_fitting_int(lambda k: k <= threshold, lo, hi) == (max(brute) if brute else None)
