"""`banditrec tune`: search exploration settings with the simulator's regret as the objective.

The search space is a TOML file::

    scenario = "churn"      # the simulator scenario to score on
    rounds = 5000
    seeds = 3
    method = "random"       # random | grid
    samples = 12            # random search: how many candidates
    seed = 0

    [space]
    "exploration.strategy" = ["epsilon_greedy", "thompson", "squarecb"]
    "exploration.epsilon_greedy.epsilon" = [0.05, 0.1, 0.2]
    "fresh.boost" = [0.0, 0.1, 0.3]
    "model.learning_rate" = { min = 0.05, max = 1.0, log = true }   # random search only

Every candidate (and the current config) runs the scenario's `banditrec` policy on the same
seeds, so they can be compared seed by seed. Safe promotion: a candidate is reported better
only if the 95 % interval of its per-seed regret difference to the current config lies
entirely below 0 (a paired t-interval; with one seed nothing can be promoted).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import shutil
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from banditrec.config import Config, from_dict, to_dict
from banditrec.errors import ConfigError
from simulations.config import load_scenario
from simulations.report import mean_ci
from simulations.runner import run_one


def load_space(path: str | Path) -> dict:
    try:
        with open(path, "rb") as fh:
            spec = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"search space {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"search space {str(path)!r} is not valid TOML: {exc}") from None
    if not isinstance(spec.get("space"), dict) or not spec["space"]:
        raise ConfigError(f"search space {str(path)!r} needs a non-empty [space] table")
    if spec.get("method", "random") not in ("random", "grid"):
        raise ConfigError(f"method == {spec.get('method')!r}, must be 'random' or 'grid'")
    return spec


def candidates(spec: dict, base: Config) -> list[dict[str, object]]:
    """The settings to try: dotted key -> value. Each is validated by building its config."""
    space, method = spec["space"], spec.get("method", "random")
    if method == "grid":
        for key, values in space.items():
            if not isinstance(values, list):
                raise ConfigError(f"grid search needs a list of values for {key!r}, got {values!r}")
        keys = list(space)
        out = [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]
    else:
        rng = np.random.default_rng(spec.get("seed", 0))
        out = []
        for _ in range(int(spec.get("samples", 12))):
            out.append({key: _draw(rng, key, values) for key, values in space.items()})
    for settings in out:
        apply(base, settings)  # fails early, naming the field, on a bad value
    return out


def apply(base: Config, settings: dict[str, object]) -> Config:
    data = to_dict(base)
    for dotted, value in settings.items():
        *path, last = dotted.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return from_dict(data)


def _draw(rng, key, values):
    if isinstance(values, list):
        return values[int(rng.integers(len(values)))]
    if isinstance(values, dict) and {"min", "max"} <= set(values):
        low, high = float(values["min"]), float(values["max"])
        if values.get("log"):
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        value = rng.uniform(low, high)
        return int(round(value)) if values.get("int") else float(value)
    raise ConfigError(f"space entry {key!r} must be a list of values or {{min, max[, log, int]}}, got {values!r}")


def tune(spec: dict, base: Config, *, jobs: int = 2, redis_url: str | None = None, progress: bool = True) -> dict:
    """Score the current config and every candidate; returns the ranked results and the best."""
    scenario = load_scenario(spec.get("scenario", "steady"))
    scenario = dataclasses.replace(scenario, run=dataclasses.replace(
        scenario.run, rounds=int(spec.get("rounds", 5000)), seeds=int(spec.get("seeds", 3)), policies=("banditrec",)))
    trials = [{}] + candidates(spec, base)  # trial 0: the current config
    configs = [to_dict(apply(base, settings)) for settings in trials]
    embedded = None
    if redis_url is None:
        import tempfile

        from store import EmbeddedRedis

        redis_dir = Path(tempfile.mkdtemp(prefix="banditrec-tune-redis-"))
        embedded = EmbeddedRedis(redis_dir, persist=False)
        redis_url = embedded.url
    regrets: dict[int, dict[int, float]] = {i: {} for i in range(len(trials))}
    try:
        tasks = [(i, seed) for i in range(len(trials)) for seed in range(scenario.run.seeds)]
        bar = tqdm(total=len(tasks), desc="tune", unit="run", disable=not progress)
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, os.cpu_count() or 1))) as pool:
            futures = {pool.submit(run_one, scenario, "banditrec", seed, configs[i], redis_url): (i, seed)
                       for i, seed in tasks}
            for future in as_completed(futures):
                trial, seed = futures[future]
                regrets[trial][seed] = float(future.result().regret.sum())
                bar.update()
        bar.close()
    finally:
        if embedded is not None:
            embedded.close()
            shutil.rmtree(redis_dir, ignore_errors=True)
    seeds = sorted(regrets[0])
    current_mean, current_half = mean_ci([regrets[0][s] for s in seeds])
    ranked = []
    for i, settings in enumerate(trials):
        mean, half = mean_ci([regrets[i][s] for s in seeds])
        diff, diff_half = mean_ci([regrets[i][s] - regrets[0][s] for s in seeds])
        better = i > 0 and np.isfinite(diff_half) and diff + diff_half < 0  # paired: lower on the same seeds
        ranked.append({"trial": i, "settings": settings or {"(current config)": ""}, "regret": mean, "ci": half,
                       "diff": diff, "diff_ci": diff_half, "better": better})
    ranked.sort(key=lambda row: row["regret"])
    promoted = [row for row in ranked if row["better"]]
    best = promoted[0] if promoted else next(row for row in ranked if row["trial"] == 0)
    return {"scenario": scenario.name, "ranked": ranked, "best": best,
            "best_config": configs[best["trial"]], "current": (current_mean, current_half)}


def table(result: dict) -> str:
    lines = [f"### tuning on `{result['scenario']}` (lower regret is better; ✔ = lower than the current config "
             "on the same seeds, with the 95 % interval of the difference below 0)", "",
             "| rank | settings | regret | vs current | better |", "| --- | --- | --- | --- | --- |"]
    for rank, row in enumerate(result["ranked"], start=1):
        settings = ", ".join(f"{k} = {v!r}" if v != "" else k for k, v in row["settings"].items())
        versus = "" if row["trial"] == 0 else f"{row['diff']:+.0f} ± {row['diff_ci']:.0f}"
        lines.append(f"| {rank} | {settings} | {row['regret']:.0f} ± {row['ci']:.0f} | {versus} | "
                     f"{'✔' if row['better'] else ''} |")
    return "\n".join(lines) + "\n"


def changed_settings(new: dict, old: dict) -> dict:
    """The settings of `new` (a nested config dict) that differ from `old`'s.

    >>> changed_settings({"model": {"bits": 18, "l2": 0.1}, "k": 1}, {"model": {"bits": 18, "l2": 0.0}, "k": 1})
    {'model': {'l2': 0.1}}
    """
    out = {}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            inner = changed_settings(value, old[key])
            if inner:
                out[key] = inner
        elif old.get(key) != value:
            out[key] = value
    return out
