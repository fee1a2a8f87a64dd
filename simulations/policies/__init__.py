"""The contenders of a simulation, by name (see `make_policy`)."""

from __future__ import annotations

from banditrec.config import Config
from banditrec.errors import ConfigError
from simulations.policies.banditrec import Banditrec, BanditrecHTTP, base_config
from simulations.policies.base import Policy
from simulations.policies.baselines import Oracle, Popularity, Random
from simulations.policies.personalizer import Personalizer

NAMES = ("banditrec[:strategy][:noboost]", "oracle", "random", "popularity", "azure", "mabwiser_lints",
         "mabwiser_linucb")


def make_policy(spec: str, *, base: Config, service_sections: dict, redis_url: str, http: str | None = None) -> Policy:
    if spec.startswith("banditrec"):
        return BanditrecHTTP(http) if http else Banditrec(spec, base, service_sections, redis_url)
    if spec == "oracle":
        return Oracle()
    if spec == "random":
        return Random()
    if spec == "popularity":
        return Popularity()
    if spec == "azure":
        return Personalizer()
    if spec in ("mabwiser_lints", "mabwiser_linucb"):
        from simulations.policies.peers import MABWiserLinear

        return MABWiserLinear(spec.split("_", 1)[1])
    raise ConfigError(f"unknown policy {spec!r}; known: {', '.join(NAMES)}")


__all__ = ["NAMES", "Policy", "base_config", "make_policy"]
