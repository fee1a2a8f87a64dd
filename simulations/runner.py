"""Running policies against the world, seed by seed, in parallel processes.

Every policy meets the same visits (users, contexts) and the same world changes for a
seed; clicks are drawn from the truth of what each policy shows. Regret is measured in
expectation: per round, the oracle slate's expected reward minus the shown slate's.
"""

from __future__ import annotations

import heapq
import itertools
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from banditrec.config import Config, from_dict, to_dict
from banditrec.errors import ConfigError
from simulations.config import Scenario
from simulations.policies import make_policy
from simulations.world import SimWorld


def make_world(cfg, seed: int, rounds: int) -> SimWorld:
    """The scenario's world: generated, or fitted to real ratings (`world.source`)."""
    if cfg.source == "movielens":
        from simulations.ratings import RatingsWorld  # reads (and may fetch) the data set

        return RatingsWorld(cfg, seed, rounds)
    return SimWorld(cfg, seed, rounds)

GENERATED_ONLY = ("azure", "mabwiser_lints", "mabwiser_linucb")  # they read the generator's item features
TICK_EVERY = 25  # rounds between policy housekeeping (closing decisions, rebuilds)


@dataclass
class RunResult:
    policy: str
    seed: int
    regret: np.ndarray          # per round, expected
    reward: np.ndarray          # per round, sampled
    clicks: np.ndarray          # per round
    impressions: np.ndarray     # per round
    fresh: np.ndarray           # per round: impressions of items that arrived during the run
    time_to_20: float           # mean rounds until a high-appeal new item had 20 impressions (censored:
                                # an item that never got there counts the rounds left)
    reached_20: float           # share of the high-appeal new items that got there
    cold_ctr: float             # clicks / impressions over new users' first 10 visits
    decisions_per_s: float
    extra: dict = field(default_factory=dict)


def run_one(scenario: Scenario, spec: str, seed: int, base: Config | dict, redis_url: str,
            http: str | None = None) -> RunResult:
    base = from_dict(base) if isinstance(base, dict) else base  # dicts cross process boundaries
    run, cfg = scenario.run, scenario.world
    if cfg.source != "generated" and spec in GENERATED_ONLY:
        raise ConfigError(f"policy {spec!r} reads the generated world's hidden features; it cannot run on "
                          f"world.source {cfg.source!r}")
    world = make_world(cfg, seed, run.rounds)
    policy = make_policy(spec, base=base, service_sections=scenario.service, redis_url=redis_url, http=http)
    visits, outcomes, delays = (np.random.default_rng([seed, s]) for s in (1, 2, 3))
    n = run.rounds
    regret, reward, clicks, impressions, fresh = (np.zeros(n) for _ in range(5))
    shows, reached, arrived_at = {}, {}, {}
    cold_seen, cold_clicks, cold_shown = {}, 0, 0
    pending: list[tuple] = []
    order = itertools.count()  # ties in the reward queue never compare handles
    spent = 0.0
    with tempfile.TemporaryDirectory(prefix="banditrec-sim-") as tmp:
        try:
            policy.setup(world, seed, Path(tmp))
            for r in range(n):
                now = world.clock(r)
                t0 = time.perf_counter()
                for change in world.changes(r):
                    if change[0] == "item":
                        arrived_at[int(change[1]["item_id"][1:])] = r
                    policy.apply(change, now)
                while pending and pending[0][0] <= now:  # the client reports late, the same way to every policy
                    _, _, handle, user_, item, position, value = heapq.heappop(pending)
                    policy.reward(handle, item, position, value, now)
                    if value > 0:
                        policy.observe(user_, item, "click", now)
                        if value > 1:
                            policy.observe(user_, item, "purchase", now, value - 1)
                user, context = world.visit(visits, r)
                handle, items = policy.recommend(user, context, run.k, now)
                spent += time.perf_counter() - t0
                _, best = world.oracle(user, context, run.k, r)
                regret[r] = best - world.slate_value(user, items, context, r)
                values = world.outcome(outcomes, user, items, context, r)
                t0 = time.perf_counter()
                for position, (item, value) in enumerate(zip(items, values)):
                    due = now + delays.exponential(cfg.reward_delay_s) if http is None else now
                    heapq.heappush(pending, (due, next(order), handle, user, item, position, value))
                if r % TICK_EVERY == 0:
                    policy.tick(now)
                spent += time.perf_counter() - t0
                reward[r], impressions[r] = sum(values), len(items)
                clicks[r] = sum(v > 0 for v in values)
                fresh[r] = sum(world.is_new(i) for i in items)
                for item in items:
                    if item in world.high_appeal:
                        shows[item] = shows.get(item, 0) + 1
                        if shows[item] == 20:
                            reached[item] = r - arrived_at.get(item, 0)
                if user in world.new_users and cold_seen.get(user, 0) < 10:
                    cold_seen[user] = cold_seen.get(user, 0) + 1
                    cold_clicks += clicks[r]
                    cold_shown += len(items)
        finally:
            policy.close()
    targets = [i for i in arrived_at if i in world.high_appeal]
    times = [reached.get(i, n - arrived_at[i]) for i in targets]
    return RunResult(policy.name, seed, regret, reward, clicks, impressions, fresh,
                     float(np.mean(times)) if times else float("nan"),
                     sum(i in reached for i in targets) / len(targets) if targets else float("nan"),
                     cold_clicks / cold_shown if cold_shown else float("nan"), n / spent if spent else float("inf"))


def run_all(scenario: Scenario, base: Config, *, jobs: int = 2, redis_url: str | None = None,
            http: str | None = None, progress: bool = True) -> list[RunResult]:
    """Every (policy, seed) of the scenario; banditrec runs share one Redis (an embedded one
    unless `redis_url`), each under its own key prefix."""
    embedded = None
    if redis_url is None and http is None:
        from store import EmbeddedRedis

        redis_dir = Path(tempfile.mkdtemp(prefix="banditrec-sim-redis-"))
        embedded = EmbeddedRedis(redis_dir, persist=False)
        redis_url = embedded.url
    tasks = [(spec, seed) for seed in range(scenario.run.seeds) for spec in scenario.run.policies]
    results = []
    try:
        bar = tqdm(total=len(tasks), desc=f"simulate {scenario.name}", unit="run", disable=not progress)
        if jobs <= 1 or http is not None:
            for spec, seed in tasks:
                results.append(run_one(scenario, spec, seed, base, redis_url, http))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, os.cpu_count() or 1)) as pool:
                futures = [pool.submit(run_one, scenario, spec, seed, to_dict(base), redis_url) for spec, seed in tasks]
                for future in as_completed(futures):
                    results.append(future.result())
                    bar.update()
        bar.close()
    finally:
        if embedded is not None:
            embedded.close()
            shutil.rmtree(redis_dir, ignore_errors=True)
    return sorted(results, key=lambda res: (scenario.run.policies.index(_spec_of(res, scenario)), res.seed))


def _spec_of(result: RunResult, scenario: Scenario) -> str:
    return result.policy if result.policy in scenario.run.policies else scenario.run.policies[0]
