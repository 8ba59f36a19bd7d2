"""Server-side strategies (Flower): the server-retrain family and federated baselines.

Importing this package registers the built-in strategies with :mod:`edgeupdate.strategies.registry`.
"""

from edgeupdate.strategies.base import EdgeStrategy
from edgeupdate.strategies.federated import FederatedStrategy
from edgeupdate.strategies.registry import STRATEGIES, register
from edgeupdate.strategies.resolve import StrategyChoice, resolve_strategy, strategy_class
from edgeupdate.strategies.server_retrain import ServerRetrainStrategy
from edgeupdate.strategies.versions import DeviceView, ModelVersion

__all__ = ["STRATEGIES", "DeviceView", "EdgeStrategy", "FederatedStrategy", "ModelVersion", "ServerRetrainStrategy",
           "StrategyChoice", "register", "resolve_strategy", "strategy_class"]
