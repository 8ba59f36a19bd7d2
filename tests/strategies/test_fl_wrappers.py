"""The FL wrappers aggregate with Flower's own strategy classes — and each one's rule is the one used.

Two kinds of checks:

* crafted rounds (no Ray): hand-made device models go through the wrapper's real Flower calls
  (``configure_train`` → reply messages → ``aggregate_train``) and the released model is compared
  with the rule written out here from its paper (and with FedAvg, to show it differs in the
  predicted direction);
* one real simulation (Flower's engine on Ray) in which every wrapped strategy runs
  2 rounds on its own 3–5 devices; each round's released model must equal its rule applied to the
  uploads the devices actually sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message

from edgeupdate import protocol as P
from edgeupdate.clients.fit import fit
from edgeupdate.runtime import build_runtime
from edgeupdate.clients.upload import UploadSpec, encode_sketched
from edgeupdate.configs import ConfigError, load_config
from edgeupdate.messages import DeviceReply, read_tasks, reply_message
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.strategies.federated import FederatedStrategy
from edgeupdate.strategies.resolve import strategy_class, validate_strategy
from edgeupdate.updates import UpdatePackage, state_hash

from tests.conftest import REPO, TINY

Weights = dict[str, torch.Tensor]
FL_STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm", "fedmedian",
                 "fedtrimmedavg", "qfedavg")
CLIENT_LR = 0.1


# ----------------------------------------------------------------------------- reference rules
# Written from the papers (and Flower's documented conventions where a paper leaves a choice),
# in float64 over flat vectors; the wrapper's result must match them.
def flat(w: Mapping[str, torch.Tensor]) -> np.ndarray:
    return np.concatenate([w[k].double().reshape(-1).numpy() for k in sorted(w)])


def fedavg_rule(models: Sequence[np.ndarray], n: Sequence[int]) -> np.ndarray:
    """McMahan et al. 2017: Σ n_k w_k / Σ n_k."""
    return np.average(np.stack(models), axis=0, weights=np.asarray(n, dtype=float))


def median_rule(models: Sequence[np.ndarray]) -> np.ndarray:
    """Yin et al. 2018: the coordinate-wise median."""
    return np.median(np.stack(models), axis=0)


def trimmed_mean_rule(models: Sequence[np.ndarray], beta: float) -> np.ndarray:
    """Yin et al. 2018: per coordinate, drop the ⌊βK⌋ smallest and largest values, average the rest."""
    cut = int(beta * len(models))
    ordered = np.sort(np.stack(models), axis=0)
    return ordered[cut:len(models) - cut].mean(axis=0)


def qfedavg_rule(w: np.ndarray, models: Sequence[np.ndarray], losses: Sequence[float], q: float,
                 lipschitz: float) -> np.ndarray:
    """Li et al. 2020 (q-FFL), Algorithm 2: Δ_k = L(w − w_k), h_k = qF_k^(q−1)‖Δ_k‖² + LF_k^q,
    w ← w − Σ F_k^q Δ_k / Σ h_k."""
    deltas = [lipschitz * (w - m) for m in models]
    num = sum(f ** q * d for f, d in zip(losses, deltas))
    den = sum(q * f ** (q - 1) * float(d @ d) + lipschitz * f ** q for f, d in zip(losses, deltas))
    return w - num / den


@dataclass
class ServerOpt:
    """Reddi et al. 2021, Algorithm 2 (FedAdagrad / FedAdam / FedYogi) on Δ_t = mean(w_k) − w_t.

    Flower's FedAdam also applies Adam's bias correction with exponent t + 1 (t = server round);
    the other two use η as is.
    """

    kind: str
    eta: float
    tau: float
    beta_1: float = 0.0
    beta_2: float = 0.0
    m: np.ndarray | None = None
    v: np.ndarray | None = None

    def step(self, round_: int, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
        delta = mean - w
        self.m = (self.beta_1 * (self.m if self.m is not None else 0.0) + (1 - self.beta_1) * delta)
        v = self.v if self.v is not None else np.zeros_like(w)
        if self.kind == "fedadagrad":
            self.v = v + delta ** 2
        elif self.kind == "fedadam":
            self.v = self.beta_2 * v + (1 - self.beta_2) * delta ** 2
        else:  # fedyogi: v ← v − (1 − β₂) Δ² sign(v − Δ²)
            self.v = v - (1 - self.beta_2) * delta ** 2 * np.sign(v - delta ** 2)
        eta = self.eta
        if self.kind == "fedadam":
            eta *= math.sqrt(1 - self.beta_2 ** (round_ + 1)) / (1 - self.beta_1 ** (round_ + 1))
        return w + eta * self.m / (np.sqrt(self.v) + self.tau)


@dataclass
class ServerMomentum:
    """Hsu et al. 2019 (FedAvgM): pseudo-gradient g = w − mean, v ← μv + g, w ← w − ηv."""

    lr: float
    momentum: float
    velocity: np.ndarray | None = None

    def step(self, w: np.ndarray, mean: np.ndarray) -> np.ndarray:
        g = w - mean
        self.velocity = g if self.velocity is None else self.momentum * self.velocity + g
        return w - self.lr * self.velocity


# ----------------------------------------------------------------------------- crafted rounds
@pytest.fixture(autouse=True)
def _server_task_identity(server_task_identity):
    """The crafted rounds build the server's messages outside a ServerApp."""


@pytest.fixture(scope="module")
def runtime():
    cfg = load_config(REPO / "configs" / "quickstart.toml",
                      [*TINY, "num_devices=5", "stream.initial_samples=150", f"client.lr={CLIENT_LR}",
                       "client.batch_size=8", "client.epochs=2",  # several local steps: FedProx's term acts
                       "strategy.name='fedavg'", "strategy.params={}"])
    return build_runtime(cfg)


def make_strategy(runtime, name: str, **params) -> FederatedStrategy:
    """The registered strategy ``name`` over the runtime's devices (node id = 100 + device id)."""
    devices = {d: 100 + d for d in range(runtime.cfg.num_devices)}
    return strategy_class(name)(runtime, validate_strategy(name, params), MetricsCollector(), devices)


@dataclass(frozen=True)
class Upload:
    """What one device sends in a crafted round: its trained model and its metrics."""

    weights: Weights
    num_examples: int = 10
    loss_before: float = 1.0


def play_round(strategy: FederatedStrategy, round_: int, uploads: Mapping[int, Upload]) -> list[Message]:
    """One round through the wrapper's Flower calls; returns the TRAIN messages it sent."""
    base = strategy.latest
    messages = list(strategy.configure_train(round_, ArrayRecord(base.weights), ConfigRecord(), None))
    replies = []
    for msg in messages:
        answers = []
        for task in read_tasks(msg)[1]:
            up = uploads[task.device_id]
            zeros = {k: torch.zeros_like(v) for k, v in base.weights.items()}
            payload = encode_sketched(UploadSpec(), base.weights, up.weights, base.number, zeros).package.encode()
            answers.append(DeviceReply(task.device_id, base.number, base.hash, P.DeviceStatus.TRAINED, "", payload,
                                       {"num-examples": up.num_examples, "train_loss": up.loss_before / 2,
                                        "loss_before": up.loss_before}))
        replies.append(reply_message(msg, answers))
    strategy.aggregate_train(round_, replies)
    assert strategy.latest.number == round_
    return messages


def shifted(base: Weights, direction: np.ndarray, scale: float) -> Weights:
    """``base`` + scale · direction (direction: one flat vector over all tensors, sorted by name)."""
    out, i = {}, 0
    for k in sorted(base):
        n = base[k].numel()
        out[k] = (base[k].double() + scale * torch.from_numpy(direction[i:i + n]).reshape(base[k].shape)).float()
        i += n
    return {k: out[k] for k in base}


def directions(runtime, count: int, seed: int = 0) -> list[np.ndarray]:
    size = sum(v.numel() for v in runtime.initial_state.values())
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 0.01, size) for _ in range(count)]


def assert_equal_to(result: Weights, expected: np.ndarray, atol: float = 2e-6) -> None:
    np.testing.assert_allclose(flat(result), expected, rtol=0, atol=atol)


def test_fedavg_is_the_example_weighted_mean(runtime):
    s = make_strategy(runtime, "fedavg")
    w0 = runtime.initial_state
    ups = {d: Upload(shifted(w0, u, 1.0), num_examples=10 * (d + 1)) for d, u in enumerate(directions(runtime, 5))}
    play_round(s, 1, ups)
    assert_equal_to(s.latest.weights, fedavg_rule([flat(u.weights) for u in ups.values()], [10, 20, 30, 40, 50]))


def test_fedmedian_takes_the_coordinate_median_where_fedavg_follows_an_outlier(runtime):
    # Prepare: four devices roughly agree, one sends a model 100× as far off
    w0 = runtime.initial_state
    u = directions(runtime, 1)[0]
    ups = {0: Upload(shifted(w0, u, 1.0)), 1: Upload(shifted(w0, u, 1.2)), 2: Upload(shifted(w0, u, 100.0)),
           3: Upload(shifted(w0, u, 0.9)), 4: Upload(shifted(w0, u, 1.1))}
    models = [flat(x.weights) for x in ups.values()]
    median, fedavg = make_strategy(runtime, "fedmedian"), make_strategy(runtime, "fedavg")
    # Execute
    play_round(median, 1, ups)
    play_round(fedavg, 1, ups)
    # Assert: the median is device 4's model (scale 1.1, the middle one in every coordinate);
    # FedAvg is dragged towards the outlier
    assert_equal_to(median.latest.weights, median_rule(models))
    assert_equal_to(median.latest.weights, flat(ups[4].weights))
    step_median = flat(median.latest.weights) - flat(w0)
    step_avg = flat(fedavg.latest.weights) - flat(w0)
    assert np.linalg.norm(step_avg) > 15 * np.linalg.norm(step_median)


def test_fedtrimmedavg_cuts_outliers_at_both_tails(runtime):
    w0 = runtime.initial_state
    honest = directions(runtime, 3, seed=1)
    ones = np.ones_like(honest[0])

    def released(outlier_scale: float) -> Weights:
        ups = {d: Upload(shifted(w0, honest[d], 1.0)) for d in range(3)}
        ups[3] = Upload(shifted(w0, ones, outlier_scale))   # in every coordinate one outlier above ...
        ups[4] = Upload(shifted(w0, ones, -outlier_scale))  # ... and one below the honest values
        s = make_strategy(runtime, "fedtrimmedavg", beta=0.2)
        play_round(s, 1, ups)
        assert_equal_to(s.latest.weights, trimmed_mean_rule([flat(x.weights) for x in ups.values()], 0.2))
        return s.latest.weights

    # β = 0.2 of 5 devices cuts one value at each tail: the result is the mean of the honest three
    for scale in (1.0, 100.0):
        assert_equal_to(released(scale), np.mean([flat(shifted(w0, h, 1.0)) for h in honest], axis=0), atol=5e-6)


def test_fedtrimmedavg_rejects_a_beta_that_cuts_everything(runtime):
    with pytest.raises(ConfigError, match="beta"):
        make_strategy(runtime, "fedtrimmedavg", beta=0.5)


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad"])
def test_adaptive_server_optimisers_follow_reddi_et_al_over_two_rounds(runtime, name):
    # Prepare: per coordinate the devices agree on the sign of the update; its size spans 10³
    eta, tau = 0.01, 1e-6
    params = {"server_lr": eta, "tau": tau}
    if name != "fedadagrad":
        params.update(beta_1=0.9, beta_2=0.99)
    s, avg = make_strategy(runtime, name, **params), make_strategy(runtime, "fedavg")
    ref = ServerOpt(name, eta, tau, params.get("beta_1", 0.0), params.get("beta_2", 0.0))
    size = flat(runtime.initial_state).size
    magnitude = np.logspace(-4, -1, size)
    sign = np.where(np.arange(size) % 2 == 0, 1.0, -1.0)
    for round_ in (1, 2):
        w = flat(s.latest.weights)
        ups = {d: Upload(shifted(s.latest.weights, sign * magnitude, 1.0 + 0.1 * d)) for d in range(5)}
        mean = fedavg_rule([flat(x.weights) for x in ups.values()], [10] * 5)
        # Execute
        play_round(s, round_, ups)
        # Assert: the released model is Algorithm 2's step from the state Flower carried over
        # (Flower computes in float32: Δ of the smallest coordinates carries ~1e-4 relative error)
        expected = ref.step(round_, w, mean)
        np.testing.assert_allclose(flat(s.latest.weights) - w, expected - w, rtol=2e-3, atol=1e-8)
    # Predicted direction: each coordinate moves with the sign of its update, but (unlike FedAvg,
    # which moves it by exactly the update) by an adaptively normalised amount
    play_round(avg, 1, {d: Upload(shifted(avg.latest.weights, sign * magnitude, 1.0 + 0.1 * d)) for d in range(5)})
    s1 = make_strategy(runtime, name, **params)
    play_round(s1, 1, {d: Upload(shifted(s1.latest.weights, sign * magnitude, 1.0 + 0.1 * d)) for d in range(5)})
    step = flat(s1.latest.weights) - flat(runtime.initial_state)
    step_avg = flat(avg.latest.weights) - flat(runtime.initial_state)
    big = magnitude > 1e-3  # |Δ| ≫ τ: the normalised step is ≈ constant
    assert (np.sign(step[big]) == sign[big]).all()
    assert np.abs(step[big]).max() / np.abs(step[big]).min() < 1.05
    assert np.abs(step_avg[big]).max() / np.abs(step_avg[big]).min() > 50


def test_fedavgm_keeps_momentum_from_the_previous_round(runtime):
    lr, mu = 1.0, 0.5
    s, avg = make_strategy(runtime, "fedavgm", server_lr=lr, server_momentum=mu), make_strategy(runtime, "fedavg")
    ref = ServerMomentum(lr, mu)
    u1, u2 = directions(runtime, 2, seed=3)
    steps, first = [], {}
    for round_, u in ((1, u1), (2, u2)):
        w = flat(s.latest.weights)
        ups = {d: Upload(shifted(s.latest.weights, u, 1.0 + 0.2 * d)) for d in range(5)}
        mean = fedavg_rule([flat(x.weights) for x in ups.values()], [10] * 5)
        play_round(s, round_, ups)
        play_round(avg, round_, {d: Upload(shifted(avg.latest.weights, u, 1.0 + 0.2 * d)) for d in range(5)})
        assert_equal_to(s.latest.weights, ref.step(w, mean))
        steps.append(mean - w)
        first.setdefault("fedavgm", s.latest.weights)
        first.setdefault("fedavg", avg.latest.weights)
    # With η = 1, round 1 is FedAvg; round 2 overshoots FedAvg by μ × round 1's update
    np.testing.assert_allclose(flat(first["fedavgm"]), flat(first["fedavg"]), atol=1e-6)
    extra = flat(s.latest.weights) - (flat(first["fedavgm"]) + steps[1])
    np.testing.assert_allclose(extra, lr * mu * steps[0], atol=2e-6)


def test_qfedavg_weights_devices_by_their_loss(runtime):
    # Prepare: two devices with disjoint updates (first half / second half of the weights)
    q = 1.0
    w0 = runtime.initial_state
    u = directions(runtime, 1, seed=4)[0]
    half = np.arange(u.size) < u.size // 2
    ups = {0: Upload(shifted(w0, np.where(half, u, 0.0), 1.0), loss_before=2.0),
           1: Upload(shifted(w0, np.where(half, 0.0, u), 1.0), loss_before=0.5)}
    devices = {0: 100, 1: 101}
    s = strategy_class("qfedavg")(runtime, validate_strategy("qfedavg", {"q": q}), MetricsCollector(), devices)
    # Execute
    play_round(s, 1, ups)
    # Assert: Algorithm 2 with L = 1 / client lr and F_k = the loss before training
    models = [flat(x.weights) for x in ups.values()]
    assert_equal_to(s.latest.weights, qfedavg_rule(flat(w0), models, [2.0, 0.5], q, 1 / CLIENT_LR))
    # the high-loss device's update counts (F₀/F₁)^q = 4 times as much; FedAvg would weigh them equally
    step = flat(s.latest.weights) - flat(w0)
    share0 = np.linalg.norm(step[half]) / np.linalg.norm(u[half])
    share1 = np.linalg.norm(step[~half]) / np.linalg.norm(u[~half])
    assert share0 / share1 == pytest.approx(4.0, rel=1e-4)


def test_qfedavg_with_q_zero_is_the_plain_mean(runtime):
    w0 = runtime.initial_state
    ups = {d: Upload(shifted(w0, u, 1.0), num_examples=5 + 40 * d, loss_before=0.3 + d)
           for d, u in enumerate(directions(runtime, 5, seed=5))}
    s = make_strategy(runtime, "qfedavg", q=0.0)
    play_round(s, 1, ups)
    assert_equal_to(s.latest.weights, np.mean([flat(x.weights) for x in ups.values()], axis=0))


def test_fedprox_mu_reaches_the_device_and_pulls_its_update_towards_the_global_model(runtime):
    # Prepare: Flower's FedProx puts μ into the fit config; the wrapper forwards it in the task
    mu = 5.0
    s = make_strategy(runtime, "fedprox", proximal_mu=mu)
    w0 = runtime.initial_state
    ups = {d: Upload(shifted(w0, u, 1.0), num_examples=10 + d) for d, u in enumerate(directions(runtime, 5, seed=6))}
    messages = play_round(s, 1, ups)
    tasks = [t.fields for m in messages for t in read_tasks(m)[1]]
    assert len(tasks) == 5 and all(t["proximal-mu"] == mu and t["task"] == P.TASK_FIT for t in tasks)
    # the server side aggregates like FedAvg
    assert_equal_to(s.latest.weights, fedavg_rule([flat(x.weights) for x in ups.values()], [10, 11, 12, 13, 14]))

    # Execute: the device trains with the task as sent, and with μ removed
    def update(task) -> np.ndarray:
        payload, _ = fit(runtime, w0, 0, 1, 1, task)
        return flat(UpdatePackage.decode(payload).apply(w0)) - flat(w0)

    prox, plain = update(tasks[1]), update({k: v for k, v in tasks[1].items() if k != "proximal-mu"})
    # Assert: the proximal term μ/2‖w − w_global‖² shortens the update
    assert np.linalg.norm(prox) < 0.9 * np.linalg.norm(plain)
    assert np.linalg.norm(prox) > 0


def test_fedprox_with_mu_zero_trains_like_fedavg(runtime):
    s = make_strategy(runtime, "fedprox", proximal_mu=0.0)
    w0 = runtime.initial_state
    messages = play_round(s, 1, {d: Upload(w0) for d in range(5)})
    task = read_tasks(messages[0])[1][0].fields
    assert task["proximal-mu"] == 0.0
    with_mu, _ = fit(runtime, w0, 0, 2, 1, task)
    without, _ = fit(runtime, w0, 0, 2, 1, {k: v for k, v in task.items() if k != "proximal-mu"})
    assert with_mu == without


def test_every_fl_strategy_is_registered_and_wraps_a_flower_strategy(runtime):
    from flwr.serverapp.strategy import Strategy

    for name in FL_STRATEGIES:
        s = make_strategy(runtime, name)
        assert isinstance(s, FederatedStrategy) and isinstance(s.inner, Strategy)
        assert type(s.inner).__module__.startswith("flwr.serverapp.strategy")


# ----------------------------------------------------------------------------- real simulation
#: strategy → (params, devices). FedTrimmedAvg gets 5 devices so that β = 0.2 cuts one per tail.
SIMULATED: dict[str, tuple[dict, int]] = {
    "fedavg": ({}, 3), "fedprox": ({"proximal_mu": 1.0}, 3), "fedadam": ({}, 3), "fedyogi": ({}, 3),
    "fedadagrad": ({}, 3), "fedavgm": ({"server_momentum": 0.9}, 3), "fedmedian": ({}, 3),
    "fedtrimmedavg": ({"beta": 0.2}, 5), "qfedavg": ({"q": 1.0}, 3),
}


@dataclass
class SimRound:
    """What one strategy saw and produced in one simulated round."""

    base: Weights
    uploads: dict[int, tuple[Weights, dict[str, float]]]  # device → (uploaded model, its metrics)
    tasks: dict[int, dict]  # device → fit task as sent
    released: Weights


def record_rounds(strategy: FederatedStrategy) -> list[SimRound]:
    """Record every round's fit tasks, decoded uploads and released model (the hooks stay the real ones)."""
    rounds: list[SimRound] = []
    tasks: dict[int, dict] = {}
    train_task, next_model = strategy.train_task, strategy.next_model

    def spy_task(round_, view):
        task = train_task(round_, view)
        if task is not None:
            tasks[view.device_id] = dict(task)
        return task

    def spy_next(round_, reports):
        base = strategy.latest.weights
        uploads = {r.device_id: (UpdatePackage.decode(r.payload).apply(base), dict(r.metrics))
                   for r in reports if r.payload}
        out = next_model(round_, reports)
        rounds.append(SimRound(base, uploads, dict(tasks), out))
        tasks.clear()
        return out

    strategy.train_task, strategy.next_model = spy_task, spy_next
    return rounds


def simulate_side_by_side(cfg, specs: Mapping[str, tuple[dict, int]]):
    """One Flower simulation (Ray) in which each strategy drives its own slice of the devices.

    The strategies run one after another on the same Grid, each over disjoint nodes, so device
    state never mixes; everything below the strategy (ClientApp, fit, uploads, packages) is the
    project's own. Returns ``{name: (strategy, recorded rounds)}``.
    """
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from edgeupdate.clients.gateway import make_client_app
    from edgeupdate.runtime import experiment_runtime
    from edgeupdate.simulation.runner import backend_config, discover_devices

    runtime = experiment_runtime(cfg)
    results: dict[str, tuple[FederatedStrategy, list[SimRound]]] = {}
    errors: list[BaseException] = []
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        try:
            node_of = discover_devices(grid, runtime)
            first = 0
            for name, (params, count) in specs.items():
                devices = {d: node_of[d] for d in range(first, first + count)}
                first += count
                strategy = strategy_class(name)(runtime, validate_strategy(name, params), MetricsCollector(), devices)
                results[name] = (strategy, record_rounds(strategy))
                strategy.start(grid, ArrayRecord(runtime.initial_state), num_rounds=cfg.rounds, timeout=600)
        except BaseException as err:  # surfaced in the test, not lost in the server thread
            errors.append(err)

    run_simulation(server_app=app, client_app=make_client_app(lambda _ctx: experiment_runtime(cfg)),
                   num_supernodes=runtime.num_nodes, backend_config=backend_config(cfg))
    if errors:
        raise errors[0]
    return runtime, results


def expected_rounds(name: str, params: dict, rounds: Sequence[SimRound], client_lr: float) -> list[np.ndarray]:
    """Each round's model by the strategy's rule, from the uploads the devices sent."""
    defaults = validate_strategy(name, params)
    opt = (ServerOpt(name, defaults.server_lr, defaults.tau, getattr(defaults, "beta_1", 0.0),
                     getattr(defaults, "beta_2", 0.0)) if name in ("fedadam", "fedyogi", "fedadagrad") else None)
    momentum = ServerMomentum(defaults.server_lr, defaults.server_momentum) if name == "fedavgm" else None
    out = []
    for round_, rec in enumerate(rounds, start=1):
        w = flat(rec.base)
        models = [flat(m) for m, _ in rec.uploads.values()]
        n = [int(x["num-examples"]) for _, x in rec.uploads.values()]
        mean = fedavg_rule(models, n)
        if name in ("fedavg", "fedprox"):
            out.append(mean)
        elif opt is not None:
            out.append(opt.step(round_, w, mean))
        elif momentum is not None:
            out.append(momentum.step(w, mean))
        elif name == "fedmedian":
            out.append(median_rule(models))
        elif name == "fedtrimmedavg":
            out.append(trimmed_mean_rule(models, defaults.beta))
        else:
            losses = [float(x["loss_before"]) for _, x in rec.uploads.values()]
            out.append(qfedavg_rule(w, models, losses, defaults.q, 1 / client_lr))
    return out


@pytest.fixture(scope="module")
def side_by_side():
    """All nine strategies, 2 rounds each, in one simulation on the tiny digits config (≈ one Ray start)."""
    num_devices = sum(count for _, count in SIMULATED.values())
    cfg = load_config(REPO / "configs" / "quickstart.toml",
                      [*TINY, f"num_devices={num_devices}", f"stream.initial_samples={20 * num_devices}",
                       f"stream.samples_per_round={10 * num_devices}", "client.epochs=2", "client.batch_size=8",
                       f"client.lr={CLIENT_LR}", "strategy.name='fedavg'", "strategy.params={}"])
    runtime, results = simulate_side_by_side(cfg, SIMULATED)
    assert list(results) == list(SIMULATED)
    return cfg, runtime, results


@pytest.mark.sim
@pytest.mark.parametrize("name", list(SIMULATED))
def test_each_fl_strategy_aggregates_with_its_own_rule_in_a_two_round_simulation(side_by_side, name):
    # Prepare: the recorded simulation (rounds, uploads, released models)
    cfg, _, results = side_by_side
    params, count = SIMULATED[name]
    strategy, rounds = results[name]
    # Assert: every device trained and uploaded, every round released a version all devices applied
    assert len(rounds) == cfg.rounds
    rows = strategy.collector.frame()
    assert len(rows) == cfg.rounds * count and (rows["bytes_up"] > 0).all()
    assert (rows["status"] == P.DeviceStatus.APPLIED).all() and (rows["model_version"] == rows["round"]).all()
    # ... and each released model is the strategy's rule applied to the uploads the devices sent
    away_from_fedavg = 0.0
    for round_, (rec, want) in enumerate(zip(rounds, expected_rounds(name, params, rounds, cfg.client.lr)), 1):
        assert len(rec.uploads) == count
        got = flat(rec.released)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=f"{name} round {round_}")
        held = set(rows[rows["round"] == round_]["model_hash"])  # what the devices hold after the round
        assert held == {state_hash(rec.released)}
        fedavg = fedavg_rule([flat(m) for m, _ in rec.uploads.values()],
                             [int(x["num-examples"]) for _, x in rec.uploads.values()])
        away_from_fedavg = max(away_from_fedavg, float(np.abs(got - fedavg).max()))
    if name in ("fedavg", "fedprox"):
        assert away_from_fedavg < 1e-5
    else:  # the strategy's own rule, measurably not FedAvg's, was used
        assert away_from_fedavg > 1e-3


@pytest.mark.sim
def test_fedprox_devices_in_the_simulation_trained_with_the_proximal_term(side_by_side):
    _, runtime, results = side_by_side
    _, rounds = results["fedprox"]
    for round_, rec in enumerate(rounds, start=1):
        for device, (uploaded, _) in rec.uploads.items():
            # μ reached the device in its fit task ...
            task = rec.tasks[device]
            assert task["proximal-mu"] == 1.0
            # ... and its upload is the model trained with the term, shorter than without it
            with_mu = UpdatePackage.decode(fit(runtime, rec.base, round_ - 1, device, round_, task)[0]).apply(rec.base)
            plain_task = {k: v for k, v in task.items() if k != "proximal-mu"}
            plain = UpdatePackage.decode(fit(runtime, rec.base, round_ - 1, device, round_, plain_task)[0]).apply(rec.base)
            w = flat(rec.base)
            np.testing.assert_allclose(flat(uploaded), flat(with_mu), rtol=0, atol=1e-5)
            assert np.linalg.norm(flat(uploaded) - w) < 0.95 * np.linalg.norm(flat(plain) - w)
