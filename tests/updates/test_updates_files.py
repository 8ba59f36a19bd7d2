"""File helpers behind `edgeupdate package inspect` and `edgeupdate package apply`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from update_states import perturbed, small_state
from edgeupdate.updates import (
    BaseMismatchError,
    FormatError,
    HmacKey,
    AuthenticationError,
    IntegrityError,
    PackageError,
    apply_package_file,
    inspect_package_file,
    sparse_package,
    state_hash,
)


@pytest.fixture()
def files(tmp_path: Path) -> dict:
    base = small_state()
    target = perturbed(base, 0.1)
    pkg = sparse_package(base, target, method="dpu", target_version=4, base_version=3, precision="fp32",
                         extra={"round": 3, "device": "cam-07"})
    torch.save(base, tmp_path / "base.pt")
    (tmp_path / "update.pkg").write_bytes(pkg.encode())
    return {"dir": tmp_path, "base": base, "target": target, "pkg": pkg}


def test_apply_writes_the_target_model(files: dict) -> None:
    d = files["dir"]
    apply_package_file(d / "base.pt", d / "update.pkg", d / "new.pt")
    out = torch.load(d / "new.pt", weights_only=True)
    assert state_hash(out) == state_hash(files["target"])
    assert [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []


def test_inspect_reports_header_table_and_bytes_as_json(files: dict) -> None:
    info = inspect_package_file(files["dir"] / "update.pkg")
    json.dumps(info)
    assert info["method"] == "dpu" and info["base_version"] == 3 and info["target_version"] == 4
    assert info["extra"] == {"round": 3, "device": "cam-07"}
    assert info["bytes"]["total_bytes"] == (files["dir"] / "update.pkg").stat().st_size
    assert 0 < info["positions"]["density"] < 1
    assert info["positions"]["ratio_to_bound"] > 0
    assert {t["name"] for t in info["tensors"]} >= {"fc.weight", "conv.weight"}


@pytest.mark.parametrize("failure", ["wrong-base", "corrupt", "missing-package", "bad-model", "unsigned"])
def test_failed_apply_leaves_out_untouched(files: dict, failure: str) -> None:
    d = files["dir"]
    out = d / "out.pt"
    out.write_bytes(b"previous model")
    model, package, key = d / "base.pt", d / "update.pkg", None
    expected: type[PackageError] = PackageError
    if failure == "wrong-base":
        torch.save(files["target"], d / "other.pt")
        model, expected = d / "other.pt", BaseMismatchError
    elif failure == "corrupt":
        data = bytearray(package.read_bytes())
        data[len(data) // 2] ^= 0xFF
        package = d / "corrupt.pkg"
        package.write_bytes(bytes(data))
        expected = IntegrityError
    elif failure == "missing-package":
        package, expected = d / "nope.pkg", FormatError
    elif failure == "bad-model":
        (d / "junk.pt").write_bytes(b"not a torch file")
        model, expected = d / "junk.pt", FormatError
    else:
        key, expected = HmacKey(b"k"), AuthenticationError
    with pytest.raises(expected) as err:
        apply_package_file(model, package, out, key=key)
    assert "\n" not in str(err.value)
    assert out.read_bytes() == b"previous model"
    assert [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []
