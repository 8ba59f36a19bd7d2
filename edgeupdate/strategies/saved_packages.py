"""``simulation.save_packages``: keep every package the server sent and every model it issued, so
that any transfer of a run can be replayed offline with ``edgeupdate package apply``. No Flower here.

Under the run directory:

* ``packages/<sha256>.pkg`` — each distinct package, as the server encoded it (content-addressed:
  the name is the SHA-256 of the bytes, written once however many devices received it);
* ``models/v<version>-<hash16>.pt`` — every model state in ``versions.csv``, a ``torch.save``'d
  state dict (what ``package apply --model`` reads), written at the end of the round that issued it;
* ``packages.csv`` — one row per transfer actually put on a link (offline devices and devices the
  package was withheld from for lack of memory get none), appended and flushed at the end of each
  round, so that a run resumed after round R keeps appending (:class:`PackageSaver` drops rows of
  later rounds on resume).

A row's ``file`` is the package the server sent; ``base_*`` is the state the device held when it
was sent (what the package is replayed onto), ``target_*`` the header's target. ``transfer`` says
what the link did (``whole``, ``cut`` at the deadline after ``bytes_down`` bytes, ``corrupted`` in
transit). When an attacker replaced the download (``attack`` = replay | forge), ``file`` is still
the server's package and ``attack_file`` the attacker's bytes the device received and refused.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from edgeupdate import protocol as P
from edgeupdate.fleet.rounds import RoundOutcome
from edgeupdate.strategies.attacks import NO_ATTACK
from edgeupdate.strategies.versions import DeviceView, VersionStore
from edgeupdate.updates import save_state_file
from edgeupdate.updates.files import atomic_write
from edgeupdate.updates.header import FORMAT_VERSION, PREAMBLE, PackageHeader, read_header
from edgeupdate.updates.wire import Reader

PACKAGES_DIR = "packages"
MODELS_DIR = "models"
PACKAGES_CSV = "packages.csv"
COLUMNS = ("round", "phase", "device_id", "file", "bytes", "kind", "transfer", "bytes_down",
           "base_version", "base_hash", "base_model", "target_version", "target_hash", "target_model",
           "attack", "attack_file")


def model_file_name(version: int, hash_: str) -> str:
    """The file under ``models/`` that holds the state ``hash_`` issued as version ``version``."""
    return f"v{version}-{hash_[:16]}.pt"


def package_header(payload: bytes) -> PackageHeader:
    """The header of an encoded package (the server's own bytes: nothing else is checked)."""
    r = Reader(payload, "package")
    r.pos = PREAMBLE.size
    length = r.uvarint(limit=len(payload))
    return read_header(bytes(r.raw(length)), FORMAT_VERSION, len(payload))


def transfer(outcome: RoundOutcome) -> str:
    """What the link did with a push: ``cut`` at the deadline, ``corrupted`` in transit, else ``whole``."""
    if outcome.status == P.DeviceStatus.DEADLINE:
        return "cut"
    return "corrupted" if outcome.corrupt_transfer else "whole"


def _write_once(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically unless the file is already there."""
    if not path.exists():
        atomic_write(path, lambda fh: fh.write(data))


class PackageSaver:
    """Writes a run's packages, models and ``packages.csv`` (see the module docstring).

    A new run starts from empty ``packages/``, ``models/`` and ``packages.csv`` (a run directory
    reused with ``--overwrite`` keeps nothing of the old run's). ``resume_after``: the run continues
    after that round and keeps what is there, except rows of later rounds in ``packages.csv``
    (written before the interruption, redone by the resumed run).
    """

    def __init__(self, run_dir: Path | str, resume_after: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.packages_dir = self.run_dir / PACKAGES_DIR
        self.models_dir = self.run_dir / MODELS_DIR
        self.csv_path = self.run_dir / PACKAGES_CSV
        if resume_after is None:
            shutil.rmtree(self.packages_dir, ignore_errors=True)
            shutil.rmtree(self.models_dir, ignore_errors=True)
            self.csv_path.unlink(missing_ok=True)
        self.packages_dir.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._rows: list[dict[str, object]] = []
        self._logged = 0  # version-log entries whose models are saved
        self._models: dict[str, str] = {}  # state hash -> model file (first version that issued it)
        self._by_id: dict[int, tuple[bytes, str]] = {}  # id(payload) -> (payload, file): hash each object once
        self._targets: dict[str, tuple[int, str, str]] = {}  # file -> header's target version, hash; full | catch-up
        if resume_after is not None:
            self._drop_rows_after(resume_after)

    # ------------------------------------------------------------------ during a round
    def save_package(self, payload: bytes) -> str:
        """Write ``payload`` under ``packages/`` (once) and return its path relative to the run directory."""
        known = self._by_id.get(id(payload))
        if known is not None and known[0] is payload:
            return known[1]
        name = f"{PACKAGES_DIR}/{hashlib.sha256(payload).hexdigest()}.pkg"
        _write_once(self.run_dir / name, payload)
        self._by_id[id(payload)] = (payload, name)
        return name

    def record(self, round_: int, phase: str, view: DeviceView, payload: bytes, *, kind: str | None = None,
               bytes_down: int | None = None, transfer: str = "whole", attack: str = NO_ATTACK,
               attack_payload: bytes | None = None) -> None:
        """``payload`` was sent to ``view``'s device in ``phase`` (train | push) of ``round_``.

        ``kind`` defaults to ``full`` for an all-dense package, else ``catch-up``; ``bytes_down``
        (what went on the link) to the whole package."""
        name = self.save_package(payload)
        if name not in self._targets:
            header = package_header(payload)
            dense = all(t.kind == "dense" for t in header.tensors)
            self._targets[name] = (header.target_version, header.target_hash, "full" if dense else "catch-up")
        target_version, target_hash, default_kind = self._targets[name]
        self._rows.append({
            "round": round_, "phase": phase, "device_id": view.device_id, "file": name, "bytes": len(payload),
            "kind": kind or default_kind, "transfer": transfer,
            "bytes_down": len(payload) if bytes_down is None else bytes_down,
            "base_version": view.version, "base_hash": view.hash, "target_version": target_version,
            "target_hash": target_hash, "attack": attack,
            "attack_file": self.save_package(attack_payload) if attack_payload is not None else "",
        })

    # ------------------------------------------------------------------ end of a round
    def end_round(self, store: VersionStore) -> None:
        """Save the models issued since the last call and append this round's rows to ``packages.csv``.

        Call before ``store.forget_unheld()``: every state the round issued must still be in the store."""
        for entry in store.log[self._logged:]:
            hash_ = str(entry["model_hash"])
            name = model_file_name(int(entry["model_version"]), hash_)
            state = store.states.get(hash_)
            if state is not None and not (self.models_dir / name).exists():
                save_state_file(state.weights, self.models_dir / name)
            if (self.models_dir / name).exists():
                self._models.setdefault(hash_, f"{MODELS_DIR}/{name}")
        self._logged = len(store.log)
        for row in self._rows:
            row["base_model"] = self._model(str(row["base_hash"]), int(row["base_version"]))
            row["target_model"] = self._model(str(row["target_hash"]), int(row["target_version"]))
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        with self.csv_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows(self._rows)
            fh.flush()
            os.fsync(fh.fileno())
        self._rows = []
        self._by_id = {}

    def _model(self, hash_: str, version: int) -> str:
        """The saved model file of state ``hash_`` (one saved by an earlier run before a resume included)."""
        if hash_ not in self._models and (self.models_dir / model_file_name(version, hash_)).exists():
            self._models[hash_] = f"{MODELS_DIR}/{model_file_name(version, hash_)}"
        return self._models.get(hash_, "")

    def _drop_rows_after(self, round_: int) -> None:
        if not self.csv_path.exists():
            return
        with self.csv_path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["round"]) <= round_]
        fd, tmp = tempfile.mkstemp(prefix=f".{PACKAGES_CSV}.", suffix=".tmp", dir=self.run_dir)
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.csv_path)

__all__ = ["COLUMNS", "MODELS_DIR", "PACKAGES_CSV", "PACKAGES_DIR", "PackageSaver", "model_file_name",
           "package_header", "transfer"]
