"""Which exploration a process serves: its config file's `[exploration]`, or the one a canary
promoted (`store.live`), which every serving process and the learner apply within
`canary.check_s`, across hosts, without a restart.

A promoted exploration keeps the file's section it was promoted over (`base`). It applies
while a process's file still says that; once the file's section is edited, the file wins (the
newer decision), so a promotion never silently outlives a deliberate change of the file.
`banditrec config show` says which applies; `banditrec config clear-live` drops a promotion.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from bandit.strategies import STRATEGIES, Strategy
from banditrec.config import ExplorationConfig, exploration_from_dict, to_dict

log = logging.getLogger(__name__)

FILE = "file"


def strategy_of(cfg: ExplorationConfig) -> Strategy:
    return STRATEGIES[cfg.strategy](cfg.selected)


def section(cfg: ExplorationConfig) -> dict:
    """The exploration as the config file writes it (every strategy's settings)."""
    return to_dict(cfg)


def _same(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


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
    if live is None or not _same(live["base"], section(file_cfg)):
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

    def follow(self, store) -> bool:
        """Re-read the promoted exploration; True if what this process serves changed."""
        live = store.live_exploration()
        found = effective(self.file, live)
        if _same(section(found.config), section(self.now.config)) and found.source == self.now.source:
            return False
        log.info("now serving %s", describe(found, live))
        self.now = found
        return True
