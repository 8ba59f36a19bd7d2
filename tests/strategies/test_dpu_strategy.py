"""DPU-family strategies: the packages they release, as a device receives and applies them.

No Flower simulation here: the strategy objects are driven directly over several rounds on the
embedded digits data (what ``aggregate_train`` does), and every package goes through
``encode`` → ``decode`` → ``apply`` on a separate copy of the device's weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from edgeupdate.runtime import build_runtime
from edgeupdate.seeding import derive_seed
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.algorithms.partial_cost import analytic_bytes
from edgeupdate.strategies.versions import ModelVersion
from edgeupdate.strategies.resolve import strategy_class, validate_strategy
from edgeupdate.training import TensorData
from edgeupdate.updates import UpdatePackage

REPO = Path(__file__).resolve().parents[2]
SMALL = ["rounds=4", "num_devices=3", "model.hidden=[24]", "training.epochs=2", "stream.initial_samples=90",
         "stream.samples_per_round=60"]


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: extra intra-op threads only add synchronisation (slow on a busy box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _strategy(tiny_config, name: str, params: str, *extra: str):
    cfg = tiny_config(*SMALL, f"strategy.name='{name}'", f"strategy.params={params}", *extra)
    params = validate_strategy(name, cfg.strategy.params)
    return strategy_class(name)(build_runtime(cfg), params, MetricsCollector(), {})


def _round_data(strategy, round_: int) -> TensorData:
    return strategy.runtime.train_subset(strategy.runtime.layout.server_pool(round_))


def _run_rounds(strategy, rounds: int):
    """Drive retrain/release as ``aggregate_train`` does.

    Yields (round, package, server target, device weights before, device weights after).
    """
    device = {n: t.clone() for n, t in strategy.latest.weights.items()}
    for round_ in range(1, rounds + 1):
        before = device
        target = strategy.retrain(round_, strategy.latest, _round_data(strategy, round_))
        if target is None:
            yield round_, None, None, before, device
            continue
        package = strategy.release_package(round_, strategy.latest, target)
        wire = package.encode(strategy.key)
        device = UpdatePackage.decode(wire, strategy.key).apply(device)   # the device side
        strategy.latest = ModelVersion(round_, package.apply(strategy.latest.weights), package.header.target_hash)
        yield round_, package, target, before, device


@pytest.mark.parametrize("name, params", [
    ("dpu", "{k=0.05}"),
    ("dpu", "{k=0.05, reinitialize=true}"),   # seeded re-initialisation packages at rounds 1 and 3
    ("gcpu", "{k=0.1, mask_biases=true}"),
    ("rpu", "{k=0.05}"),
    ("pruning", "{k=0.05}"),
])
def test_device_ends_bit_identical_to_the_server_model_every_round(tiny_config, name, params):
    strategy = _strategy(tiny_config, name, params)

    pushed = 0
    for round_, package, target, _, device in _run_rounds(strategy, 4):
        assert package is not None
        pushed += 1
        # fp32 values: the device's weights are the server's retrained weights, bit for bit
        assert set(device) == set(target)
        assert all(torch.equal(device[n], target[n]) for n in target), f"round {round_}"
        assert all(torch.equal(device[n], strategy.latest.weights[n]) for n in target)
    assert pushed == 4


def test_reinitialisation_ships_a_seed_not_the_model(tiny_config):
    strategy = _strategy(tiny_config, "dpu", "{k=0.05, reinitialize=true}")

    kinds = {}
    for round_, package, _, _, _ in _run_rounds(strategy, 4):
        kinds[round_] = package.header.initializer is not None
        # a re-initialisation package is as small as a sparse one: no dense copy of the weights
        dense_values = sum(t.count for t in package.header.tensors if t.kind == "dense")
        assert dense_values == strategy._last_result.info.dense_count

    # |D¹| = 90, |D²| = 150, |D³| = 210 > 2·90, |D⁴| = 270 ≤ 2·210
    assert kinds == {1: True, 2: False, 3: True, 4: False}


@pytest.mark.parametrize("reinit_init", ["factory", "fresh"])
def test_reinitialisation_reloads_the_factory_w0_unless_asked_for_a_fresh_draw(tiny_config, reinit_init):
    """Thesis §5.4.2 and the reference code: a re-init restarts from w⁰, the image every device
    shipped with; the device regenerates exactly w⁰ from the package's seed. "fresh" draws anew."""
    from edgeupdate.updates.seeded import resolve_initializer

    strategy = _strategy(tiny_config, "dpu", f"{{k=0.05, reinitialize=true, reinit_init='{reinit_init}'}}")
    w0 = strategy.runtime.initial_state
    rounds = {r: (package, target) for r, package, target, _, _ in _run_rounds(strategy, 3)}

    package3, target3 = rounds[3]                    # |D³| = 210 > 2·90: re-initialise
    assert strategy._last_result.reference == "init"
    header = package3.header
    regenerated = resolve_initializer(header.initializer)(header.initializer_seed)
    part = 0 if reinit_init == "factory" else "reinit-3"
    assert header.initializer_seed == derive_seed(strategy.cfg.seed, "init", part)
    assert all(torch.equal(regenerated[n], w0[n]) for n in w0) == (reinit_init == "factory")
    # every weight the mask leaves out is rewound to the restart point: w⁰ itself for "factory"
    for name, mask in strategy._last_result.masks.items():
        assert torch.equal(target3[name][~mask], regenerated[name][~mask])
        assert torch.equal(target3[name][~mask], w0[name][~mask]) == (reinit_init == "factory")


def test_partial_package_changes_exactly_k_weights_plus_dense_biases(tiny_config):
    strategy = _strategy(tiny_config, "dpu", "{k=0.05}")

    for _, package, target, _, _ in _run_rounds(strategy, 2):
        info = strategy._last_result.info
        sparse = [t for t in package.header.tensors if t.kind == "sparse"]
        dense = [t for t in package.header.tensors if t.kind == "dense"]
        assert sum(t.count for t in sparse) == info.changed_count == int(0.05 * info.maskable_count)
        assert {t.name for t in dense} == set(info.dense_names) == {n for n in target if n.endswith("bias")}


@pytest.mark.parametrize("precision, bits", [("fp32", 32), ("int8", 8)])
def test_the_thesis_estimate_is_recorded_next_to_the_measured_release(tiny_config, precision, bits):
    strategy = _strategy(tiny_config, "dpu", "{k=0.05}", f"package.precision='{precision}'")

    for _, package, _, _, _ in _run_rounds(strategy, 2):
        info = strategy._last_result.info
        estimate = strategy.log.extra["analytic_release_bytes"]
        assert estimate == pytest.approx(analytic_bytes(0.05, info.maskable_count, bits) + bits / 8 * info.dense_count)
        # the estimate leaves out the header (and int8 scales) and codes positions at the entropy bound
        assert estimate < len(package.encode())


def test_entropy_coded_values_reach_the_release_and_shrink_it(tiny_config):
    sizes = {}
    for coding in ("raw", "entropy"):
        strategy = _strategy(tiny_config, "dpu", "{k=0.2}", "package.precision='int8'",
                             f"package.value_coding='{coding}'", "model.hidden=[64]")
        for _, package, _, _, device in _run_rounds(strategy, 1):
            sizes[coding] = len(package.encode())
            assert all(torch.equal(device[n], strategy.latest.weights[n]) for n in device)
    assert sizes["entropy"] < sizes["raw"]


def test_int8_values_still_reproduce_the_servers_deployed_model(tiny_config):
    strategy = _strategy(tiny_config, "dpu", "{k=0.05}", "package.precision='int8'")

    for _, package, target, before, device in _run_rounds(strategy, 3):
        # lossy values: the device holds exactly what the server deployed (the hash-checked state) ...
        assert all(torch.equal(device[n], strategy.latest.weights[n]) for n in device)
        # ... with masked-out weights untouched and the sent ones within one int8 step of the target
        for name, mask in strategy._last_result.masks.items():
            assert torch.equal(device[name][~mask], before[name][~mask])
            step = (target[name][mask] - before[name][mask]).abs().max() / 127
            assert (device[name][mask] - target[name][mask]).abs().max() <= step


def test_skip_if_no_gain_releases_nothing_when_validation_does_not_improve(tiny_config):
    # lr so small that fine-tuning cannot beat the deployed model on validation after round 1
    strategy = _strategy(tiny_config, "dpu", "{k=0.01, skip_if_no_gain=true}", "training.lr=1e-7")

    results = list(_run_rounds(strategy, 3))

    assert results[0][1] is not None                       # round 1: nothing deployed to compare with
    assert [r[1] for r in results[1:]] == [None, None]     # no gain → no package, no bytes
    assert strategy.latest.number == 1


def test_a_restarted_line_that_loses_keeps_training_and_ships_as_one_seeded_package(tiny_config):
    """Re-initialisation + skipping (thesis §5.4.2, §5.5.3): a re-initialised line that does not yet
    beat the deployed model is not pushed, but the next round trains on from it (it used to be
    thrown away, wasting the round); once it wins, one package — the init seed plus every value
    the line changed since — brings devices that still hold the old model onto it, bit for bit."""
    strategy = _strategy(tiny_config, "dpu", "{k=0.05, reinitialize=true, skip_if_no_gain=true}")
    rounds = _run_rounds(strategy, 4)
    next(rounds), next(rounds)

    _, package3, _, _, device3 = next(rounds)          # |D³| = 210 > 2·90: re-initialise
    line3 = {n: t.clone() for n, t in strategy._last_result.state.items()}
    assert strategy._last_result.reference == "init"
    assert package3 is None and strategy.latest.number == 2

    _, package4, target4, before4, device4 = next(rounds)
    assert strategy._last_result.reference == "base"
    # round 4 started from the round-3 line, not from the deployed model
    for name, mask in strategy._last_result.masks.items():
        assert torch.equal(target4[name][~mask], line3[name][~mask])
    assert package4.header.initializer_seed == derive_seed(strategy.cfg.seed, "init", 0)  # w⁰
    assert package4.header.base_version == 2 and all(torch.equal(before4[n], device3[n]) for n in device3)
    assert all(torch.equal(device4[n], target4[n]) for n in target4)
    k_i = strategy._last_result.info.changed_count
    sent = sum(t.count for t in package4.header.tensors if t.kind == "sparse")
    assert k_i < sent <= 2 * k_i                       # the changes of both rounds since the re-init
    assert strategy.log.extra["reinitialized"] == 0.0   # the metrics say which rounds restarted


@pytest.mark.parametrize("preset", ["dpu-mnist.toml", "dpu-mnist-paper.toml"])
def test_presets_run_every_compared_strategy_with_one_training_recipe(preset):
    """The README's compare command: every strategy validates, all share the training settings,
    the partial methods skip pushes without gain (§5.5) and only DPU may re-initialise (§5.5.5)."""
    from edgeupdate.configs import load_config
    from edgeupdate.simulation.compare import strategy_config

    cfg = load_config(REPO / "configs" / preset)
    runs = {name: strategy_config(cfg, name) for name in ("full", "dpu", "gcpu", "rpu", "pruning")}

    assert len({dataclasses.astuple(c.training) for c in runs.values()}) == 1
    assert list(cfg.model.hidden) == [512, 512] and cfg.stream.initial_samples == cfg.stream.samples_per_round == 1000
    assert all(runs[n].strategy.params["k"] == 0.005 for n in ("dpu", "gcpu", "rpu", "pruning"))
    assert all(runs[n].strategy.params["skip_if_no_gain"] for n in ("dpu", "gcpu", "rpu"))
    assert runs["dpu"].strategy.params.get("reinitialize", False) == (preset == "dpu-mnist-paper.toml")
    assert not runs["gcpu"].strategy.params.get("reinitialize", False)
    assert runs["full"].strategy.params == {"init": "same-seed"}
