"""The Flower app on Flower's Deployment Engine: a SuperLink and one SuperNode per gateway on
loopback, started with the README's commands (:mod:`tests.simulation.deployment`).

``flwr run --stream`` exits 0 even when the run failed, so the tests judge a run by its files
(a metrics row for every (round, device), ``summary.json``) and by ``flwr ls``.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pandas as pd
import pytest

from edgeupdate import protocol as P
from edgeupdate.configs import dump_config, load_config
from edgeupdate.runtime import experiment_runtime
from tests.conftest import REPO
from tests.simulation.deployment import (
    CONNECTION,
    Deployment,
    connection_toml,
    run_args,
    superlink_args,
    supernode_args,
)

RUN_TIMEOUT_S = 600.0
CONFIG = "configs/deployment.toml"  # as in the README: relative to the app's folder


def _nodes(config_file: Path) -> int:
    return experiment_runtime(load_config(config_file)).num_nodes


def _wait(deploy: Deployment, run, until=None, on_match=None) -> None:
    """Wait for ``flwr run`` to end; call ``on_match`` once when its output first matches ``until``."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while run.poll() is None:
        if until and on_match and re.search(until, deploy.log("run")):
            on_match()
            on_match = None
        assert time.monotonic() < deadline, f"flwr run still running after {RUN_TIMEOUT_S} s:\n{deploy.log('run')[-3000:]}"
        time.sleep(0.5)


def _check_finished(deploy: Deployment, out: Path, rounds: int, devices: int) -> pd.DataFrame:
    runs = deploy.runs()
    assert [r["status"] for r in runs] == ["finished:completed"], (runs, deploy.log("run")[-3000:])
    assert (out / "summary.json").exists(), deploy.log("run")[-3000:]
    df = pd.read_csv(out / "metrics.csv")
    assert sorted(zip(df["round"], df["device_id"])) == [(r, d) for r in range(1, rounds + 1) for d in range(devices)]
    return df


def _readme_commands() -> dict[str, list[str]]:
    """The README's Deployment Engine commands with its shell variables filled in, by program."""
    section = (REPO / "README.md").read_text().split("### Deployment Engine", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    block = block.replace("$((9094 + i))", "9094").replace("$i", "0").replace("$PWD", "/pwd").replace("\\\n", "")
    commands = {}
    for line in block.splitlines():
        words = shlex.split(line.split(" & ")[0].rstrip(" &"), comments=True)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # leading environment assignments
            words = words[1:]
        if words and words[0] in ("printf", "flower-superlink", "flower-supernode", "flwr"):
            commands[" ".join(words[:2])] = words
    return commands


def test_the_readme_shows_the_commands_the_tests_run():
    commands = _readme_commands()
    assert commands["flower-superlink --insecure"] == superlink_args(8000)
    assert commands["flower-supernode --insecure"] == supernode_args(8000, 9094, 0)
    assert commands["flwr run"] == run_args(CONFIG, "/pwd/runs/deploy")
    assert commands["flwr ls"] == ["flwr", "ls", CONNECTION]
    assert commands[next(k for k in commands if k.startswith("printf"))][1].replace("\\n", "\n") == connection_toml(8000)
    assert "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flower-superlink" in (REPO / "README.md").read_text()


@pytest.mark.slow
def test_three_supernodes_run_two_rounds_on_the_deployment_engine(tmp_path):
    nodes = _nodes(REPO / CONFIG)
    assert nodes == 3
    out = tmp_path / "out"
    deploy = Deployment(tmp_path)
    try:
        deploy.start_superlink()
        for partition_id in range(nodes):
            deploy.start_supernode(partition_id)
        run = deploy.start_run(CONFIG, out)
        _wait(deploy, run)
        assert run.returncode == 0, deploy.log("run")[-3000:]
        df = _check_finished(deploy, out, rounds=2, devices=3)
    finally:
        deploy.close()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["nodes"], summary["devices_per_node"], summary["rounds"]) == (3, 1, 2)
    assert summary["ray_nodes"] == {}  # the Deployment Engine runs no Ray
    assert set(df["status"]) == {P.DeviceStatus.APPLIED}
    assert (out / "config.toml").read_text() == dump_config(load_config(REPO / CONFIG))


@pytest.mark.slow
def test_a_supernode_stopped_mid_run_leaves_its_device_lost_and_the_run_completes(tmp_path):
    # Each message starts a ClientApp process (torch import, runtime): up to ~40 s on the busy
    # 2-core test machine, so the timeout that declares the stopped node's device lost is 90 s.
    config_file = tmp_path / "deployment.toml"
    config_file.write_text(dump_config(load_config(REPO / CONFIG, ["simulation.round_timeout_s=90.0"])))
    nodes = _nodes(config_file)
    out = tmp_path / "out"
    deploy = Deployment(tmp_path)
    stopped_at: list[float] = []
    try:
        deploy.start_superlink()
        for partition_id in range(nodes):
            deploy.start_supernode(partition_id)
        run = deploy.start_run(str(config_file), out)

        def stop_last_node() -> None:  # by its PID (process group), once round 1 is done
            deploy.stop(f"supernode-{nodes - 1}")
            stopped_at.append(time.monotonic())

        _wait(deploy, run, until=r"round\s+1/2\s+acc", on_match=stop_last_node)
        assert stopped_at, f"round 1 never finished:\n{deploy.log('run')[-3000:]}"
        df = _check_finished(deploy, out, rounds=2, devices=3)
    finally:
        deploy.close()
    lost = df[df["device_id"] == nodes - 1].set_index("round")
    assert lost.loc[1, "status"] != P.DeviceStatus.LOST
    assert lost.loc[2, "status"] == P.DeviceStatus.LOST and str(lost.loc[2, "reason"]) not in ("", "nan")
    assert not (df[df["device_id"] != nodes - 1]["status"] == P.DeviceStatus.LOST).any()
