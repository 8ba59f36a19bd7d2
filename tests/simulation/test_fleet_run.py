"""The fleet model inside real simulations: statuses, catch-ups, budgets, version hashes."""

from __future__ import annotations

import pandas as pd
import pytest

from edgeupdate.runtime import build_runtime
from edgeupdate.simulation.runner import run_experiment

# 8 devices: LoRa SF7 needs ~15 min for the 4.8 kB full model at 1 % duty cycle, NB-IoT seconds.
FLEET = ["num_devices=8", "rounds=3", "fleet.tiers={lora-sf7=0.5, nbiot=0.5}", "fleet.deadline_s=600.0"]
FAULTS = ["fleet.faults.dropout_prob=0.25", "fleet.faults.corruption_prob=0.2", "fleet.faults.crash_prob=0.2"]

pytestmark = pytest.mark.sim  # every test here runs real simulations


def _issued(run_dir) -> set[str]:
    return set(pd.read_csv(run_dir / "versions.csv")["model_hash"])


def _run_csv_fleet(tiny_config, tmp_path, memory_bytes: dict[int, str], *overrides: str):
    """Run 2 rounds on a fleet CSV of (tier, memory_bytes) per device (empty memory: the tier's own)."""
    csv = tmp_path / "fleet.csv"
    csv.write_text("device_id,tier,memory_bytes\n" + "".join(
        f"{d},{tier},{memory}\n" for d, (tier, memory) in memory_bytes.items()))
    cfg = tiny_config(f"num_devices={len(memory_bytes)}", "rounds=2", f"fleet.csv={csv}", *overrides)
    run_experiment(cfg, tmp_path / "run", progress=False)
    return (pd.read_csv(tmp_path / "run" / "metrics.csv").set_index(["round", "device_id"]),
            pd.read_csv(tmp_path / "run" / "versions.csv"))


def test_full_updates_miss_the_lora_deadline_and_offline_devices_catch_up(tiny_config, tmp_path):
    cfg = tiny_config(*FLEET, *FAULTS, "seed=5")
    fleet = build_runtime(cfg).fleet
    dropped = {(r, d) for r in range(1, 4) for d in range(8) if fleet.faults.drops_out(cfg.seed, r, d)}
    assert dropped, "precondition: the seed drops some device out"

    run_experiment(cfg, tmp_path, progress=False)
    df = pd.read_csv(tmp_path / "metrics.csv")

    lora, nbiot = df[df["device_tier"] == "lora-sf7"], df[df["device_tier"] == "nbiot"]
    assert set(lora["status"]) <= {"deadline", "offline"} and (lora["status"] == "deadline").any()
    assert (lora[lora["status"] == "deadline"]["bytes_down"] > 0).all()  # the bytes that made it
    assert (nbiot["status"] == "applied").any()
    for r, d in dropped:
        assert df[(df["round"] == r) & (df["device_id"] == d)]["status"].item() == "offline"
    # a device offline in round r uploads its backlog (rounds r and r+1) when it is back
    backlog = [(r, d) for r, d in dropped if 2 <= r < 3 and (r + 1, d) not in dropped]
    assert backlog, "precondition: a device misses an upload round and comes back"
    for r, d in backlog:
        later = df[df["round"] == r + 1].set_index("device_id")["bytes_up"]
        regular = later.drop([x for (q, x) in dropped if q in (r, r + 1)], errors="ignore")
        assert later[d] > 1.5 * regular.median()
    # a device that missed a version gets a catch-up package (or the full model) from its own
    behind = nbiot[(nbiot["round"] > 1) & (nbiot["base_version"] < nbiot["round"] - 1)
                   & (nbiot["status"] != "offline")]
    assert len(behind) and set(behind["package_kind"]) <= {"catch-up", "full"} and behind["catch_up"].all()
    rejected = df[df["status"] == "rejected"]
    assert len(rejected) and rejected["reason"].str.contains("checksum mismatch|rebooted with the deployed").all()
    # no device ever holds weights the server did not issue
    assert set(df["model_hash"]) <= _issued(tmp_path)
    releases = pd.read_csv(tmp_path / "versions.csv").set_index("model_version")["model_hash"]
    current = df[df["up_to_date"]]
    assert len(current) and (current["model_hash"] == releases.loc[current["round"]].to_numpy()).all()
    # the simulated clock: the slowest upload (δD over LoRa), then the push until the deadline
    per_round = df.groupby("round")[["round_start_s", "round_sim_time_s"]].first()
    upload_s = df.groupby("round")["upload_s"].max()
    assert per_round["round_sim_time_s"].tolist() == pytest.approx((upload_s + 600.0).tolist())
    assert per_round["round_start_s"].tolist() == pytest.approx([0.0, *per_round["round_sim_time_s"].cumsum()[:-1]])
    assert (df[(df["round"] > 1) & (df["status"] != "offline")]["train_status"] == "uploaded").all()
    assert (tmp_path / "fleet.png").stat().st_size > 0


@pytest.mark.parametrize("budgets", [False, True], ids=["no-budgets", "budgets"])
def test_ka_on_a_memory_poor_device_is_no_memory_or_a_budgeted_share(tiny_config, tmp_path, budgets):
    df, versions = _run_csv_fleet(tiny_config, tmp_path,
                                  {0: ("lora-sf7", ""), 1: ("rpi-gateway", "20000"), 2: ("rpi-gateway", "")},
                                  "fleet.deadline_s=120.0", f"fleet.budgets={str(budgets).lower()}",
                                  "strategy.name=ka", "strategy.params={n=2, deploy=false}")
    # deploy=false: both rounds are KA factor packages (with the default, round 1 sends θ¹ dense)

    assert (df.xs(2, level="device_id")["status"] == "applied").all()
    if not budgets:  # a 1.3 kB KA package needs ~3 min on LoRa SF7; its SVD needs ~49 kB of memory
        assert df.loc[(1, 1), "status"] == "no_memory" and "needs" in df.loc[(1, 1), "reason"]
        assert df.loc[(1, 0), "status"] == "deadline"
        assert set(versions["kind"]) == {"initial", "release"}
    else:  # the largest top-|Δ| share that fits: in time on LoRa (a part of the update) ...
        row = df.loc[(1, 0)]
        assert (row["status"], row["package_kind"], bool(row["up_to_date"])) == ("applied", "budget", False)
        assert sorted(versions[versions["kind"] == "budget"]["round"]) == [1, 2]  # one partial state a round
        row = df.loc[(1, 1)]  # ... and, needing no SVD, the whole update as a sparse delta in memory
        assert (row["status"], row["package_kind"], bool(row["up_to_date"])) == ("applied", "budget", True)
    assert set(df["model_hash"]) <= set(versions["model_hash"])


def test_a_device_without_memory_for_local_training_sits_fl_rounds_out(tiny_config, tmp_path):
    df, _ = _run_csv_fleet(tiny_config, tmp_path,
                           {0: ("rpi-gateway", ""), 1: ("rpi-gateway", "30000"), 2: ("rpi-gateway", "")},
                           "strategy.name=fedavg", "strategy.params={}", "client.optimizer=sgd",
                           "client.momentum=0.0", "client.batch_size=32")

    poor = df.xs(1, level="device_id")
    assert (poor["train_status"] == "no_memory").all() and (poor["bytes_up"] == 0).all()
    assert (poor["status"] == "applied").all()  # it still receives the aggregate (inference fits)
    others = df.drop(1, level="device_id")
    assert (others["train_status"] == "trained").all() and (others["bytes_up"] > 0).all()
    assert (others["train_s"] > 0).all() and (poor["train_s"] == 0).all()


def test_devices_too_small_for_the_model_run_a_pruned_student(tiny_config, tmp_path):
    # the MLP with one hidden layer of 64 is 19.5 kB: a dense update needs ~59 kB; devices 0/1 have 40/20 kB
    df, versions = _run_csv_fleet(tiny_config, tmp_path,
                                  {0: ("rpi-gateway", "40000"), 1: ("rpi-gateway", "20000"), 2: ("rpi-gateway", "")},
                                  "model.hidden=[64]", "training.epochs=10", "fleet.students.enabled=true",
                                  "strategy.name=full", "strategy.params={init='warm'}")

    assert df.xs(0, level="device_id")["model_line"].unique().tolist() == ["student-40000"]
    assert df.xs(1, level="device_id")["model_line"].unique().tolist() == ["student-20000"]
    assert (df["status"] == "applied").all() and df["up_to_date"].all()
    assert (df["accuracy"] > 0.5).all()  # every device, students included, classifies after round 1
    params = versions.groupby("model_line")["parameters"].max()
    assert params["student-20000"] < params["student-40000"] < params["main"]
    assert 3 * 4 * params["student-40000"] + 4096 <= 40000 and 3 * 4 * params["student-20000"] + 4096 <= 20000
    first = df.loc[(1, 0)]
    assert (first["package_kind"], first["base_version"]) == ("full", 0)  # the whole student, from nothing
    assert set(df["model_hash"]) <= set(versions["model_hash"])
