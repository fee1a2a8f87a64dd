"""Simulation settings: the world's dynamics and the run, as frozen validated dataclasses.

Scenarios live in `simulations/scenarios.toml` (shipped); a scenario names the world and
run settings it changes and, under `[<scenario>.service]`, banditrec config sections.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping

from banditrec.checks import check_scalar
from banditrec.errors import ConfigError


@dataclass(frozen=True)
class WorldConfig:
    """The hidden world: sizes, and what changes while the policies run."""

    n_items: int = 3000
    n_users: int = 600
    n_categories: int = 12
    mean_events_per_user: float = 20.0
    history_days: float = 14.0
    new_items_share: float = 0.0        # items held back at build time, arriving during the run
    high_appeal_share: float = 0.3      # of those, the share given a high hidden quality
    new_users_share: float = 0.0        # users without history or vector, arriving during the run
    new_user_likes: int = 0             # true likes each arriving user states at onboarding (`preferences`)
    stock_outs_per_1000_rounds: float = 0.0
    drift: float = 0.0                  # how far tastes move over the run (0 = not at all, 1 = fully)
    position_decay: float = 0.85        # a click at position p is decay^(p-1) as likely (1 = no effect)
    purchase_rate: float = 0.1          # P(purchase | click)
    purchase_value: float = 4.0         # reward of a purchase, on top of 1 for the click
    reward_delay_s: float = 60.0        # mean delay of a reward (exponential), simulated seconds
    seconds_per_round: float = 2.0      # simulated time between decisions
    source: str = "generated"           # "movielens": real ratings instead of the generator (simulations/ratings.py)
    data_dir: str = ""                  # for "movielens": a directory of ml-100k.* files ("": the recbole wheel's)

    def __post_init__(self):
        for name in ("n_items", "n_users", "n_categories"):
            check_scalar(getattr(self, name), f"world.{name}", int, min=2)
        for name in ("new_items_share", "high_appeal_share", "new_users_share", "drift", "purchase_rate"):
            check_scalar(getattr(self, name), f"world.{name}", float, min=0.0, max=1.0)
        check_scalar(self.position_decay, "world.position_decay", float, min=0.0, max=1.0, min_exclusive=True)
        for name in ("mean_events_per_user", "history_days", "stock_outs_per_1000_rounds", "purchase_value",
                     "reward_delay_s"):
            check_scalar(getattr(self, name), f"world.{name}", float, min=0.0)
        check_scalar(self.seconds_per_round, "world.seconds_per_round", float, min=0.001)
        check_scalar(self.new_user_likes, "world.new_user_likes", int, min=0, max=200)
        check_scalar(self.source, "world.source", str, choices=("generated", "movielens"))
        check_scalar(self.data_dir, "world.data_dir", str)


@dataclass(frozen=True)
class RunConfig:
    rounds: int = 20_000
    k: int = 10
    seeds: int = 5
    report_every: int = 500
    policies: tuple[str, ...] = ("banditrec", "popularity", "random")

    def __post_init__(self):
        check_scalar(self.rounds, "run.rounds", int, min=1)
        check_scalar(self.k, "run.k", int, min=1, max=100)
        check_scalar(self.seeds, "run.seeds", int, min=1, max=1000)
        check_scalar(self.report_every, "run.report_every", int, min=1)


@dataclass(frozen=True)
class Scenario:
    name: str
    world: WorldConfig
    run: RunConfig
    service: Mapping[str, Any] = field(default_factory=dict)  # banditrec config sections

    def replace(self, **run_fields) -> "Scenario":
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **run_fields))


def scenarios() -> dict[str, dict]:
    return tomllib.loads(resources.files("simulations").joinpath("scenarios.toml").read_text())


def load_scenario(name: str) -> Scenario:
    data = scenarios()
    if name not in data:
        raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(data)}")
    section = data[name]
    unknown = set(section) - {"world", "run", "service", "description"}
    if unknown:
        raise ConfigError(f"scenario {name!r} has unknown table(s) {', '.join(sorted(unknown))}")
    try:
        world = WorldConfig(**section.get("world", {}))
        run = section.get("run", {})
        run = RunConfig(**{**run, "policies": tuple(run.get("policies", RunConfig.policies))})
    except TypeError as exc:
        raise ConfigError(f"scenario {name!r}: {exc}") from None
    return Scenario(name, world, run, section.get("service", {}))
