"""``simulation.save_packages`` without Ray: content-addressed files, packages.csv rows appended per
round, saved models that ``package apply`` replays onto, resume, and what a push records."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord

from edgeupdate.cli import main
from edgeupdate.runtime import build_runtime
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.strategies.base import EdgeStrategy, NoParams
from edgeupdate.strategies.resolve import strategy_class, validate_strategy
from edgeupdate.strategies.saved_packages import COLUMNS, PackageSaver, package_header
from edgeupdate.strategies.versions import ModelVersion, VersionStore
from edgeupdate.updates import load_state_file, sparse_package, state_hash


def _state(offset: float) -> dict[str, torch.Tensor]:
    return {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4) + offset, "b": torch.full((3,), offset)}


def _release(store: VersionStore, round_: int, offset: float) -> bytes:
    """Version ``round_``: a sparse package from the latest (the last weight changed by ``offset``)."""
    base = store.latest
    target = {k: v.clone() for k, v in base.weights.items()}
    target["w"][-1, -1] += offset
    pkg = sparse_package(base.weights, target, method="dpu", target_version=round_, base_version=base.number)
    weights = pkg.apply(base.weights)
    store.release(round_, ModelVersion(round_, weights, state_hash(weights)))
    return pkg.encode()


@pytest.fixture
def store() -> VersionStore:
    s0 = _state(0.0)
    store = VersionStore(ModelVersion(0, s0, state_hash(s0), kind="initial"))
    for dev in range(3):
        store.add_device(dev, 10 + dev, None)
    return store


def _csv(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "packages.csv", keep_default_na=False)


def test_each_distinct_package_is_written_once_and_every_transfer_gets_a_row(store, tmp_path):
    saver = PackageSaver(tmp_path)
    payload = _release(store, 1, 1.5)
    views = store.in_order()
    saver.record(1, "push", views[0], payload, kind="release")
    saver.record(1, "push", views[1], bytes(bytearray(payload)), kind="release", bytes_down=7, transfer="cut")  # equal bytes, other object

    saver.end_round(store)

    digest = hashlib.sha256(payload).hexdigest()
    assert sorted(p.name for p in (tmp_path / "packages").iterdir()) == [f"{digest}.pkg"]
    assert (tmp_path / "packages" / f"{digest}.pkg").read_bytes() == payload
    rows = _csv(tmp_path)
    assert tuple(rows.columns) == COLUMNS
    assert rows[["device_id", "transfer", "bytes_down"]].values.tolist() == [[0, "whole", len(payload)], [1, "cut", 7]]
    assert (rows["file"] == f"packages/{digest}.pkg").all() and (rows["bytes"] == len(payload)).all()
    assert (rows["base_version"] == 0).all() and (rows["target_version"] == 1).all()
    assert (rows["base_hash"] == store.log[0]["model_hash"]).all()
    assert (rows["target_hash"] == store.latest.hash).all() and (rows["attack"] == "none").all()
    for column, state in (("base_model", store.log[0]), ("target_model", store.log[1])):
        path = tmp_path / rows[column].iloc[0]
        assert path.name == f"v{state['model_version']}-{state['model_hash'][:16]}.pt"
        assert state_hash(load_state_file(path)) == state["model_hash"]


def test_a_saved_package_replays_onto_its_saved_base_and_a_damaged_copy_is_refused(store, tmp_path, capsys):
    saver = PackageSaver(tmp_path)
    saver.record(1, "push", store.in_order()[0], _release(store, 1, 2.0), kind="release")
    saver.end_round(store)
    row = _csv(tmp_path).iloc[0]
    out = tmp_path / "replayed.pt"

    assert main(["package", "apply", "--model", str(tmp_path / row["base_model"]),
                 "--package", str(tmp_path / row["file"]), "--out", str(out)]) == 0
    assert state_hash(load_state_file(out)) == row["target_hash"]

    data = (tmp_path / row["file"]).read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    for name, damaged in (("flipped.pkg", bytes(flipped)), ("truncated.pkg", data[:-5])):
        (tmp_path / name).write_bytes(damaged)
        capsys.readouterr()
        code = main(["package", "apply", "--model", str(tmp_path / row["base_model"]),
                     "--package", str(tmp_path / name), "--out", str(tmp_path / f"{name}.pt")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), (name, err)
        assert not (tmp_path / f"{name}.pt").exists()


def test_rows_are_appended_each_round_and_a_resume_drops_the_rounds_it_redoes(store, tmp_path):
    saver = PackageSaver(tmp_path)
    for round_, offset in ((1, 1.0), (2, 3.0)):
        payload = _release(store, round_, offset)
        for view in store.in_order():
            saver.record(round_, "push", view, payload, kind="release")
        saver.end_round(store)
        assert len(_csv(tmp_path)) == 3 * round_  # on disk at the end of each round
        for view in store.in_order():
            view.version, view.hash = store.latest.number, store.latest.hash

    assert len(list((tmp_path / "models").iterdir())) == 3  # v0, v1, v2
    assert _csv(tmp_path).groupby("round")["base_version"].first().tolist() == [0, 1]

    resumed = PackageSaver(tmp_path, resume_after=1)
    assert _csv(tmp_path)["round"].tolist() == [1, 1, 1] and len(list((tmp_path / "packages").iterdir())) == 2
    resumed.record(2, "push", store.in_order()[0], _release(store, 2, 3.0), kind="release")
    resumed.end_round(store)
    again = _csv(tmp_path)
    assert again["round"].tolist() == [1, 1, 1, 2] and again["target_model"].iloc[-1].startswith("models/v2-")

    PackageSaver(tmp_path)  # a new run in the same directory (--overwrite) starts empty
    assert not (tmp_path / "packages.csv").exists() and not any((tmp_path / "packages").iterdir())
    assert not any((tmp_path / "models").iterdir())


def test_the_header_names_the_target_and_a_train_phase_row_infers_its_kind(store, tmp_path):
    saver = PackageSaver(tmp_path)
    payload = _release(store, 1, 0.5)
    saver.record(1, "train", store.in_order()[2], payload)
    saver.end_round(store)

    header = package_header(payload)
    row = _csv(tmp_path).iloc[0]
    assert (header.target_version, header.target_hash) == (1, store.latest.hash)
    assert (row["phase"], row["kind"], row["device_id"]) == ("train", "catch-up", 2)


def _strategy(tiny_config, tmp_path, tiers: list[str], *overrides: str) -> EdgeStrategy:
    csv = tmp_path / "fleet.csv"
    csv.write_text("device_id,tier\n" + "".join(f"{i},{t}\n" for i, t in enumerate(tiers)))
    runtime = build_runtime(tiny_config(f"num_devices={len(tiers)}", f"fleet.csv={csv}", "model.hidden=[8]",
                                        *overrides))
    strategy = EdgeStrategy(runtime, NoParams(), MetricsCollector(), {d: 10 + d for d in range(len(tiers))})
    strategy.saver = PackageSaver(tmp_path / "run")
    target = {k: v + 0.5 for k, v in runtime.initial_state.items()}
    strategy.release = strategy.release_package(1, strategy.latest, target)
    weights = strategy.release.apply(strategy.latest.weights)
    strategy.store.release(1, ModelVersion(1, weights, strategy.release.header.target_hash))
    strategy.push = strategy._push_plan(1, 0.0)
    return strategy


def test_a_push_records_the_servers_package_a_cut_transfer_and_the_attackers_bytes(tiny_config, tmp_path):
    strategy = _strategy(tiny_config, tmp_path, ["rpi-gateway", "lora-sf7"], "fleet.deadline_s=60.0",
                         "package.signing=hmac", "fleet.faults.forge_prob=1.0")
    sent = {}
    for view in strategy.store.in_order():
        push, fields = strategy.push.for_device(view)
        sent[view.device_id] = (push, fields)
    strategy.saver.end_round(strategy.store)

    rows = _csv(tmp_path / "run").set_index("device_id")
    genuine = strategy.push.package_for(strategy.store.views[0]).payload
    assert (rows["file"] == f"packages/{hashlib.sha256(genuine).hexdigest()}.pkg").all()
    forged, cut = rows.loc[0], rows.loc[1]
    assert sent[0][0].attack == forged["attack"] == "forge"
    assert (tmp_path / "run" / forged["attack_file"]).read_bytes() == sent[0][1]["package"] != genuine
    assert sent[1][0].outcome.status == "deadline" and cut["attack"] == "none" and cut["attack_file"] == ""
    assert cut["transfer"] == "cut" and cut["bytes_down"] == sent[1][1]["payload_len"] < cut["bytes"]


def test_offline_devices_and_withheld_packages_get_no_row(tiny_config, tmp_path):
    strategy = _strategy(tiny_config, tmp_path, ["rpi-gateway"] * 2, "fleet.faults.dropout_prob=1.0")
    for view in strategy.store.in_order():
        push, fields = strategy.push.for_device(view)
        assert push.outcome.status == "offline" and fields["package"] == b""
    strategy.saver.end_round(strategy.store)

    assert _csv(tmp_path / "run").empty and not any((tmp_path / "run" / "packages").iterdir())


def test_a_catch_up_sent_before_local_training_is_a_train_row(tiny_config, tmp_path, server_task_identity):
    runtime = build_runtime(tiny_config("strategy.name='fedavg'", "strategy.params={}", "model.hidden=[8]"))
    strategy = strategy_class("fedavg")(runtime, validate_strategy("fedavg", {}), MetricsCollector(),
                                        {d: 10 + d for d in range(3)})
    strategy.saver = PackageSaver(tmp_path)
    v1 = {k: v + 0.25 for k, v in runtime.initial_state.items()}
    strategy.store.release(1, ModelVersion(1, v1, state_hash(v1)))  # every device still holds version 0

    strategy.configure_train(2, ArrayRecord(v1), ConfigRecord(), None)
    strategy.saver.end_round(strategy.store)

    rows = _csv(tmp_path)
    assert set(rows["device_id"]) == strategy.sampled(2) and set(rows["phase"]) == {"train"}
    assert (rows["base_version"] == 0).all() and (rows["target_version"] == 1).all()
    row = rows.iloc[0]
    assert main(["package", "apply", "--model", str(tmp_path / row["base_model"]),
                 "--package", str(tmp_path / row["file"]), "--out", str(tmp_path / "v1.pt")]) == 0
    assert state_hash(load_state_file(tmp_path / "v1.pt")) == strategy.latest.hash == row["target_hash"]
