"""The command line: one-line errors with exit 2 on bad input; package inspect/apply on files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from edgeupdate.cli import main
from edgeupdate.updates import dense_package, sparse_package

from tests.conftest import REPO

QUICKSTART = str(REPO / "configs" / "quickstart.toml")


@pytest.mark.parametrize("args, needle", [
    (["run", QUICKSTART, "--set", "rounds=abc"], "rounds"),
    (["run", QUICKSTART, "--set", "nonsense.key=1"], "nonsense"),
    (["run", QUICKSTART, "--set", "novalue"], "key=value"),
    (["run", "missing.toml"], "does not exist"),
    (["frobnicate"], "invalid choice"),
    (["run", QUICKSTART, "--set", "stream.initial_samples=100000"], "stream.initial_samples: 100000 samples asked "
                                                                     "for D¹, but the training set has 1397"),
])
def test_bad_input_exits_2_with_one_line(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_real_entry_point_reports_config_error_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "edgeupdate.cli", "run", QUICKSTART, "--set", "rounds=abc"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: config: rounds: expected integer, got 'abc'"]


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys):
    code = main(["run", QUICKSTART, "--set", "dataset.name='mnist'", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "mnist" in err and "missing" in err and len(err.splitlines()) == 1


def test_out_dir_with_results_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text("precious")
    assert main(["run", QUICKSTART, "--out", str(tmp_path)]) == 2
    assert (tmp_path / "metrics.csv").read_text() == "precious"


@pytest.mark.parametrize("command", [["run"], ["compare", "--strategies", "full"], ["sweep", "--param-grid", "dpu.k=0.1"]])
def test_save_packages_flag_sets_the_config_key(command):
    from edgeupdate.cli import _load, build_parser

    plain = build_parser().parse_args([command[0], QUICKSTART, *command[1:]])
    saving = build_parser().parse_args([command[0], QUICKSTART, *command[1:], "--save-packages"])
    assert not _load(plain).simulation.save_packages and _load(saving).simulation.save_packages


def _states():
    base = {"w": torch.zeros(4, 4), "b": torch.zeros(4)}
    target = {"w": base["w"].clone(), "b": torch.ones(4)}
    target["w"][1, 2] = 3.0
    return base, target


def test_package_inspect_and_apply(tmp_path, capsys):
    base, target = _states()
    torch.save(base, tmp_path / "base.pt")
    pkg = sparse_package(base, target, method="demo", target_version=2, base_version=1)
    (tmp_path / "p.bin").write_bytes(pkg.encode())

    assert main(["package", "inspect", str(tmp_path / "p.bin")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["method"] == "demo" and info["target_version"] == 2 and info["tensors"][0]["name"] in ("b", "w")

    assert main(["package", "apply", "--model", str(tmp_path / "base.pt"), "--package", str(tmp_path / "p.bin"),
                 "--out", str(tmp_path / "new.pt")]) == 0
    new = torch.load(tmp_path / "new.pt")
    assert all(torch.equal(new[k], target[k]) for k in target)


def test_package_apply_refuses_wrong_base_and_leaves_out_untouched(tmp_path, capsys):
    base, target = _states()
    other = {k: v + 1 for k, v in base.items()}
    torch.save(other, tmp_path / "other.pt")
    (tmp_path / "out.pt").write_bytes(b"keep me")
    pkg = dense_package(target, method="demo", target_version=2, base=base, base_version=1)
    (tmp_path / "p.bin").write_bytes(pkg.encode())
    code = main(["package", "apply", "--model", str(tmp_path / "other.pt"), "--package", str(tmp_path / "p.bin"),
                 "--out", str(tmp_path / "out.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "version 1" in err
    assert (tmp_path / "out.pt").read_bytes() == b"keep me"


@pytest.mark.parametrize("key_format", ["pem", "hex", "raw"])
def test_package_apply_verifies_an_ed25519_signature_with_only_the_public_key(tmp_path, capsys, key_format):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from edgeupdate.updates import Ed25519Signer

    base, target = _states()
    torch.save(base, tmp_path / "base.pt")
    server = Ed25519Signer(bytes(range(32)))
    pkg = sparse_package(base, target, method="demo", target_version=2, base_version=1)
    (tmp_path / "signed.bin").write_bytes(pkg.encode(server))
    (tmp_path / "forged.bin").write_bytes(pkg.encode(Ed25519Signer(bytes(32))))
    public = server.verifier()
    (tmp_path / "server.pub").write_bytes({
        "pem": public._key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        "hex": public.public_bytes().hex().encode() + b"\n", "raw": public.public_bytes()}[key_format])

    def apply(package: str) -> int:
        return main(["package", "apply", "--model", str(tmp_path / "base.pt"), "--package", str(tmp_path / package),
                     "--out", str(tmp_path / "new.pt"), "--public-key", str(tmp_path / "server.pub")])

    assert apply("forged.bin") == 2 and "signature does not verify" in capsys.readouterr().err
    assert not (tmp_path / "new.pt").exists()
    assert apply("signed.bin") == 0
    assert all(torch.equal(torch.load(tmp_path / "new.pt")[k], target[k]) for k in target)


def test_package_apply_with_an_unreadable_public_key_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.pub").write_text("nonsense")
    code = main(["package", "apply", "--model", "m.pt", "--package", "p.bin", "--out", str(tmp_path / "o.pt"),
                 "--public-key", str(tmp_path / "bad.pub")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--public-key" in err


def test_plot_redraws_from_metrics(tmp_path, capsys):
    import pandas as pd

    pd.DataFrame({"round": [1, 1, 2, 2], "device_id": [0, 1, 0, 1], "strategy": "full",
                  "accuracy": [0.5, 0.6, 0.7, 0.8], "bytes_down": [10, 10, 5, 5], "bytes_up": 0}).to_csv(
        tmp_path / "metrics.csv", index=False)
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "accuracy_vs_round.png").stat().st_size > 1000
    assert main(["plot", str(tmp_path / "nothing")]) == 2


@pytest.mark.sim
def test_quiet_run_prints_only_the_final_result_lines(tmp_path):
    from tests.conftest import TINY

    sets = [a for o in TINY for a in ("--set", o)]
    done = subprocess.run([sys.executable, "-m", "edgeupdate.cli", "run", str(REPO / "configs" / "quickstart.toml"),
                           *sets, "--quiet", "--out", str(tmp_path / "run")], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no Flower deprecation banner, no Ray warning
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("done in ") and lines[1].startswith("results: ")
    # the command's fast exit (cli.entry) comes after every result is written and flushed
    written = {p.name: p.stat().st_size for p in (tmp_path / "run").iterdir()}
    assert {"metrics.csv", "metrics.parquet", "summary.json", "accuracy_vs_round.png", "fleet.png"} <= set(written)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["rounds"] == 2 and min(written.values()) > 0


@pytest.mark.sim
def test_no_plots_writes_the_results_without_figures_and_plot_draws_them_later(tmp_path):
    from tests.conftest import TINY

    sets = [a for o in TINY for a in ("--set", o)]
    done = subprocess.run([sys.executable, "-m", "edgeupdate.cli", "run", str(REPO / "configs" / "quickstart.toml"),
                           *sets, "--quiet", "--no-plots", "--out", str(tmp_path / "run")], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert ".png" not in done.stdout
    run = tmp_path / "run"
    assert {"metrics.csv", "metrics.parquet", "summary.json"} <= {p.name for p in run.iterdir()}
    assert not list(run.glob("*.png"))
    assert main(["plot", str(run)]) == 0
    assert {"accuracy_vs_round.png", "accuracy_vs_bytes.png", "fleet.png"} <= {p.name for p in run.glob("*.png")}


def test_the_heap_of_the_imports_is_frozen_and_collection_is_back_on():
    """The CLI before a run, then a node worker's preload (one process: each import is costly)."""
    state = "print(gc.isenabled(), gc.get_freeze_count() > 100_000)"
    probe = (f"import gc, edgeupdate.cli as c; c._import_simulation(); {state}; "
             f"gc.unfreeze(); import edgeupdate.simulation.node_worker; {state}")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.split() == ["True", "True", "True", "True"], out.stderr[-400:]
