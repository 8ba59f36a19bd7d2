"""The Flower app: ``flwr run .`` runs an experiment through Flower's own CLI.

``pyproject.toml`` names ``server_app`` and ``client_app`` below as the app's components and sets
the run config keys ``config-file`` (an experiment TOML, relative to the project root) and
``out-dir``; override them with ``flwr run . --run-config "config-file='configs/x.toml'"``. The
ServerApp writes the same files as ``edgeupdate run``.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context

from edgeupdate.clients.device import make_client_app
from edgeupdate.runtime import ExperimentRuntime, experiment_runtime
from edgeupdate.configs import load_config
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
    return _resolve(str(context.run_config.get("out-dir", "runs/flwr")))


server_app = make_server_app(runtime_from_context, out_dir_from_context)
client_app = make_client_app(runtime_from_context)
