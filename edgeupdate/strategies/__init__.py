"""Server-side strategies (Flower): the server-retrain family and federated baselines.

Importing this package registers the built-in strategies with :mod:`edgeupdate.strategies.registry`.
"""

from edgeupdate.strategies import dpu, fedavg, fl_strategies, full, ka  # noqa: F401  (registration)
from edgeupdate.strategies.base import EdgeStrategy, ModelVersion, ServerRetrainStrategy
from edgeupdate.strategies.registry import STRATEGIES, register, strategy_class

__all__ = ["STRATEGIES", "EdgeStrategy", "ModelVersion", "ServerRetrainStrategy", "register", "strategy_class"]
