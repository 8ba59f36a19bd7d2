"""``edgeupdate`` command line.

    edgeupdate run CONFIG [--out DIR] [--set key=value ...] [--data-dir DIR] [--save-packages]
    edgeupdate resume RUN_DIR [--data-dir DIR]
    edgeupdate compare CONFIG --strategies a,b,c [--reference full] [--seeds N] [--out DIR] [--resume]
        (a name is a strategy or a [strategies.<label>] table with strategy = "<name>")
    edgeupdate sweep CONFIG [--strategies a,b] --param-grid 'ka.n=1,2,4' [--param-grid ...] [--seeds N] [--out DIR] [--resume]
    edgeupdate plot RUN_DIR
    edgeupdate package inspect FILE
    edgeupdate package apply --model IN --package FILE --out OUT [--hmac-key KEY | --public-key FILE]

Bad input exits non-zero with one line on stderr naming what is wrong: 2 for configs, arguments,
data and packages; 1 for a simulation that failed while running.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeupdate.configs import ExperimentConfig

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class CliError(Exception):
    """A one-line error for the user, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + error)
        raise CliError(f"{self.prog}: {message}")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="experiment TOML (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set rounds=3 --set strategy.params.k=0.01")
    _add_output_args(p)


def _add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="dataset directory (default: $EDGEUPDATE_DATA or the user cache)")
    p.add_argument("--quiet", action="store_true", help="print only the final result lines")
    p.add_argument("--verbose", action="store_true", help="Flower's and Ray's own logs")
    p.add_argument("--save-packages", action="store_true",
                   help="keep every package sent and every model issued (packages/, models/, packages.csv "
                        "in the run directory; sets simulation.save_packages)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgeupdate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run one simulation")
    _add_run_args(run)
    run.add_argument("--out", type=Path, default=None, help="output directory (default runs/<name>-<timestamp>)")
    run.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    run.add_argument("--no-plots", dest="plots", action="store_false",
                     help="draw no figures (benchmarks, many runs); `edgeupdate plot RUN_DIR` draws them later")

    res = sub.add_parser("resume", help="continue a run that stopped from its last complete round")
    res.add_argument("run_dir", type=Path, help="the run's output directory (holds config.toml and checkpoint/)")
    _add_output_args(res)

    cmp_ = sub.add_parser("compare", help="run several strategies on identical data, fleet and seeds")
    _add_run_args(cmp_)
    cmp_.add_argument("--strategies", required=True,
                      help="comma-separated strategies or [strategies.<label>] labels, e.g. full,dpu,fedavg,fedavg-topk")
    cmp_.add_argument("--reference", default=None, help="strategy the others are compared with (default: the first)")
    cmp_.add_argument("--seeds", type=int, default=1, help="runs per strategy with seeds seed..seed+N-1")
    cmp_.add_argument("--out", type=Path, default=None, help="output directory (default runs/compare-<name>-<timestamp>)")
    cmp_.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    cmp_.add_argument("--resume", action="store_true",
                      help="reuse the runs in --out that finished with the same config; continue unfinished ones")

    swp = sub.add_parser("sweep", help="accuracy vs update size: one single-update run per strategy × grid value")
    _add_run_args(swp)
    swp.add_argument("--strategies", default="", help="comma-separated names (default: those named in --param-grid)")
    swp.add_argument("--param-grid", dest="grid", action="append", default=[], metavar="STRATEGY.PARAM=V1,V2,...",
                     help="values of one strategy parameter, e.g. 'ka.n=1,2,4' or 'rm.proportion=0.005,0.01'; repeatable")
    swp.add_argument("--seeds", type=int, default=1, help="runs per point with seeds seed..seed+N-1")
    swp.add_argument("--out", type=Path, default=None, help="output directory (default runs/sweep-<name>-<timestamp>)")
    swp.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty --out")
    swp.add_argument("--resume", action="store_true",
                     help="reuse the runs in --out that finished with the same config; run only the others")

    plot = sub.add_parser("plot", help="redraw a run's plots from its metrics")
    plot.add_argument("run_dir", type=Path)

    pkg = sub.add_parser("package", help="inspect or apply an update package file")
    pkg_sub = pkg.add_subparsers(dest="package_command", required=True, parser_class=_Parser)
    insp = pkg_sub.add_parser("inspect", help="print a package's header and byte breakdown as JSON")
    insp.add_argument("file", type=Path)
    app = pkg_sub.add_parser("apply", help="verify and apply a package to a saved model")
    app.add_argument("--model", type=Path, required=True, help="torch.save'd state_dict of the base model")
    app.add_argument("--package", type=Path, required=True)
    app.add_argument("--out", type=Path, required=True, help="where to write the new state_dict (untouched on failure)")
    keys = app.add_mutually_exclusive_group()
    keys.add_argument("--hmac-key", default=None, help="shared HMAC key the package must be signed with")
    keys.add_argument("--public-key", type=Path, default=None,
                      help="the server's Ed25519 public key (PEM, 32 raw bytes or 64 hex digits) the package must be signed with")
    return parser


def _out_dir(explicit: Path | None, name: str, overwrite: bool) -> Path:
    if explicit is None:
        return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if explicit.exists() and any(explicit.iterdir()) and not overwrite:
        raise CliError(f"--out {explicit} is not empty (use --overwrite to replace its results)")
    return explicit


def _load(args: argparse.Namespace) -> ExperimentConfig:
    """The config of ``args.config`` with ``--set`` overrides (and ``--save-packages``)."""
    from edgeupdate.configs import load_config

    saving = ["simulation.save_packages=true"] if getattr(args, "save_packages", False) else []
    return load_config(args.config, [*args.overrides, *saving])


def _import_simulation() -> None:
    """Import what a simulation runs on (torch, Flower's engine, pandas) without garbage collection,
    then freeze the heap those imports made (``gc.freeze``) and collect again as usual.

    The imports make about 350,000 objects that live as long as the process and hold little
    garbage; Python's full collections walked them six times during the imports and again at every
    later full collection (the quickstart: 0.7–1.1 s of the command's 10 s of CPU)."""
    gc.disable()
    try:
        import edgeupdate.simulation.runner  # noqa: F401
        from flwr.simulation import run_simulation  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


def cmd_run(args: argparse.Namespace) -> int:
    from edgeupdate.simulation.ray_cluster import start_private_ray

    cfg = _load(args)  # configs load without torch: Ray's head and its warm workers start before it is imported
    out = _out_dir(args.out, cfg.name, args.overwrite)
    head = start_private_ray(cfg)
    try:
        if not args.quiet:  # before the imports: they take seconds
            print(f"edgeupdate: {cfg.name}: strategy {cfg.strategy.name}, {cfg.num_devices} devices, "
                  f"{cfg.rounds} rounds, dataset {cfg.dataset.name}, model {cfg.model.name} → {out}", flush=True)
        _import_simulation()
        from edgeupdate.simulation.runner import run_experiment

        summary = run_experiment(cfg, out, data_dir=args.data_dir, progress=not args.quiet, verbose=args.verbose,
                                 ray_head=head, plots=args.plots)
    finally:
        if head is not None:
            head.stop()
    _print_result(summary, out, plots=args.plots)
    return 0


def _print_result(summary: dict, out: Path, plots: bool = True) -> None:
    print(f"done in {summary['wall_time_s']:.1f} s: final mean accuracy {summary['final_mean_accuracy']:.4f}, "
          f"{summary['total_bytes_down']} bytes down, {summary['total_bytes_up']} bytes up")
    lost = summary.get("lost", {}).get("device_rounds", 0)
    if lost:
        print(f"lost: {lost} device-rounds without an answer (status 'lost' in metrics.csv)")
    figures = ", accuracy_vs_round.png, accuracy_vs_bytes.png, fleet.png" if plots else ""
    print(f"results: {out}/ (metrics.parquet, metrics.csv, versions.csv, config.toml, summary.json{figures})")
    if (out / "packages.csv").exists():
        print(f"packages: {out}/packages.csv, {out}/packages/, {out}/models/ "
              f"(replay one: edgeupdate package apply --model {out}/models/<base> --package {out}/packages/<file> --out OUT)")


def cmd_resume(args: argparse.Namespace) -> int:
    from edgeupdate.configs import load_config
    from edgeupdate.simulation.checkpoint import Checkpoints
    from edgeupdate.simulation.runner import run_experiment

    cfg_file = args.run_dir / "config.toml"
    if not cfg_file.exists():
        raise CliError(f"{args.run_dir} holds no config.toml: not a run directory (start one with edgeupdate run)")
    done = Checkpoints(args.run_dir).latest_round()
    if done == 0 and (args.run_dir / "summary.json").exists():
        print(f"{args.run_dir} is complete (summary.json): nothing to resume")
        return 0
    cfg = load_config(cfg_file)
    _import_simulation()
    if not args.quiet:
        start = f"after round {done}" if done else "from round 1 (no round had completed)"
        print(f"edgeupdate: resuming {cfg.name} ({cfg.strategy.name}, {cfg.rounds} rounds) {start} → {args.run_dir}",
              flush=True)
    summary = run_experiment(cfg, args.run_dir, data_dir=args.data_dir, progress=not args.quiet,
                             verbose=args.verbose, resume=True)
    _print_result(summary, args.run_dir)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from edgeupdate.simulation.compare import compare
    from edgeupdate.simulation.tables import to_markdown

    cfg = _load(args)
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    if not names:
        raise CliError("--strategies needs at least one name")
    if args.seeds < 1:
        raise CliError("--seeds must be >= 1")
    if args.resume and args.out is None:
        raise CliError("--resume needs --out (the directory of the comparison to resume)")
    out = _out_dir(args.out, f"compare-{cfg.name}", args.overwrite or args.resume)
    _import_simulation()
    command = "edgeupdate " + " ".join(shlex.quote(a) for a in args.argv)
    table = compare(cfg, names, out, reference=args.reference, seeds=args.seeds, data_dir=args.data_dir,
                    command=command, resume=args.resume)
    print(to_markdown(table))
    print(f"results: {out}/ (report.md, report.html, comparison.csv, comparison.md, accuracy_vs_*.png, runs/)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from edgeupdate.simulation.tables import to_markdown
    from edgeupdate.simulation.sweep import GridError, SweepError, parse_grid, sweep, sweep_points, verdict

    cfg = _load(args)
    if args.seeds < 1:
        raise CliError("--seeds must be >= 1")
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    try:
        axes = parse_grid(args.grid)
        points = sweep_points(cfg, names, axes)  # every point checked before any output or training
    except GridError as err:
        raise CliError(str(err)) from None
    if args.resume and args.out is None:
        raise CliError("--resume needs --out (the directory of the sweep to resume)")
    out = _out_dir(args.out, f"sweep-{cfg.name}", args.overwrite or args.resume)
    _import_simulation()
    print(f"edgeupdate: sweep {cfg.name}: {len(points)} points × {args.seeds} seed(s), "
          f"each a {cfg.rounds}-round simulation → {out}", flush=True)
    try:
        table = sweep(cfg, names, axes, out, seeds=args.seeds, data_dir=args.data_dir, resume=args.resume)
    except SweepError as err:
        raise CliError(str(err), EXIT_FAILED) from None
    print(to_markdown(table[["strategy", "params", "update_params", "update_pct", "bytes_down", "initial_accuracy",
                             "accuracy", "lift", "applied_devices", "devices"]]))
    for line in verdict(table):
        print(line)
    print(f"results: {out}/ (sweep.csv, sweep.md, sweep.png, runs/)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from edgeupdate.simulation.plots import plot_run

    if not args.run_dir.is_dir():
        raise CliError(f"{args.run_dir} is not a directory")
    try:
        paths = plot_run(args.run_dir)
    except FileNotFoundError as err:
        raise CliError(str(err)) from None
    for p in paths:
        print(p)
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from edgeupdate.updates import HmacKey, Verifier, apply_package_file, inspect_package_file
    from edgeupdate.updates.auth import load_ed25519_verifier

    if args.package_command == "inspect":
        print(json.dumps(inspect_package_file(args.file), indent=2))
        return 0
    key: Verifier | None = HmacKey(args.hmac_key.encode()) if args.hmac_key else None
    if args.public_key is not None:
        try:
            key = load_ed25519_verifier(args.public_key.read_bytes())
        except (OSError, ValueError) as err:
            raise CliError(f"--public-key {args.public_key}: {getattr(err, 'strerror', None) or err}") from None
    apply_package_file(args.model, args.package, args.out, key=key)
    print(f"applied {args.package} to {args.model} → {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from edgeupdate.configs import ConfigError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in reports
        handler = {"run": cmd_run, "resume": cmd_resume, "compare": cmd_compare, "sweep": cmd_sweep, "plot": cmd_plot,
                   "package": cmd_package}[args.command]
        return handler(args)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except ConfigError as err:
        print(f"error: config: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:  # data, package and simulation errors: one line, no traceback
        from edgeupdate.datasets import DatasetError
        from edgeupdate.updates import PackageError

        from edgeupdate.simulation.checkpoint import CheckpointError

        if isinstance(err, (DatasetError, PackageError, FileNotFoundError, CheckpointError)):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(err, KeyboardInterrupt):
            raise
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED


def entry() -> None:
    """The ``edgeupdate`` command: :func:`main`, then a fast exit.

    By then every result is written and closed, and the simulation engine has shut Ray down; what the
    exit skips is the interpreter's teardown of torch, Ray's core worker and Flower, about 1 s on
    2 cores after every run. Logging is flushed, and a Ray still up (a run that failed before the
    engine started) is shut down first.
    """
    code = main()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
