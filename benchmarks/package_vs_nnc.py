"""Our update packages next to MPEG NNC (ISO/IEC 15938-17, Fraunhofer HHI's NNCodec 2.1.3).

The updates: an MLP 784-512-512-10 is trained on D¹ (1000 MNIST images), then updated once on
D² = D¹ ∪ δD² (+1000 images): DPU (combined metric) at k ∈ {0.001, 0.005, 0.05} gives three sparse
deltas, full updating (all weights, same epochs) one dense delta. Each delta is coded

* by our package layer: ``sparse_package`` with int8 values, as today (``raw`` values, Golomb
  positions) and with ``value_coding="entropy"`` + ``coding="auto"`` (context positions);
* by NNCodec in its differential mode (``compress_differences=True``, fresh base state), on the delta
  tensors, dependent quantisation off (it makes unchanged weights non-zero), with a per-tensor QP
  whose step is at most our int8 step. From there its QP is raised while its reconstruction error
  stays at or below ours (max abs *and* RMSE), with and without row skipping; the smallest
  bitstream is reported. So NNC is shown at its best at equal or lower error than ours. Its QPs
  are 2^(1/4) apart, so its error rarely equals ours: the last column interpolates its bytes
  (log-linear in RMSE) to exactly our RMSE, between that QP and the next coarser one.

Errors are of the device's reconstruction (base + decoded update, float32) against the exact
target, over all weights. NNCodec pins numpy < 2, so it runs in its own virtualenv (``make peers``
builds ``build/peers/nnc``) as a worker process of this script; its dataset-pipeline imports
(torch, torchvision, cv2, ...) are never used for coding numpy tensors and are stubbed there.

    make peers
    EDGEUPDATE_DATA=path/to/data PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/package_vs_nnc.py [--markdown]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KS = (0.001, 0.005, 0.05)
QP_OFFSETS = (-2, -1, 0, 1, 2, 3, 4)
QP_DENSITY = 2
DEFAULT_PEER = "build/peers/nnc/bin/python"


# ------------------------------------------------------------------ NNC worker (peer venv, numpy 1.x)

def _stub_pipeline_imports() -> None:
    """NNCodec imports torch/torchvision/cv2/... for its dataset pipelines only: stand-ins that accept anything."""
    import importlib.abc
    import importlib.machinery
    import types

    class _Meta(type):
        def __getattr__(cls, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Any

    class _Any(metaclass=_Meta):
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __call__(self, *args, **kwargs):
            return _Any()

        def __getattr__(self, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Any

    stubbed = ("torch", "torchvision", "cv2", "torchmetrics", "ptflops", "sklearn", "pandas", "PIL", "click")

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            return importlib.machinery.ModuleSpec(name, self, is_package=True) if name.split(".")[0] in stubbed else None

        def create_module(self, spec):
            module = types.ModuleType(spec.name)
            module.__path__ = []
            module.__getattr__ = lambda attr: _Any
            return module

        def exec_module(self, module) -> None:
            pass

    sys.meta_path.insert(0, _Finder())


def nnc_worker(inp: str, out: str) -> None:
    """Code every (row, trial) of ``inp`` with NNCodec; write reconstructed deltas and bitstream sizes."""
    _stub_pipeline_imports()
    from nncodec import nnc

    data = np.load(inp)
    plan = json.loads(str(data["plan"]))
    recon, sizes = {}, {}
    for row, spec in plan.items():
        delta = {name: data[f"{row}|{name}"] for name in spec["tensors"]}
        for t, trial in enumerate(spec["trials"]):
            def base_state() -> dict:
                return {"parameters": {}, "put_node_depth": {}, "device_id": 0, "parameter_id": {}}
            bs = nnc.compress(delta, bitstream_path=None, qp_per_tensor={k: np.int32(v) for k, v in trial["qp"].items()},
                              qp_density=QP_DENSITY, use_dq=False, row_skipping=trial["row_skipping"],
                              compress_differences=True, approx_param_base=base_state(), return_bitstream=True,
                              verbose=False)
            dec = nnc.decompress(bs, approx_param_base=base_state(), verbose=False)
            sizes[f"{row}|{t}"] = len(bs)
            for name in spec["tensors"]:
                recon[f"{row}|{t}|{name}"] = np.asarray(dec[name], dtype=np.float32).reshape(delta[name].shape)
    np.savez(out, sizes=json.dumps(sizes), **recon)


# ------------------------------------------------------------------ main side (project venv)

def _updates(data_dir: str | None, seed: int, epochs: int) -> tuple[dict, dict[str, dict]]:
    """(base, {row label: target}) from one short retraining on MNIST."""
    from dpu_single_round import load_mnist, split_rounds

    from edgeupdate.algorithms.partial import PartialUpdateConfig, first_step, partial_update
    from edgeupdate.datasets.paths import resolve_data_dir
    from edgeupdate.models.zoo import build_model
    from edgeupdate.seeding import derive_seed
    from edgeupdate.training import TrainConfig, train

    loaded = load_mnist(data_dir or resolve_data_dir())
    if loaded is None:
        raise SystemExit("MNIST not found: set --data-dir or $EDGEUPDATE_DATA to a folder holding mnist/*-ubyte.gz")
    d1, d2, val, _ = split_rounds(*loaded, seed, 1000, 1000)
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.005, optimizer="adam", lr_schedule="step",
                      lr_step_epochs=max(1, epochs // 3), lr_gamma=0.1)
    model = build_model("mlp", (1, 28, 28), 10, derive_seed(seed, "nnc", "init"))
    train(model, d1, cfg, derive_seed(seed, "nnc", "initial"), validation=val)
    base = {n: t.detach().clone() for n, t in model.state_dict().items()}
    shared = first_step(model, base, d2, cfg, derive_seed(seed, "nnc", "dpu"))
    targets = {"full": {n: t.detach().clone() for n, t in shared.full_state.items()}}
    for k in KS:
        result = partial_update(model, base, d2, cfg, PartialUpdateConfig(k=k, selector="combined"),
                                derive_seed(seed, "nnc", "dpu"), validation=val, first=shared)
        targets[f"dpu k={k:g}"] = {n: t.detach().clone() for n, t in result.state.items()}
    return base, targets


def _errors(base: dict, target: dict, recon: dict) -> tuple[float, float]:
    import torch
    diff = torch.cat([(recon[n].float() - target[n].float()).reshape(-1).double() for n in target])
    return float(diff.abs().max()), float(diff.pow(2).mean().sqrt())


def _ours(base: dict, target: dict, value_coding: str, coding: str) -> dict:
    from edgeupdate.updates import UpdatePackage, sparse_package

    pkg = sparse_package(base, target, method="dpu", target_version=1, base_version=0, precision="int8",
                         coding=coding, value_coding=value_coding)
    data = pkg.encode()
    recon = UpdatePackage.decode(data).apply(base)
    steps = {}
    for info, blob in zip(pkg.header.tensors, pkg.blobs):
        steps[info.name] = float(np.frombuffer(blob.values[:4], dtype="<f4")[0])
    mx, rmse = _errors(base, target, recon)
    return {"bytes": len(data), "max_abs": mx, "rmse": rmse, "steps": steps}


def _plan(base: dict, target: dict, steps: dict[str, float]) -> dict:
    qps = {n: _qp_from_step(s) for n, s in steps.items() if s > 0}
    floor = min(qps.values()) if qps else -60
    trials = []
    for off in QP_OFFSETS:
        for rs in (False, True):
            trials.append({"qp": {n: qps.get(n, floor) + off for n in base}, "row_skipping": rs, "offset": off})
    return {"tensors": list(base), "trials": trials}


def _qp_from_step(step: float) -> int:
    """The largest NNC QP (``qp_density`` 2) whose step is at most ``step`` (NNC's own formula)."""
    k = 1 << QP_DENSITY
    base_qp = np.floor(np.log2(step)) * k
    return int(np.floor(base_qp + (step * k) / 2 ** (base_qp / k) - k))


def run(args: argparse.Namespace) -> list[dict]:
    import torch
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    base, targets = _updates(args.data_dir, args.seed, args.epochs)
    rows, plan, arrays = [], {}, {}
    for label, target in targets.items():
        raw = _ours(base, target, "raw", "golomb")
        ent = _ours(base, target, "entropy", "auto")
        rows.append({"update": label, "changed": sum(int((base[n] != target[n]).sum()) for n in base),
                     "raw": raw, "entropy": ent})
        plan[label] = _plan(base, target, ent["steps"])
        for n in base:
            arrays[f"{label}|{n}"] = (target[n].double() - base[n].double()).float().numpy()
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, plan=json.dumps(plan), **arrays)
        subprocess.run([args.peer, __file__, "--nnc-worker", str(inp), str(out)], check=True)
        res = np.load(out)
        sizes = json.loads(str(res["sizes"]))
        for row in rows:
            label, cands = row["update"], []
            for t, trial in enumerate(plan[label]["trials"]):
                recon = {n: base[n] + torch.from_numpy(res[f"{label}|{t}|{n}"]) for n in base}
                mx, rmse = _errors(base, targets[label], recon)
                cands.append({"bytes": sizes[f"{label}|{t}"], "max_abs": mx, "rmse": rmse, "offset": trial["offset"],
                              "row_skipping": trial["row_skipping"]})
            ours = row["entropy"]
            lower = [c for c in cands if c["max_abs"] <= ours["max_abs"] and c["rmse"] <= ours["rmse"]]
            row["nnc"] = min(lower, key=lambda c: c["bytes"]) if lower else None
            row["nnc_equal"] = _equal_error_bytes(row["nnc"], cands, ours["rmse"])
    print(f"(updates, coding and NNC trials: {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return rows


def _equal_error_bytes(lower: dict | None, cands: list[dict], rmse: float) -> float | None:
    """NNC's bytes at exactly our RMSE: log-linear between its trial at or below our error and the
    next coarser QP (same row-skipping setting), whose error is above ours."""
    if lower is None:
        return None
    up = [c for c in cands if c["row_skipping"] == lower["row_skipping"] and c["offset"] == lower["offset"] + 1]
    if not up or up[0]["rmse"] <= lower["rmse"]:
        return None
    frac = (np.log(rmse) - np.log(lower["rmse"])) / (np.log(up[0]["rmse"]) - np.log(lower["rmse"]))
    return float(lower["bytes"] + frac * (up[0]["bytes"] - lower["bytes"]))




def render(rows: list[dict], markdown: bool) -> str:
    heads = ["update", "changed", "ours today B", "ours B", "ours max abs", "ours RMSE",
             "NNC B", "NNC max abs", "NNC RMSE", "NNC QP offset", "ours / NNC", "NNC B at our RMSE", "ours / that"]
    cells = []
    for r in rows:
        o, n, eq = r["entropy"], r["nnc"], r["nnc_equal"]
        nnc = [str(n["bytes"]), f"{n['max_abs']:.3g}", f"{n['rmse']:.3g}", f"{n['offset']:+d}{' rs' if n['row_skipping'] else ''}",
               f"{o['bytes'] / n['bytes']:.3f}"] if n else ["—"] * 5
        nnc += [f"{eq:.0f}", f"{o['bytes'] / eq:.3f}"] if eq else ["—", "—"]
        cells.append([r["update"], str(r["changed"]), str(r["raw"]["bytes"]), str(o["bytes"]),
                      f"{o['max_abs']:.3g}", f"{o['rmse']:.3g}", *nnc])
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|---|" + "|".join("---:" for _ in heads[1:]) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    return "\n".join(["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
                     + ["  ".join(v.rjust(w) for v, w in zip(c, widths)) for c in cells])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    parser.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: $EDGEUPDATE_DATA)")
    parser.add_argument("--peer", default=DEFAULT_PEER, help="python of the NNCodec virtualenv (make peers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each training step")
    parser.add_argument("--nnc-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nnc_worker:
        nnc_worker(*args.nnc_worker)
        return
    if not Path(args.peer).exists():
        raise SystemExit(f"no NNCodec virtualenv at {args.peer}: run `make peers` first")
    rows = run(args)
    print("MLP 784-512-512-10 on MNIST, one short retraining; bytes of the whole update (ours: the package "
          "incl. header and hashes; NNC: its bitstream); errors of base + decoded update vs the exact target, "
          "over all weights. ours today = int8 raw values + Golomb positions; ours = int8 entropy values + auto "
          "positions; NNC at the coarsest QP whose max abs and RMSE are both ≤ ours (rs = row skipping), and "
          "its bytes interpolated (log-linear in RMSE) to exactly our RMSE between that QP and the next coarser one.")
    print(render(rows, args.markdown))


if __name__ == "__main__":
    main()
