"""Ranking: the Vowpal Wabbit reward model (`bandit.vw`), its features (`bandit.features`) and
the exploration strategies (`bandit.strategies`). Importing the package loads none of them, so
reading a config (which needs the strategy registry) does not load Vowpal Wabbit."""
