"""Attacks in real simulations (issue 18): every replayed or forged package is refused, and an
Ed25519 signature costs exactly its 64 bytes per package delivered."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from edgeupdate.simulation.runner import run_experiment

pytestmark = pytest.mark.sim  # every test here runs real simulations

SMALL = ["num_devices=6", "rounds=4", "model.hidden=[16]", "training.epochs=2"]


@pytest.mark.parametrize("signing", ["hmac", "ed25519"])
def test_every_replayed_or_forged_package_is_refused_and_counted(tiny_config, tmp_path, signing):
    cfg = tiny_config(*SMALL, "strategy.name=pruning", "strategy.params={}", f"package.signing={signing}",
                      "fleet.faults.replay_prob=0.3", "fleet.faults.forge_prob=0.3")

    summary = run_experiment(cfg, tmp_path, progress=False)
    df = pd.read_csv(tmp_path / "metrics.csv")

    attacks = summary["attacks"]
    assert attacks == json.loads((tmp_path / "summary.json").read_text())["attacks"]
    assert attacks["replay"]["attempts"] > 0 and attacks["forge"]["attempts"] > 0
    assert all(a["rejected"] == a["attempts"] for a in attacks.values())
    attacked = df[df["attack"] != "none"]
    assert len(attacked) == sum(a["attempts"] for a in attacks.values())
    assert (attacked["status"] == "rejected").all()
    replays = attacked[attacked["attack"] == "replay"]
    assert replays["reason"].str.startswith("version check:").all()  # base-free pruning packages: only the version stops them
    forged = attacked[attacked["attack"] == "forge"]
    assert forged["reason"].str.contains("signature does not verify").all()
    before = df.set_index(["round", "device_id"])["model_hash"]
    for _, row in attacked[attacked["round"] > 1].iterrows():  # the attacked device kept its model
        assert row["model_hash"] == before[(row["round"] - 1, row["device_id"])]
    assert (df[df["attack"] == "none"]["status"] != "rejected").all()  # no other faults configured


def test_an_ed25519_signature_adds_exactly_64_bytes_per_package_delivered(tiny_config, tmp_path):
    runs = {}
    for signing in ("none", "ed25519"):
        cfg = tiny_config("rounds=3", f"package.signing={signing}")
        summary = run_experiment(cfg, tmp_path / signing, progress=False)
        runs[signing] = (summary, pd.read_csv(tmp_path / signing / "metrics.csv").set_index(["round", "device_id"]))

    (plain, plain_df), (signed, signed_df) = runs["none"], runs["ed25519"]
    assert (plain_df["status"] == signed_df["status"]).all() and (plain_df["model_hash"] == signed_df["model_hash"]).all()
    delivered = int((plain_df["package_kind"] != "none").sum())
    assert delivered == len(plain_df)  # every device got a package every round
    assert (signed_df["bytes_down"] - plain_df["bytes_down"] == 64).all()
    assert signed["total_bytes_down"] - plain["total_bytes_down"] == 64 * delivered
