"""Exploration strategies, one per file. Adding one is adding a class to STRATEGIES."""

from bandit.strategies.base import Choice, Scores, SlateRules, Strategy
from bandit.strategies.epsilon_greedy import EpsilonGreedy, EpsilonGreedyConfig
from bandit.strategies.greedy import Greedy, GreedyConfig
from bandit.strategies.squarecb import SquareCB, SquareCBConfig
from bandit.strategies.thompson import Thompson, ThompsonConfig
from bandit.strategies.ucb import UCB, UCBConfig

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (EpsilonGreedy, Greedy, Thompson, SquareCB, UCB)}

__all__ = ["STRATEGIES", "Choice", "EpsilonGreedy", "EpsilonGreedyConfig", "Greedy", "GreedyConfig", "Scores",
           "SlateRules", "SquareCB", "SquareCBConfig", "Strategy", "Thompson", "ThompsonConfig", "UCB", "UCBConfig"]
