"""Flower's Deployment Engine on loopback, for tests: one SuperLink and one SuperNode per gateway.

The processes are started exactly as the README's "Deployment Engine" section says, on free ports,
with ``FLWR_HOME`` in the test's own directory. Every process starts in its own session, so it is
stopped with its children (a SuperNode's SuperExec and ClientApp processes) by its process group,
never by name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import REPO

VENV_BIN = Path(sys.executable).parent
CONNECTION = "deploy"  # the SuperLink connection the test writes into $FLWR_HOME/config.toml


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connection_toml(link_port: int) -> str:
    """``$FLWR_HOME/config.toml``: the ``deploy`` connection to a SuperLink on loopback."""
    return (f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{link_port}"\ninsecure = true\n')


def superlink_args(link_port: int) -> list[str]:
    """The SuperLink (its environment adds ``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1``)."""
    return ["flower-superlink", "--insecure", "--port", str(link_port)]


def supernode_args(link_port: int, port: int, partition_id: int) -> list[str]:
    return ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link_port}", "--port", str(port),
            "--node-config", f"partition-id={partition_id}"]


def run_args(config_file: str | Path, out_dir: str | Path) -> list[str]:
    return ["flwr", "run", ".", CONNECTION, "--stream", "--run-config", f"config-file='{config_file}' out-dir='{out_dir}'"]


class Deployment:
    """A SuperLink on ``link_port`` and the SuperNodes started with :meth:`start_supernode`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "flwr-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.link_port = free_port()
        (self.home / "config.toml").write_text(connection_toml(self.link_port))
        self.env = {**os.environ, "FLWR_HOME": str(self.home), "PYTHONPATH": str(REPO),
                    "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process's output)
        proc = subprocess.Popen(args, cwd=REPO, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, name: str, pattern: str, timeout_s: float) -> None:
        """Wait until ``name``'s output matches ``pattern``; fail with its log if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while not re.search(pattern, self.log(name)):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} never printed {pattern!r}:\n{self.log(name)[-3000:]}")
            time.sleep(0.3)

    def start_superlink(self) -> None:
        self._start("superlink", superlink_args(self.link_port), FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")
        self.wait_for("superlink", r"Uvicorn running on http://127\.0\.0\.1:\d+", 120)

    def start_supernode(self, partition_id: int) -> None:
        name = f"supernode-{partition_id}"
        self._start(name, supernode_args(self.link_port, free_port(), partition_id))
        self.wait_for(name, r"SuperNode ID", 120)

    def flwr(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["flwr", *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    def start_run(self, config_file: str | Path, out_dir: Path) -> subprocess.Popen:
        """``flwr run . deploy --stream`` in the background (``config_file`` absolute or relative to
        the app's folder, ``out_dir`` absolute); its output goes to ``run.log``."""
        return self._start("run", run_args(config_file, out_dir))

    def runs(self) -> list[dict]:
        """``flwr ls deploy --format json``: every run the SuperLink knows, with its status."""
        listed = self.flwr("ls", CONNECTION, "--format", "json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        return json.loads(listed.stdout)["runs"]

    def stop(self, name: str, grace_s: float = 10.0) -> None:
        """End ``name`` and its children: SIGTERM to its process group, SIGKILL after ``grace_s``;
        children that left the group (the SuperLink's SuperExec starts its own session) by their PID."""
        proc = self.procs[name]
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        _signal_all(proc.pid, children, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_all(proc.pid, [], signal.SIGKILL)
            proc.wait(timeout=grace_s)
        _, alive = psutil.wait_procs(children, timeout=grace_s)
        _signal_all(proc.pid, alive, signal.SIGKILL)

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)


def _signal_all(group: int, processes: list[psutil.Process], sig: signal.Signals) -> None:
    """``sig`` to the process group ``group`` and to each of ``processes`` (gone ones are skipped)."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass
    for p in processes:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
