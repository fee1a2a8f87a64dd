"""Exploration strategies, one per file. Adding one is adding a class to STRATEGIES."""

from bandit.strategies.base import Choice, Strategy
from bandit.strategies.epsilon_greedy import EpsilonGreedy, EpsilonGreedyConfig
from bandit.strategies.greedy import Greedy, GreedyConfig

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (EpsilonGreedy, Greedy)}

__all__ = ["STRATEGIES", "Choice", "EpsilonGreedy", "EpsilonGreedyConfig", "Greedy",
           "GreedyConfig", "Strategy"]
