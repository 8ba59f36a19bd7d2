"""The Flower app: ``flwr run .`` runs an experiment through Flower's own CLI.

``pyproject.toml`` names ``server_app`` and ``client_app`` below as the app's components and sets
the run config keys ``config-file`` (an experiment TOML, relative to the app's own folder) and
``out-dir`` (an absolute path: the ServerApp does not run in the caller's directory, and a relative
one would land inside the installed app under ``FLWR_HOME``); set them with ``flwr run .
--run-config "config-file='configs/x.toml' out-dir='/abs/runs/x'"``. The ServerApp writes the same
files as ``edgeupdate run``; ``resume=true`` in the run config continues the run in ``out-dir`` from
its last checkpoint, as ``edgeupdate resume`` does.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context

from edgeupdate.clients.gateway import make_client_app
from edgeupdate.runtime import ExperimentRuntime, experiment_runtime
from edgeupdate.configs import ConfigError, load_config
from edgeupdate.simulation.runner import make_server_app

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p


def runtime_from_context(context: Context) -> ExperimentRuntime:
    """The experiment named by the run config's ``config-file``."""
    cfg = load_config(_resolve(str(context.run_config.get("config-file", "configs/quickstart.toml"))))
    return experiment_runtime(cfg)


def out_dir_from_context(context: Context) -> Path:
    """The run config's ``out-dir``, which must be absolute (ConfigError otherwise)."""
    out = str(context.run_config.get("out-dir", ""))
    if not out or not Path(out).is_absolute():
        raise ConfigError("out-dir", f"must be an absolute path, got {out!r} (the ServerApp does not run in your "
                                     f"directory): flwr run . --run-config \"out-dir='$PWD/runs/flwr'\"")
    return Path(out)


server_app = make_server_app(runtime_from_context, out_dir_from_context)
client_app = make_client_app(runtime_from_context)
