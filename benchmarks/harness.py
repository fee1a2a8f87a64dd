"""What every benchmark needs: a demo catalog of a given size, built once, and a Redis.

A bench directory holds `config.toml` (sizes, data dir, Redis), the demo data, the built
index and `build.json` (how long the build took, its peak memory). Redis is `REDIS_URL`
when set (keys under a prefix of their own), else an embedded server in the directory that
this process starts and every process it runs joins. `banditrec build` runs as a child
process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

from banditrec.config import Config, dump_toml, load_config
from store import connect

ROOT = Path(__file__).resolve().parent.parent
BANNER = "measured on: {machine}"


def percentiles(samples, qs=(50, 99)) -> list[float]:
    return [float(np.percentile(samples, q)) for q in qs] if len(samples) else [float("nan")] * len(qs)


def machine() -> str:
    cpu = "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GB RAM, Python {sys.version.split()[0]}"


class Bench:
    """A built demo deployment in `directory` (reused when it is already built for these sizes)."""

    def __init__(self, directory: Path, n_items: int, n_users: int, overrides: dict | None = None):
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / "config.toml"
        settings = tomllib.loads(self.config_path.read_text()) if self.config_path.exists() else {}
        if settings.get("demo") != {"n_items": n_items, "n_users": n_users}:  # (a kept file keeps its Redis)
            settings = {"data": {"dir": str(self.directory / "data")},
                        "redis": {"url": os.environ.get("REDIS_URL", ""), "prefix": f"bench-{n_items}"},
                        "demo": {"n_items": n_items, "n_users": n_users},
                        "index": {"rebuild_interval_s": 0.0, "refit_check_s": 0.0}}  # no builds mid-measurement
        for section, values in (overrides or {}).items():
            settings.setdefault(section, {}).update(values)
        self.config_path.write_text(dump_toml(settings))
        self.config: Config = load_config(self.config_path, env={})
        redis_url = self.config.redis.url
        self._embedded = None
        if not redis_url:  # start the embedded server here; the build and servers join it
            from store.connection import EmbeddedRedis

            self._embedded = EmbeddedRedis(self.config.data.path / "redis", "no")
            self.redis_url = self._embedded.url
        else:
            self.redis_url = redis_url

    def env(self) -> dict:
        """Environment for child processes: this bench's config and Redis."""
        return {**os.environ, "BANDITREC_CONFIG": str(self.config_path), "REDIS_URL": self.redis_url}

    def config_with(self, **sections) -> Config:
        return self.config.replace(redis={"url": self.redis_url}, **sections)

    def build(self) -> dict:
        """Build the demo deployment unless it is built; returns the build's time and peak RSS."""
        record = self.directory / "build.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "banditrec.cli", "build", "--demo", "--if-missing",
                              "--no-progress"], env=self.env(), cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if out.returncode != 0:
            raise RuntimeError(f"banditrec build failed:\n{out.stderr[-4000:]}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if "nothing to do" in out.stderr and record.exists():
            return {**json.loads(record.read_text()), "reused": True}
        info = {"items": self.config.demo.n_items, "users": self.config.demo.n_users, "seconds": round(seconds, 1),
                "peak_rss_mb": round(max(peak, before) / 1024, 0) if peak > before else None, "reused": False}
        record.write_text(json.dumps(info))
        return info

    def store(self, prefix: str | None = None):
        """A Store on this bench's Redis (the deployment's keys, or a throw-away prefix)."""
        from store import Store

        client, _ = connect(self.config.replace(redis={"url": self.redis_url}).redis, self.config.data.path)
        return Store(client, prefix or self.config.redis.prefix)

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.close()
            self._embedded = None


# A decision's wait for rewards in the benchmarks (the shipped 60 s + a 30 s closing delay would
# leave each section's decisions to be closed during the next one): `benchmarks.http_load`.
CLOSE_AFTER_S = 10.0
CLOSING = {"reward_wait_s": CLOSE_AFTER_S, "close_delay_s": 0.0}


def parser_for(doc: str) -> "argparse.ArgumentParser":
    """The options every benchmark script shares: where the deployment lives, and its size."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("runs/bench"), help="bench deployments live here")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    return parser


def bench_for(args) -> Bench:
    """The (built) deployment for parsed `parser_for` options."""
    bench = Bench(args.dir / f"catalog-{args.items}", args.items, args.users)
    bench.build()
    return bench


def user_ids(bench: Bench, n: int, seed: int = 0) -> list[str]:
    """Ids of demo users (as the generator names them), drawn uniformly."""
    rng = np.random.default_rng(seed)
    return [f"u{u}" for u in rng.integers(bench.config.demo.n_users, size=n)]


