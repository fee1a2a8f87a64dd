"""What a decision reads and never writes: the config, one index version, the popularity and
quality cache, the exploration strategy at the model's step, and the model (mean, replicas,
version) as they were when the request began. A rollback or a newer snapshot swaps the
learner's model; a request holding its `Ranking` finishes on the one it started with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from bandit.strategies import Strategy
from bandit.vw import Replicas, VWModel
from banditrec.config import Config
from retrieval.catalog import Catalog
from serving.popular import PopularCache


@dataclass(frozen=True)
class Ranking:
    config: Config
    catalog: Catalog
    popular: PopularCache
    strategy: Strategy                 # at the model's step (`Strategy.at_step`)
    model: VWModel
    replicas: Replicas | None
    version: int | None
    labelled: Callable[[Sequence[str]], Sequence[float]]  # labelled impressions per item id (may raise StoreError)
