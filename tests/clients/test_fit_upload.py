"""Device-side FL training and upload encodings (clients/fit.py, clients/upload*.py)."""

from __future__ import annotations

import math

import pytest
import torch
from flwr.app import RecordDict

from edgeupdate.clients.fit import fit
from edgeupdate.runtime import build_runtime
from edgeupdate.clients.upload import RESIDUAL_KEY, UploadError, UploadSpec
from edgeupdate.clients.upload_structured import structure_seed
from edgeupdate.training import evaluate
from edgeupdate.updates import UpdatePackage, seeded_mask

DEVICE = 1


@pytest.fixture(scope="module")
def runtime():
    from tests.conftest import REPO
    from edgeupdate.configs import load_config

    cfg = load_config(REPO / "configs" / "quickstart.toml",
                      ["rounds=2", "num_devices=3", "model.hidden=[16]", "stream.initial_samples=150",
                       "stream.samples_per_round=60", "client.epochs=1", "client.lr=0.1", "strategy.name='fedavg'",
                       "strategy.params={}"])
    return build_runtime(cfg)


def _upload(runtime, spec: UploadSpec, round_: int = 1, store: RecordDict | None = None, base=None, **task):
    base = runtime.initial_state if base is None else base
    payload, metrics = fit(runtime, base, 0, DEVICE, round_, {**spec.to_task(), **task}, store)
    return payload, metrics, UpdatePackage.decode(payload).apply(base)


def _delta(a, b):
    return {k: a[k].double() - b[k].double() for k in a}


def _l2(tensors) -> float:
    return math.sqrt(sum(float(t.pow(2).sum()) for t in tensors.values()))


def test_topk_error_feedback_carries_the_residual_between_rounds(runtime):
    # Prepare: the exact trained weights of both rounds (fp32 dense uploads are the trained model)
    w0 = runtime.initial_state
    spec = UploadSpec(kind="topk", fraction=0.05)
    _, _, trained1 = _upload(runtime, UploadSpec(), round_=1)
    _, _, trained2 = _upload(runtime, UploadSpec(), round_=2)
    store = RecordDict()

    # Execute: two rounds of top-k uploads sharing the device's state store
    _, m1, sent1 = _upload(runtime, spec, round_=1, store=store)
    e1 = {k: v.double() for k, v in store[RESIDUAL_KEY].to_torch_state_dict().items()}
    _, m2, sent2 = _upload(runtime, spec, round_=2, store=store)
    e2 = {k: v.double() for k, v in store[RESIDUAL_KEY].to_torch_state_dict().items()}

    # Assert: sent + kept residual = trained update (+ the previous residual in round 2)
    d1, s1 = _delta(trained1, w0), _delta(sent1, w0)
    d2, s2 = _delta(trained2, w0), _delta(sent2, w0)
    for k in w0:
        torch.testing.assert_close(s1[k] + e1[k], d1[k], atol=1e-6, rtol=0)
        torch.testing.assert_close(s2[k] + e2[k], d2[k] + e1[k], atol=1e-6, rtol=0)
    assert _l2(e1) > 0 and m1["residual_l2"] == pytest.approx(_l2(e1), rel=1e-5)
    assert m2["residual_l2"] == pytest.approx(_l2(e2), rel=1e-5)
    # about 5 % of each tensor is sent: at most ⌈0.05·n⌉ entries changed per tensor
    for k, v in w0.items():
        changed = int((sent1[k] != v).sum())
        assert 0 < changed <= math.ceil(0.05 * v.numel())


def test_topk_payload_is_its_encoded_package_and_much_smaller_than_dense(runtime):
    dense, _, _ = _upload(runtime, UploadSpec())
    topk, _, _ = _upload(runtime, UploadSpec(kind="topk", fraction=0.05), store=RecordDict())
    pkg = UpdatePackage.decode(topk)
    assert len(topk) == pkg.byte_breakdown()["total_bytes"] == len(pkg.encode())
    assert pkg.byte_breakdown()["positions_bytes"] > 0
    assert len(topk) < 0.2 * len(dense)


def test_without_error_feedback_nothing_is_kept(runtime):
    store = RecordDict()
    _, metrics, _ = _upload(runtime, UploadSpec(kind="topk", error_feedback=False), store=store)
    assert RESIDUAL_KEY not in store and "residual_l2" not in metrics


def test_error_feedback_needs_a_state_store(runtime):
    with pytest.raises(UploadError, match="state store"):
        _upload(runtime, UploadSpec(kind="topk"), store=None)


@pytest.mark.parametrize(("precision", "bytes_per_value"), [("fp16", 2), ("int8", 1)])
def test_quantised_dense_upload_sends_the_update_at_that_precision(runtime, precision, bytes_per_value):
    # Prepare
    w0 = runtime.initial_state
    numel = sum(v.numel() for v in w0.values())
    _, _, trained = _upload(runtime, UploadSpec())
    store = RecordDict()
    # Execute
    payload, _, sent = _upload(runtime, UploadSpec(precision=precision), store=store)
    # Assert: values only (no positions), the update quantised, the error kept as residual
    b = UpdatePackage.decode(payload).byte_breakdown()
    assert b["positions_bytes"] == 0
    assert numel * bytes_per_value <= b["values_bytes"] <= numel * bytes_per_value + 4 * len(w0)
    e = {k: v.double() for k, v in store[RESIDUAL_KEY].to_torch_state_dict().items()}
    update = _delta(trained, w0)
    for k in w0:
        torch.testing.assert_close(_delta(sent, w0)[k] + e[k], update[k], atol=1e-6, rtol=0)
        assert float(e[k].abs().max()) <= float(update[k].abs().max()) / 100  # quantisation-sized


def test_random_mask_update_touches_only_the_seeded_mask_and_sends_no_positions(runtime):
    w0 = runtime.initial_state
    payload, _, sent = _upload(runtime, UploadSpec(kind="rm", p=0.2))
    seed = structure_seed(runtime.cfg.seed, 1, DEVICE)
    for k, v in w0.items():
        changed = sent[k] != v
        mask = seeded_mask(seed, k, v.shape, 0.2)
        assert not bool((changed & ~mask).any()), k
        assert bool(changed.any()), k
    assert UpdatePackage.decode(payload).byte_breakdown()["positions_bytes"] == 0


def test_low_rank_update_has_rank_r_and_sends_only_l(runtime):
    w0 = runtime.initial_state
    payload, _, sent = _upload(runtime, UploadSpec(kind="lru", rank=2))
    for k, v in w0.items():
        if v.dim() == 2:
            delta = (sent[k].double() - v.double())
            assert torch.linalg.matrix_rank(delta, rtol=1e-4).item() == 2, k  # rounding noise aside
    pkg = UpdatePackage.decode(payload)
    l_values = sum(v.shape[0] * 2 for v in w0.values() if v.dim() == 2)
    other_values = sum(v.numel() for v in w0.values() if v.dim() != 2)
    b = pkg.byte_breakdown()
    assert b["factor_bytes"] == 4 * l_values and b["dense_bytes"] == 4 * other_values


def test_proximal_term_keeps_the_device_close_to_the_global_model(runtime):
    w0 = runtime.initial_state
    _, _, free = _upload(runtime, UploadSpec())
    _, _, same = _upload(runtime, UploadSpec(), **{"proximal-mu": 0.0})
    _, _, held = _upload(runtime, UploadSpec(), **{"proximal-mu": 5.0})
    assert all(torch.equal(same[k], free[k]) for k in w0)
    assert _l2(_delta(held, w0)) < 0.85 * _l2(_delta(free, w0))


def test_device_reports_the_global_models_loss_before_training_when_the_task_asks(runtime):
    data = runtime.train_subset(runtime.layout.collected_indices(DEVICE, 1))
    model = runtime.new_model()
    model.load_state_dict(runtime.initial_state)
    _, metrics, trained = _upload(runtime, UploadSpec(), **{"loss-before": True})
    assert metrics["loss_before"] == pytest.approx(evaluate(model, data)[0])
    assert metrics["num-examples"] == len(data)
    _, unasked, same = _upload(runtime, UploadSpec())  # FedAvg and the others: no extra pass
    assert "loss_before" not in unasked and unasked["train_loss"] == metrics["train_loss"]
    assert all(torch.equal(same[k], trained[k]) for k in trained)


def test_bad_upload_spec_is_a_one_line_error():
    with pytest.raises(UploadError, match="upload.kind must be one of"):
        UploadSpec.from_task({"upload-kind": "zip"})
    with pytest.raises(UploadError, match="upload.fraction must be > 0"):
        UploadSpec(kind="topk", fraction=0.0)
