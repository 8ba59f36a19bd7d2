"""Shared fixtures: a tiny experiment config; the ``sim`` marker's guard.

A test that starts Flower's simulation engine (Ray) must be marked ``@pytest.mark.sim``: ``make
test-fast`` leaves those out, and an unmarked test that tries to start one fails with a message
saying so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeupdate.configs import load_config

# One intra-op thread: the tests' models are tiny, and two threads on a busy 2-core machine thrash
# (training ran up to 10× slower in CPU time); Ray's device processes use simulation.torch_threads.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

TINY = [
    "rounds=2", "num_devices=3", "model.hidden=[16]", "training.epochs=2", "stream.initial_samples=90",
    "stream.samples_per_round=30", "client.epochs=1",
]


@pytest.fixture
def tiny_config():
    """The quickstart scaled down to 3 devices × 2 rounds (seconds of compute, plus Ray start-up)."""
    def make(*overrides: str):
        return load_config(REPO / "configs" / "quickstart.toml", [*TINY, *overrides])
    return make


@pytest.fixture(autouse=True)
def _simulations_only_in_sim_tests(request, monkeypatch):
    """Fail an unmarked test that starts a Flower simulation, so the ``sim`` marker stays honest."""
    if request.node.get_closest_marker("sim") is not None:
        return
    import flwr.simulation

    def refuse(*_args, **_kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a Flower simulation (Ray): mark it @pytest.mark.sim")

    monkeypatch.setattr(flwr.simulation, "run_simulation", refuse)


@pytest.fixture
def server_task_identity(monkeypatch):
    """Flower stamps every new Message with the running task's identity; outside a ServerApp (a test
    that builds the server's messages itself) the test plays the server task."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, attr, value)
