"""Finding the run's nodes: a run that cannot start says why, and what to start."""

from __future__ import annotations

import pytest

from edgeupdate.runtime import build_runtime
from edgeupdate.simulation import runner


class NoNodes:
    """A grid no SuperNode ever joined."""

    def get_node_ids(self):
        return []


def test_a_run_without_any_node_fails_with_what_to_start(monkeypatch):
    from edgeupdate.configs import load_config
    from tests.conftest import REPO, TINY

    runtime = build_runtime(load_config(REPO / "configs" / "quickstart.toml", TINY))
    monkeypatch.setattr(runner, "NO_NODES_S", 0.3)

    with pytest.raises(runner.SimulationError, match=rf"no node registered within 0 s; {runtime.num_nodes} needed "
                                                     r"\(start one SuperNode per gateway: flower-supernode"):
        runner.discover_devices(NoNodes(), runtime, timeout_s=60.0)
