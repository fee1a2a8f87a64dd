"""Ranking: the Vowpal Wabbit reward model, its features, and the exploration strategies."""

from bandit.features import action_line, item_line, shared_line
from bandit.strategies import STRATEGIES, Choice, EpsilonGreedy, Greedy, Strategy
from bandit.vw import VWModel

__all__ = ["STRATEGIES", "Choice", "EpsilonGreedy", "Greedy", "Strategy", "VWModel", "action_line",
           "item_line", "shared_line"]
