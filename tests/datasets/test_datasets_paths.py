"""resolve_data_dir precedence: --data-dir > EDGEUPDATE_DATA > $XDG_CACHE_HOME/edgeupdate > ~/.cache/edgeupdate."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeupdate.datasets import DatasetError, load_dataset, resolve_data_dir


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEUPDATE_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return monkeypatch


def test_explicit_directory_wins_over_environment(env, tmp_path: Path) -> None:
    env.setenv("EDGEUPDATE_DATA", str(tmp_path / "from-env"))
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_environment_variable_wins_over_cache_dir(env, tmp_path: Path) -> None:
    env.setenv("EDGEUPDATE_DATA", str(tmp_path / "from-env"))
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    assert resolve_data_dir() == tmp_path / "from-env"
    assert resolve_data_dir("") == tmp_path / "from-env"


def test_xdg_cache_home_is_honoured(env, tmp_path: Path) -> None:
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    assert resolve_data_dir() == tmp_path / "xdg" / "edgeupdate"


def test_default_is_dot_cache_in_home_and_relative_xdg_is_ignored(env, tmp_path: Path) -> None:
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "edgeupdate"
    env.setenv("XDG_CACHE_HOME", "relative/cache")
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "edgeupdate"


def test_tilde_and_relative_paths_become_absolute(env, tmp_path: Path) -> None:
    env.chdir(tmp_path)

    assert resolve_data_dir("~/data") == tmp_path / "home" / "data"
    assert resolve_data_dir("data") == tmp_path / "data"


def test_load_dataset_looks_in_the_environment_directory(env, tmp_path: Path) -> None:
    env.setenv("EDGEUPDATE_DATA", str(tmp_path / "from-env"))

    with pytest.raises(DatasetError) as info:
        load_dataset("mnist")

    assert str(tmp_path / "from-env" / "mnist" / "train-images-idx3-ubyte.gz") in str(info.value)
