"""The demo data set: generated into `<data.dir>/demo` for `banditrec build --demo`."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from banditrec.config import Config, to_dict
from retrieval.demo import generate_world

log = logging.getLogger("banditrec.build")


def demo_paths(data_dir: Path) -> dict[str, Path]:
    d = Path(data_dir) / "demo"
    return {"catalog": d / "items.jsonl", "users": d / "users.jsonl", "interactions": d / "interactions.csv"}


def ensure_demo(config: Config, now: float | None = None) -> dict[str, Path]:
    """Generate the demo data set into `<data.dir>/demo` unless it is there for this config."""
    paths = demo_paths(config.data.path)
    marker = paths["catalog"].parent / "demo.json"
    wanted = to_dict(config.demo)
    if marker.exists() and json.loads(marker.read_text()).get("demo") == wanted \
            and all(p.exists() for p in paths.values()):
        return paths
    d = config.demo
    log.info("generating demo data: %d items, %d users (seed %d)", d.n_items, d.n_users, d.seed)
    now = float(now if now is not None else time.time())
    world = generate_world(n_items=d.n_items, n_users=d.n_users, n_categories=d.n_categories, seed=d.seed,
                           now=now, mean_events_per_user=d.mean_events_per_user, history_days=d.history_days)
    world.write(paths["catalog"].parent)
    marker.write_text(json.dumps({"demo": wanted, "now": now}))
    return paths
