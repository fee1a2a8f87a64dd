"""Which exploration a process serves: its config file's `[exploration]`, or the one a canary
promoted (`store.live`), which every serving process and the learner apply within
`canary.check_s`, across hosts, without a restart.

A promoted exploration keeps the file's section it was promoted over (`base`). It applies
while a process's file still says that (the same strategy, with the same settings; values
compared as numbers, so `0` and `0.0` agree, and the other strategies' settings do not matter):
once the file's strategy or its settings are edited, the file wins (the newer decision), so a
promotion never silently outlives a deliberate change of the file.
`banditrec config show` says which applies; `banditrec config clear-live` drops a promotion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bandit.strategies import STRATEGIES, Strategy
from banditrec.config import ExplorationConfig, exploration_from_dict, to_dict
from banditrec.errors import ConfigError

log = logging.getLogger(__name__)

FILE = "file"


def strategy_of(cfg: ExplorationConfig) -> Strategy:
    return STRATEGIES[cfg.strategy](cfg.selected)


def section(cfg: ExplorationConfig) -> dict:
    """The exploration as the config file writes it (every strategy's settings)."""
    return to_dict(cfg)


def same_exploration(a: ExplorationConfig, b: ExplorationConfig) -> bool:
    """The same strategy with the same settings (the dataclasses' equality: 0 == 0.0)."""
    return a.strategy == b.strategy and a.selected == b.selected


def _applies(live: dict, file_cfg: ExplorationConfig) -> bool:
    try:
        return same_exploration(exploration_from_dict(live["base"]), file_cfg)
    except (ConfigError, KeyError, TypeError):  # written by a release that knew other settings
        return False


@dataclass(frozen=True)
class Exploring:
    """The exploration a process serves now, its strategy, and where it comes from: "file",
    or "canary <id>" (a promoted canary's)."""

    config: ExplorationConfig
    strategy: Strategy
    source: str = FILE

    @classmethod
    def of(cls, cfg: ExplorationConfig, source: str = FILE) -> "Exploring":
        return cls(cfg, strategy_of(cfg), source)


def effective(file_cfg: ExplorationConfig, live: dict | None) -> Exploring:
    """The file's exploration, or the promoted one if it was promoted over what the file says."""
    if live is None or not _applies(live, file_cfg):
        return Exploring.of(file_cfg)
    return Exploring.of(exploration_from_dict(live["exploration"]), f"canary {live['canary']}")


def describe(exploring: Exploring, live: dict | None) -> str:
    """One line for logs and `banditrec config show`."""
    if exploring.source != FILE:
        return f"exploration {exploring.strategy.name}, promoted from {exploring.source}"
    if live is not None:
        return (f"exploration {exploring.strategy.name} from the config file (canary {live['canary']}'s promoted "
                "exploration was promoted over a different [exploration] and does not apply)")
    return f"exploration {exploring.strategy.name} from the config file"


class LiveExploration:
    """What one process holds of the live exploration, re-read with the canary
    (`follow`): the strategy its decisions draw with."""

    def __init__(self, file_cfg: ExplorationConfig):
        self.file = file_cfg
        self.now = Exploring.of(file_cfg)

    def follow(self, store, prepare: Callable[[Exploring], None] | None = None) -> bool:
        """Re-read the promoted exploration; True if what this process serves changed. `prepare`
        makes the process ready to serve the new one (its replicas grown, its strategy set)
        before `now` says it does: whoever reads `now` meanwhile sees the old exploration whole,
        never the new source with the old strategy."""
        live = store.live_exploration()
        found = effective(self.file, live)
        if found.config == self.now.config and found.source == self.now.source:
            return False
        if prepare is not None:
            prepare(found)
        log.info("now serving %s", describe(found, live))
        self.now = found
        return True
