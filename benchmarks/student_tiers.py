"""Tiered students on MNIST (Zhao et al.): size and accuracy of activation-pruned students.

For each model a teacher is trained on the server's data; students are cut from it at pruning
thresholds P (§3) and for memory budgets (fractions of the teacher's bytes, :func:`fit_student`),
then trained for the same epochs on the same layers in two ways: the paper's layer-wise
knowledge transfer from the teacher (§4.1, "KT") and plain fine-tuning on the labels (the paper's
*independent student*, §5.2, "FT") — once training only the last layer of each group (the
paper's rule) and once training every layer. Prints a markdown table (accuracy on the 10 000 MNIST test images)
and writes it, with a CSV, to ``--out``. Falls back to the embedded ``digits`` data when MNIST is
not in the data directory (``--data-dir`` > ``$EDGEUPDATE_DATA``).

    PYTHONPATH=$PWD python benchmarks/student_tiers.py --out runs/student-tiers
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from edgeupdate.algorithms.knowledge_transfer import TransferConfig, fine_tune_student, transfer_knowledge
from edgeupdate.algorithms.students import StudentSpec, derive_student, fit_student, state_bytes
from edgeupdate.datasets import Dataset, load_dataset
from edgeupdate.datasets.errors import DatasetError
from edgeupdate.models.zoo import build_model, count_parameters, infer_architecture
from edgeupdate.seeding import torch_generator
from edgeupdate.training import TensorData, TrainConfig, evaluate, train

BASE_COLUMNS = ["model", "student", "P", "width scale", "widths", "params", "bytes", "acc pruned"]
TRAINABLE = ("last-in-group", "all")


def columns(trainable: list[str]) -> list[str]:
    return BASE_COLUMNS + [f"{kind} ({t})" for t in trainable for kind in ("KT", "FT")]


def _dataset(data_dir: str | None) -> tuple[str, Dataset]:
    try:
        return "mnist", load_dataset("mnist", data_dir)
    except DatasetError as exc:
        print(f"MNIST unavailable ({exc}); falling back to the embedded digits data", file=sys.stderr)
        return "digits", load_dataset("digits")


def _subset(data: TensorData, n: int, seed: int) -> TensorData:
    if n <= 0 or n >= len(data):
        return data
    return data.subset(torch.randperm(len(data), generator=torch_generator(seed, "server-data"))[:n])


def _accuracy(spec: StudentSpec, state: dict[str, torch.Tensor], test: TensorData) -> float:
    model = spec.build()
    model.load_state_dict(state)
    return evaluate(model, test)[1]


def run_model(name: str, ds: Dataset, args: argparse.Namespace) -> list[dict[str, object]]:
    shape, classes = ds.input_shape, ds.num_classes
    server = _subset(ds.train, args.train_samples, args.seed)
    fit_cfg = TrainConfig(epochs=args.teacher_epochs, batch_size=128, lr=1e-3)
    start = time.perf_counter()
    teacher = build_model(name, shape, classes, seed=args.seed)
    train(teacher, server, fit_cfg, seed=args.seed)
    t_state = {k: v.detach().cpu().clone() for k, v in teacher.state_dict().items()}
    rows: list[dict[str, object]] = [{
        "model": name, "student": "teacher", "P": "", "width scale": "",
        "widths": ",".join(map(str, infer_architecture(name, t_state).widths)),
        "params": count_parameters(teacher), "bytes": state_bytes(t_state),
        "acc pruned": round(evaluate(teacher, ds.test)[1], 4)}]
    print(f"{name}: teacher {rows[0]['acc pruned']} in {time.perf_counter() - start:.1f} s", file=sys.stderr,
          flush=True)

    students: dict[tuple, tuple[list[str], StudentSpec, dict[str, torch.Tensor]]] = {}
    for p in args.thresholds:
        spec, state = derive_student(name, shape, classes, t_state, server, p, images=args.images, seed=args.seed)
        students.setdefault(spec.kept, ([], spec, state))[0].append(f"P={p:g}")
    for fraction in args.budgets:
        budget = int(fraction * state_bytes(t_state))
        spec, state = fit_student(name, shape, classes, t_state, server, budget, images=args.images, seed=args.seed)
        students.setdefault(spec.kept, ([], spec, state))[0].append(f"≤{fraction:.0%} bytes")

    train_cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3)
    for labels, spec, state in students.values():
        params = sum(v.numel() for k, v in state.items() if k in dict(spec.build().named_parameters()))
        row: dict[str, object] = {
            "model": name, "student": " / ".join(labels), "P": f"{spec.threshold:g}",
            "width scale": f"{spec.width_scale:g}", "widths": ",".join(map(str, spec.widths)),
            "params": params, "bytes": state_bytes(state), "acc pruned": round(_accuracy(spec, state, ds.test), 4)}
        for trainable in args.trainable:
            kt_state, _ = transfer_knowledge(t_state, state, spec, server, train_cfg, seed=args.seed,
                                             cfg=TransferConfig(trainable=trainable))
            ft_state, _ = fine_tune_student(state, spec, server, train_cfg, seed=args.seed, trainable=trainable)
            row[f"KT ({trainable})"] = round(_accuracy(spec, kt_state, ds.test), 4)
            row[f"FT ({trainable})"] = round(_accuracy(spec, ft_state, ds.test), 4)
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict[str, object]], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,vgg-tiny", help="comma-separated zoo models")
    ap.add_argument("--thresholds", default="1.0,0.8,0.7", help="pruning thresholds P")
    ap.add_argument("--budgets", default="0.25,0.1", help="memory budgets as fractions of the teacher's bytes")
    ap.add_argument("--train-samples", type=int, default=20000, help="server data D (0 = the whole train split)")
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1, help="epochs of knowledge transfer and of fine-tuning")
    ap.add_argument("--images", type=int, default=128, help="M, images for the activation statistics")
    ap.add_argument("--trainable", default="last-in-group,all",
                    help="which student layers train: last-in-group (the paper's rule), all, or both")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=None, help="folder for student_tiers.md / .csv")
    args = ap.parse_args(argv)
    try:
        args.thresholds = [float(v) for v in args.thresholds.split(",") if v]
        args.budgets = [float(v) for v in args.budgets.split(",") if v]
    except ValueError as exc:
        ap.error(f"--thresholds/--budgets must be comma-separated numbers: {exc}")
    args.trainable = [t for t in args.trainable.split(",") if t]
    if not args.trainable or any(t not in TRAINABLE for t in args.trainable):
        ap.error(f"--trainable takes a comma-separated subset of {', '.join(TRAINABLE)}")
    if any(not 0 <= p <= 1 for p in args.thresholds) or any(not 0 < b <= 1 for b in args.budgets):
        ap.error("thresholds must lie in [0, 1] and budgets in (0, 1]")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data_name, ds = _dataset(args.data_dir)
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        rows += run_model(name, ds, args)
    cols = columns(args.trainable)
    table = markdown(rows, cols)
    wall = time.perf_counter() - start
    samples = len(_subset(ds.train, args.train_samples, args.seed))
    print(f"Dataset {data_name}, server data {samples} samples, teacher "
          f"{args.teacher_epochs} epochs, students {args.epochs} epoch(s), "
          f"M = {args.images}; wall {wall:.0f} s\n")
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "student_tiers.md").write_text(table + "\n")
        with open(args.out / "student_tiers.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
