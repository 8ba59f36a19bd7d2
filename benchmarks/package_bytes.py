"""Bytes of a DPU-style sparse update of the 784-512-512-10 MLP, by density k.

The delta: the MLP (edgeupdate.models.build_model("mlp"), seed 0) is retrained for one epoch of
Adam (lr 1e-3, 16 steps of batch 64) on 1024 synthetic MNIST-like images (class prototypes on a
20×20 centre with a zero border, like MNIST's dead pixels, plus noise). Per k, the k·I weights
with the largest global contribution δw² (thesis Eq. 5.8) keep their retrained value, the rest are
rewound to the base — a realistic, structured mask. For each k the script builds real packages
and reports their encoded size: fp32 (plain and zstd-packed), fp16, int8 (per tensor and per output
channel) values with Golomb positions, int8 with entropy-coded values and the smallest position
coding per tensor (``value_coding="entropy"``, ``coding="auto"``, with bits per value next to the
empirical entropy of the int8 symbols), bits per weight of each position coding over all I weights next to the Shannon bound H(k), and
zstd -19 of the same delta stored densely in fp32 (the "retrain then zstd" alternative).
Timings are the median of 3 runs of: building the package (incl. target hash), encode(),
decode() and apply() on the device side.

    python benchmarks/package_bytes.py [--markdown] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import zstandard

from edgeupdate.models.zoo import build_model
from edgeupdate.seeding import numpy_rng
from edgeupdate.training import TensorData, TrainConfig, train
from edgeupdate.updates import UpdatePackage, encode_positions, entropy_bound_bits, sparse_package

KS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.2)
CODINGS = ("bitmap", "varint", "golomb", "context")


def synthetic_mnist(n: int, seed: int) -> TensorData:
    """Ten noisy class prototypes on a 20×20 centre of a 28×28 image (border pixels always 0)."""
    rng = numpy_rng(seed, "bench", "data")
    protos = rng.normal(0, 1, size=(10, 20, 20)).clip(0, None)
    y = rng.integers(0, 10, size=n)
    x = np.zeros((n, 1, 28, 28), dtype=np.float32)
    x[:, 0, 4:24, 4:24] = (protos[y] + rng.normal(0, 0.5, size=(n, 20, 20))).clip(0, None)
    return TensorData(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))


def retrained_pair(seed: int = 0) -> tuple[dict, dict]:
    model = build_model("mlp", (1, 28, 28), 10, seed)
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train(model, synthetic_mnist(1024, seed), TrainConfig(epochs=1, batch_size=64, lr=1e-3), seed)
    return base, {k: v.detach().clone() for k, v in model.state_dict().items()}


def top_k_target(base: dict, full: dict, k: float) -> dict:
    """Keep the k·I weights with the largest δw² (global, over all tensors); rewind the rest."""
    scores = torch.cat([(full[n] - base[n]).reshape(-1).double().pow(2) for n in base])
    keep = int(round(k * scores.numel()))
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[torch.topk(scores, keep, sorted=False).indices] = True
    out, start = {}, 0
    for n, b in base.items():
        m = mask[start:start + b.numel()].reshape(b.shape)
        out[n] = torch.where(m, full[n], b)
        start += b.numel()
    return out


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(k: float, base: dict, full: dict, repeats: int) -> dict:
    target = top_k_target(base, full, k)
    weights = sum(t.numel() for t in base.values())
    row: dict[str, float] = {"k": k}
    pkgs = {p: sparse_package(base, target, method="dpu", target_version=1, base_version=0, precision=p)
            for p in ("fp32", "fp16", "int8-channel")}
    for p, pkg in pkgs.items():
        row[f"{p}_bytes"] = len(pkg.encode())
    row["int8_bytes"] = len(sparse_package(base, target, method="dpu", target_version=1, base_version=0,
                                           precision="int8").encode())
    row["fp32z_bytes"] = len(sparse_package(base, target, method="dpu", target_version=1, base_version=0,
                                            value_compression="zstd").encode())
    coded = sparse_package(base, target, method="dpu", target_version=1, base_version=0, precision="int8",
                           coding="auto", value_coding="entropy")
    row["int8e_bytes"] = len(coded.encode())
    values = coded.describe()["int8_values"]
    row["val_bpv"], row["val_entropy"] = values["bits_per_value"], values["empirical_entropy_bits"]
    changed = sum(int(t.count) for t in pkgs["fp32"].header.tensors)
    row["changed"] = changed
    positions = {n: np.flatnonzero((base[n] != target[n]).reshape(-1).numpy()) for n in base}
    best_bytes = 0
    for c in CODINGS:
        nbytes = [len(encode_positions(positions[n], base[n].numel(), c, tuple(base[n].shape))[1]) for n in base]
        row[f"{c}_bpw"] = 8 * sum(nbytes) / weights
    best_bytes = sum(len(encode_positions(positions[n], base[n].numel(), "auto", tuple(base[n].shape))[1]) for n in base)
    row["best_bpw"] = 8 * best_bytes / weights
    row["bound_bpw"] = entropy_bound_bits(changed / weights)
    row["ratio"] = row["best_bpw"] / row["bound_bpw"]
    delta = torch.cat([(target[n] - base[n]).reshape(-1) for n in base]).numpy().astype("<f4").tobytes()
    row["zstd_bytes"] = len(zstandard.ZstdCompressor(level=19).compress(delta))
    pkg = pkgs["fp32"]
    data = pkg.encode()
    row["build_ms"] = _median_ms(lambda: sparse_package(base, target, method="dpu", target_version=1, base_version=0), repeats)
    row["encode_ms"] = _median_ms(pkg.encode, repeats)
    row["decode_ms"] = _median_ms(lambda: UpdatePackage.decode(data), repeats)
    decoded = UpdatePackage.decode(data)
    row["apply_ms"] = _median_ms(lambda: decoded.apply(base), repeats)
    q = pkgs["int8-channel"].quantisation
    row["int8_rel_rms"] = max((e.rel_rms for e in q.values()), default=0.0)
    return row


COLUMNS = [
    ("k", "k", "{:g}"), ("changed", "changed", "{:d}"),
    ("fp32_bytes", "fp32 B", "{:d}"), ("fp32z_bytes", "fp32+zstd B", "{:d}"), ("fp16_bytes", "fp16 B", "{:d}"),
    ("int8_bytes", "int8 B", "{:d}"), ("int8-channel_bytes", "int8-ch B", "{:d}"),
    ("int8e_bytes", "int8 entropy+auto B", "{:d}"), ("val_bpv", "int8 b/value", "{:.3f}"),
    ("val_entropy", "symbol H b/value", "{:.3f}"),
    ("bitmap_bpw", "bitmap b/w", "{:.4f}"), ("varint_bpw", "varint b/w", "{:.4f}"), ("golomb_bpw", "golomb b/w", "{:.4f}"),
    ("context_bpw", "context b/w", "{:.4f}"),
    ("best_bpw", "best b/w", "{:.4f}"), ("bound_bpw", "H(k) b/w", "{:.4f}"), ("ratio", "best/H", "{:.3f}"),
    ("zstd_bytes", "zstd-19 fp32 Δ B", "{:d}"), ("int8_rel_rms", "int8-ch rel err", "{:.4f}"),
    ("build_ms", "build ms", "{:.1f}"), ("encode_ms", "encode ms", "{:.1f}"),
    ("decode_ms", "decode ms", "{:.1f}"), ("apply_ms", "apply ms", "{:.1f}"),
]


def render(rows: list[dict], markdown: bool) -> str:
    cells = [[fmt.format(int(r[key]) if fmt == "{:d}" else r[key]) for key, _, fmt in COLUMNS] for r in rows]
    heads = [h for _, h, _ in COLUMNS]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---:" for _ in heads) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(c, widths)) for c in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repetitions (median reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base, full = retrained_pair()
    weights = sum(t.numel() for t in base.values())
    rows = [measure(k, base, full, args.repeats) for k in KS]
    dense = 4 * weights
    print(f"MLP 784-512-512-10: I = {weights} weights, full fp32 model = {dense} B; "
          f"positions: bits per weight over all I; best = smallest coding per tensor; values with Golomb positions; "
          f"fp32+zstd = lossless byte-plane shuffle + zstd-19 of the values; int8 = one scale per tensor, "
          f"int8 entropy+auto = the same symbols entropy-coded, positions by the smallest coding incl. context; "
          f"int8-ch = one per output channel (rel err = worst per-tensor rms error / rms delta); timings for fp32")
    print(render(rows, args.markdown))
    full_delta = torch.cat([(full[n] - base[n]).reshape(-1) for n in base]).numpy().astype("<f4").tobytes()
    print(f"zstd -19 of the full (unmasked) retrained fp32 delta: {len(zstandard.ZstdCompressor(level=19).compress(full_delta))} B")


if __name__ == "__main__":
    main()
