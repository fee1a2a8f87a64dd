"""The ranking model's settings ([model]: Vowpal Wabbit's arguments and the priors) and the
exploration strategy's ([exploration], each strategy's own section next to its class)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from bandit.strategies import STRATEGIES  # the registry of strategy classes (numpy only, no VW)
from banditrec.checks import check_scalar
from banditrec.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """The Vowpal Wabbit reward model (`--cb_adf`). Arguments are rendered here, never taken raw."""

    bits: int = 18
    learning_rate: float = 0.02
    power_t: float = 0.0
    l2: float = 0.0
    cb_type: str = "mtr"
    interactions: tuple[str, ...] = ("UI", "CI", "RI")
    lrq: tuple[str, ...] = ()
    warm_start: bool = False
    warm_start_max: int = 200_000
    similarity_prior: float = 0.0
    popularity_prior: float = 0.0
    quality_prior: float = 0.3
    quality_live_weight: float = 0.5
    session_prior: float = 0.0
    position_bias: bool = True
    user_id_feature: bool = False

    def __post_init__(self):
        check_scalar(self.bits, "model.bits", int, min=10, max=28)
        check_scalar(self.similarity_prior, "model.similarity_prior", float, min=0.0, max=10.0)
        check_scalar(self.popularity_prior, "model.popularity_prior", float, min=0.0, max=10.0)
        check_scalar(self.quality_prior, "model.quality_prior", float, min=0.0, max=10.0)
        check_scalar(self.quality_live_weight, "model.quality_live_weight", float, min=0.0, max=1e6)
        check_scalar(self.session_prior, "model.session_prior", float, min=0.0, max=10.0)
        check_scalar(self.position_bias, "model.position_bias", bool)
        check_scalar(self.user_id_feature, "model.user_id_feature", bool)
        check_scalar(self.learning_rate, "model.learning_rate", float, min=0.0, min_exclusive=True, max=100.0)
        check_scalar(self.power_t, "model.power_t", float, min=0.0, max=1.0)
        check_scalar(self.l2, "model.l2", float, min=0.0, max=1.0)
        check_scalar(self.cb_type, "model.cb_type", str, choices=("mtr", "ips", "dr", "dm"))
        check_scalar(self.warm_start, "model.warm_start", bool)
        check_scalar(self.warm_start_max, "model.warm_start_max", int, min=0)
        for pair in self.interactions:
            if not isinstance(pair, str) or not re.fullmatch(r"[A-Za-z]{2}", pair):
                raise ConfigError(f"model.interactions has {pair!r}, each must be 2 namespace letters (a pair)")
        for term in self.lrq:
            if not isinstance(term, str) or not re.fullmatch(r"[A-Za-z]{2}[1-9][0-9]{0,2}", term):
                raise ConfigError(f"model.lrq has {term!r}, each must be 2 namespace letters and a rank 1-999 "
                                  "(e.g. \"UI4\")")

    @property
    def offline_weight(self) -> float:
        """Importance weight of what a new model learns before serving (the priors, the warm
        start's history): as firmly as at learning rate 0.1, whatever the online rate."""
        return max(1.0, 0.1 / self.learning_rate)

    def vw_args(self) -> str:
        """The Vowpal Wabbit command line for a new model."""
        quads = " ".join([*(f"--interactions {p}" for p in self.interactions), *(f"--lrq {t}" for t in self.lrq)])
        return (f"--cb_adf --cb_type {self.cb_type} -b {self.bits} -l {self.learning_rate!r} "
                f"--power_t {self.power_t!r} --l2 {self.l2!r} {quads} --quiet").replace("  ", " ")


@dataclass(frozen=True)
class ExplorationConfig:
    """The strategy that draws each slate position, and every strategy's own settings."""

    strategy: str = "thompson"
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self):
        check_scalar(self.strategy, "exploration.strategy", str, choices=tuple(STRATEGIES))
        missing = [name for name in STRATEGIES if name not in self.settings]
        if missing:  # every strategy has its settings, so switching is a one-word change
            settings = dict(self.settings)
            settings.update({name: STRATEGIES[name].Config() for name in missing})
            object.__setattr__(self, "settings", MappingProxyType(settings))

    @property
    def selected(self):
        return self.settings[self.strategy]
