"""Strategy parameters are built and checked once per run, with errors that name the key."""

from pathlib import Path

import pytest

from edgeupdate.configs import ConfigError, load_config
from edgeupdate.strategies import resolve_strategy
from edgeupdate.strategies.dpu import DPU, PartialParams

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"


@pytest.mark.parametrize("override, key, words", [
    ("strategy.name='nope'", "strategy.name", "unknown strategy"),
    ("strategy.params.warp=9", "strategy.params.warp", "unknown key"),
    ("strategy.params.init='cold'", "strategy.params.init", "must be one of"),
])
def test_bad_strategy_settings_name_the_key(override, key, words):
    cfg = load_config(QUICKSTART, [override])  # the config itself is fine: params are the strategy's
    with pytest.raises(ConfigError) as err:
        resolve_strategy(cfg)
    assert err.value.key == key and words in str(err.value)


def test_resolve_builds_the_params_dataclass():
    choice = resolve_strategy(load_config(QUICKSTART, ["strategy.name='dpu'", "strategy.params={k=0.02}"]))
    assert choice.cls is DPU and choice.name == "dpu"
    assert choice.params == PartialParams(k=0.02)


def test_check_config_runs_once_per_resolution(monkeypatch):
    calls = []
    original = DPU.check_config.__func__
    monkeypatch.setattr(DPU, "check_config", classmethod(lambda cls, cfg, p: calls.append(p) or original(cls, cfg, p)))
    cfg = load_config(QUICKSTART, ["strategy.name='dpu'", "strategy.params={}"])
    resolve_strategy(cfg)
    assert len(calls) == 1


def test_a_strategy_that_cannot_train_students_is_refused():
    cfg = load_config(QUICKSTART, ["fleet.students.enabled=true", "strategy.name=fedavg", "strategy.params={}"])
    with pytest.raises(ConfigError, match="fleet.students.enabled: strategy 'fedavg' cannot train students"):
        resolve_strategy(cfg)
