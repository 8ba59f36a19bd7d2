"""A run killed with SIGKILL mid-round and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from edgeupdate.simulation.metrics import TIMING_COLUMNS
from tests.conftest import REPO, TINY

pytestmark = pytest.mark.sim  # every test here runs real simulations

FAULTY_FLEET = ["fleet.tiers={lora-sf7=0.5, nbiot=0.5}", "fleet.deadline_s=600.0", "fleet.budgets=true",
                "fleet.faults.dropout_prob=0.2", "fleet.faults.corruption_prob=0.2", "fleet.faults.crash_prob=0.2",
                "fleet.faults.lost_prob=0.15"]
CASES = {
    "dpu": ["strategy.name='dpu'", "strategy.params={k=0.1}"],
    "fedavg-topk": ["strategy.name='fedavg'", "strategy.params={upload={kind='topk', fraction=0.1}}"],
    "fleet-faults-budgets-lost": ["strategy.name='full'", "strategy.params={init='warm'}", "seed=5", *FAULTY_FLEET,
                                  "simulation.save_packages=true"],
}
DEFAULT_CASES = ("fleet-faults-budgets-lost",)  # the others, a Ray start each, under `make test-slow`
SUMMARY_TOTALS = ("final_mean_accuracy", "mean_accuracy", "total_bytes_down", "total_bytes_up", "sim_time_s",
                  "status_counts", "attacks", "lost", "rounds", "num_devices")


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "edgeupdate.cli", *args], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _run_args(out: Path, overrides: list[str]) -> list[str]:
    sets = [a for o in [*TINY, "rounds=3", "num_devices=5", "simulation.devices_per_node=2", *overrides]
            for a in ("--set", o)]
    return ["run", str(REPO / "configs" / "quickstart.toml"), "--out", str(out), "--quiet", *sets]


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


def _kill_mid_round(proc: subprocess.Popen, run_dir: Path) -> int:
    """SIGKILL the run (its whole process tree) inside round 2 or 3; return the last complete round."""
    ckpt = run_dir / "checkpoint"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        latest = (ckpt / "LATEST").read_text().strip() if (ckpt / "LATEST").exists() else ""
        nodes_in_round_2 = any(ckpt.glob("nodes/partition-*/round-2.pkl"))
        if latest == "2" or (latest == "1" and nodes_in_round_2):  # some nodes finished round 2, the server not
            break
        time.sleep(0.02)
    tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in tree:  # Ray's processes included, each by its PID
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    assert not (run_dir / "summary.json").exists()
    return int((ckpt / "LATEST").read_text())


@pytest.mark.parametrize("case", [c if c in DEFAULT_CASES else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_a_run_killed_mid_round_resumes_to_the_uninterrupted_results(tmp_path, case):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _finish(_cli(*_run_args(reference, CASES[case])))
    done = _kill_mid_round(_cli(*_run_args(killed, CASES[case])), killed)
    assert done in (1, 2)

    printed = _finish(_cli("resume", str(killed), "--quiet"))
    assert "final mean accuracy" in printed

    a, b = (pd.read_csv(d / "metrics.csv") for d in (reference, killed))
    exact = [c for c in a.columns if c not in TIMING_COLUMNS]
    pd.testing.assert_frame_equal(a[exact], b[exact])
    pd.testing.assert_frame_equal(pd.read_csv(reference / "versions.csv"), pd.read_csv(killed / "versions.csv"))
    if (reference / "packages.csv").exists():  # saved packages continue across the resume, once per transfer
        pd.testing.assert_frame_equal(pd.read_csv(reference / "packages.csv"), pd.read_csv(killed / "packages.csv"))
        assert sorted(p.name for p in (reference / "packages").iterdir()) == \
            sorted(p.name for p in (killed / "packages").iterdir())
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (reference, killed))
    assert {k: sa[k] for k in SUMMARY_TOTALS} == {k: sb[k] for k in SUMMARY_TOTALS}
    assert not (killed / "checkpoint").exists() and not (killed / "store").exists()  # cleaned once complete
    if case == "fleet-faults-budgets-lost":  # devices were lost, and the run went on
        assert sa["lost"]["device_rounds"] > 0 and (a["status"] == "lost").any()
        assert {"offline", "rejected", "applied"} <= set(a["status"]) and (a["package_kind"] == "budget").any()


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path):
    proc = _cli("resume", str(tmp_path))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.decode().strip().startswith("error:") and "config.toml" in err.decode() and len(err.decode().splitlines()) == 1
