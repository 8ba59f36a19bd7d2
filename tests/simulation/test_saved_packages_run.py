"""``edgeupdate run --save-packages`` on Flower's engine (Ray): every transfer in packages.csv, and
the newest package replays onto its saved base to the hash in versions.csv."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from edgeupdate.cli import main
from edgeupdate.updates import apply_package_file, load_state_file, state_hash

from tests.conftest import REPO, TINY

pytestmark = pytest.mark.sim  # runs a real simulation

# Seed 20 drops device 0 in round 1 and device 2 in round 2: round 2 sends a release (v1 → v2) and a
# catch-up (v0 → v2), and the offline devices get nothing.
RUN = [*TINY, "seed=20", "fleet.faults.dropout_prob=0.3", "strategy.name=dpu", "strategy.params={k=0.1}"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeupdate.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_a_run_saves_every_package_sent_and_the_newest_replays_onto_its_saved_base(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["run", str(REPO / "configs" / "quickstart.toml"), "--quiet", "--save-packages", "--out", str(run)]
    assert main([*args, *(a for o in RUN for a in ("--set", o))]) == 0
    assert "packages.csv" in capsys.readouterr().out

    rows = pd.read_csv(run / "packages.csv", keep_default_na=False)
    metrics = pd.read_csv(run / "metrics.csv").set_index(["round", "device_id"])
    versions = pd.read_csv(run / "versions.csv")
    # one row per package put on a link: the push phase's bytes_down, nothing for offline devices
    assert set(rows["phase"]) == {"push"}
    sent = rows.groupby(["round", "device_id"])["bytes_down"].sum()
    assert sent.to_dict() == metrics[metrics["bytes_down"] > 0]["bytes_down"].to_dict()
    assert set(metrics[metrics["status"] == "offline"].index).isdisjoint(sent.index)
    assert set(rows[rows["round"] == 2]["kind"]) == {"release", "catch-up"}
    assert {p.name for p in (run / "packages").iterdir()} == {f.split("/")[1] for f in rows["file"]}
    assert {p.name for p in (run / "models").iterdir()} == {
        f"v{v}-{h[:16]}.pt" for v, h in zip(versions["model_version"], versions["model_hash"])}
    for _, row in rows.drop_duplicates(["file", "base_model"]).iterrows():  # every transfer replays
        apply_package_file(run / row["base_model"], run / row["file"], tmp_path / "out.pt")
        assert state_hash(load_state_file(tmp_path / "out.pt")) == row["target_hash"]
        assert state_hash(load_state_file(run / row["target_model"])) == row["target_hash"]

    newest = rows[rows["target_version"] == rows["target_version"].max()].iloc[-1]
    assert main(["package", "inspect", str(run / newest["file"])]) == 0
    described = json.loads(capsys.readouterr().out)
    assert (described["target_version"], described["target_hash"]) == (2, newest["target_hash"])
    out = tmp_path / "v2.pt"
    assert main(["package", "apply", "--model", str(run / newest["base_model"]),
                 "--package", str(run / newest["file"]), "--out", str(out)]) == 0
    replayed = state_hash(load_state_file(out))
    assert replayed in set(versions[versions["model_version"] == 2]["model_hash"]) and replayed == newest["target_hash"]

    data = (run / newest["file"]).read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x40
    for name, damaged in (("flipped.pkg", bytes(flipped)), ("truncated.pkg", data[: len(data) // 2])):
        (tmp_path / name).write_bytes(damaged)
        proc = _cli("package", "apply", "--model", str(run / newest["base_model"]), "--package",
                    str(tmp_path / name), "--out", str(tmp_path / f"{name}.pt"))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
        assert not (tmp_path / f"{name}.pt").exists()
