"""Grouping devices into gateway nodes is a simulation shortcut: it must not change any metric."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from edgeupdate.simulation.metrics import TIMING_COLUMNS
from edgeupdate.simulation.runner import run_experiment

pytestmark = pytest.mark.sim  # every test here runs real simulations

FAULTY_FLEET = ["fleet.tiers={lora-sf7=0.5, nbiot=0.5}", "fleet.deadline_s=600.0", "fleet.budgets=true",
                "fleet.faults.dropout_prob=0.2", "fleet.faults.corruption_prob=0.2", "fleet.faults.crash_prob=0.2"]
CASES = {
    "full": ["strategy.name='full'", "strategy.params={init='warm'}"],
    "dpu": ["strategy.name='dpu'", "strategy.params={k=0.1}"],
    "ka": ["strategy.name='ka'", "strategy.params={n=2}", "rounds=3"],
    "fedavg": ["strategy.name='fedavg'", "strategy.params={upload={kind='topk', fraction=0.1}}"],
    "fleet-faults-budgets": ["strategy.name='full'", "strategy.params={init='warm'}", "rounds=3", "seed=5",
                             *FAULTY_FLEET],
}


# the faulty fleet (full with budgets) and FedAvg with error feedback run by default; the rest, a
# Ray start each, under `make test-slow`
DEFAULT_CASES = ("fedavg", "fleet-faults-budgets")


@pytest.mark.parametrize("case", [c if c in DEFAULT_CASES else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_grouped_nodes_give_the_metrics_of_one_device_per_node(tiny_config, tmp_path, case):
    cfg = tiny_config("num_devices=5", *CASES[case])
    alone = run_experiment(_per_node(cfg, 1), tmp_path / "alone", progress=False)
    grouped = run_experiment(_per_node(cfg, 3), tmp_path / "grouped", progress=False)  # nodes of 3 and 2 devices

    assert (alone["nodes"], grouped["nodes"]) == (5, 2)
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("alone", "grouped"))
    exact = [c for c in a.columns if c not in (*TIMING_COLUMNS, "loss")]
    pd.testing.assert_frame_equal(a[exact], b[exact])  # accuracy, bytes, statuses, versions, hashes
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "alone" / "versions.csv"),
                                  pd.read_csv(tmp_path / "grouped" / "versions.csv"))
    if case == "fleet-faults-budgets":  # the faults really happened, to single devices
        assert {"offline", "rejected"} <= set(a["status"]) and (a["package_kind"] == "budget").any()
    summary = json.loads((tmp_path / "grouped" / "summary.json").read_text())
    assert summary["status_counts"] == json.loads((tmp_path / "alone" / "summary.json").read_text())["status_counts"]


def _per_node(cfg, devices: int):
    import dataclasses

    return dataclasses.replace(cfg, simulation=dataclasses.replace(cfg.simulation, devices_per_node=devices))
