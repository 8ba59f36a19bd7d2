"""The config loader: every bad key, type or value is one ConfigError naming the key."""

from pathlib import Path

import pytest

from edgeupdate.configs import ConfigError, config_from_dict, dump_config, load_config
from edgeupdate.configs.loader import apply_overrides, parse_override

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"


def test_quickstart_preset_loads_and_round_trips():
    cfg = load_config(QUICKSTART)
    assert cfg.name == "quickstart" and cfg.rounds >= 5 and cfg.num_devices >= 10
    import tomllib

    assert config_from_dict(tomllib.loads(dump_config(cfg))) == cfg


@pytest.mark.parametrize("override, key, words", [
    ("rounds=abc", "rounds", "expected integer"),
    ("rounds=0", "rounds", ">= 1"),
    ("bogus=1", "bogus", "unknown key"),
    ("dataset.name='imagenet'", "dataset.name", "must be one of"),
    ("training.lr=-1.0", "training.lr", "> 0"),
    ("model.hidden=[64, 'x']", "model.hidden[1]", "expected integer"),
    ("partition.alpha=0", "partition.alpha", "> 0"),
])
def test_bad_values_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(QUICKSTART, [override])
    assert err.value.key == key
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_parse_toml_values_and_fall_back_to_strings():
    assert parse_override("rounds=3") == ("rounds", 3)
    assert parse_override("model.hidden=[8, 8]") == ("model.hidden", [8, 8])
    assert parse_override("strategy.name=full") == ("strategy.name", "full")
    data = apply_overrides({"a": {"b": 1}}, ["a.c=2.5"])
    assert data == {"a": {"b": 1, "c": 2.5}}


def test_int_is_accepted_where_a_float_is_expected():
    cfg = load_config(QUICKSTART, ["training.lr=1"])
    assert cfg.training.lr == 1.0 and isinstance(cfg.training.lr, float)


def test_missing_and_malformed_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_loading_a_config_imports_neither_strategies_nor_flower():
    """configs/ is the bottom layer: reading a config must not pull in Flower, Ray or any strategy
    (strategy parameters are checked once per run by edgeupdate.strategies.resolve)."""
    import subprocess
    import sys

    code = ("import sys; from edgeupdate.configs import load_config; "
            f"load_config({str(QUICKSTART)!r}, ['strategy.name=\\'dpu\\'']); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flwr', 'ray') "
            "or m.startswith('edgeupdate.strategies')); print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
