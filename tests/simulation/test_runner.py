"""The server side of a run: settings it applies to its own process, and puts back."""

from __future__ import annotations

import pytest
import torch

from edgeupdate.configs import load_config
from edgeupdate.runtime import build_runtime
from edgeupdate.simulation import runner
from edgeupdate.strategies.resolve import resolve_strategy

from tests.conftest import REPO, TINY


@pytest.mark.parametrize("server_threads, expected", [(2, 2), (0, 1)])
def test_the_server_trains_with_server_threads_and_restores_the_process_setting(
        monkeypatch, tmp_path, server_threads, expected):
    cfg = load_config(REPO / "configs" / "quickstart.toml", [*TINY, f"simulation.server_threads={server_threads}"])
    seen = []

    def discovery_that_stops(*_args, **_kwargs):
        seen.append(torch.get_num_threads())
        raise runner.SimulationError("stop here")

    monkeypatch.setattr(runner, "discover_devices", discovery_that_stops)
    torch.set_num_threads(1)  # the tests' setting (conftest)
    with pytest.raises(runner.SimulationError, match="stop here"):
        runner.run_server(object(), build_runtime(cfg), resolve_strategy(cfg), tmp_path / "run")
    assert seen == [expected]
    assert torch.get_num_threads() == 1
