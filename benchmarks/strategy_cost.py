"""Cost of each exploration strategy at 1000 candidates, relative to epsilon-greedy.

    .venv/bin/python benchmarks/strategy_cost.py [--requests 1000] [--candidates 1000] [--k 10]

Builds the demo catalog into a temporary directory, on a throw-away Redis prefix (the
embedded Redis of that directory, or REDIS_URL), and times the plain `recommend` function
(everything but HTTP) and `feedback` (record + learn) per strategy. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import uuid

import numpy as np

from banditrec.build import ensure_demo, run_build
from banditrec.config import load_config
from bandit.strategies import STRATEGIES
from serving import Service, feedback, recommend
from store import Store, connect


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="banditrec-bench-")
    base = load_config(args.config).replace(data={"dir": tmp.name}, retrieval={"n_candidates": args.candidates},
                                            inactive={"after_s": 0.0})
    paths = ensure_demo(base)
    client, embedded = connect(base.redis, base.data.path)
    store = Store(client, f"bench-{uuid.uuid4().hex[:8]}")
    rows = []
    try:
        run_build(base, store, **paths, progress=False)
        for name in ["epsilon_greedy"] + sorted(set(STRATEGIES) - {"epsilon_greedy"}):
            service = Service.open(base.replace(exploration={"strategy": name}), store=store, start_threads=False)
            rng = np.random.default_rng(0)
            rec, fb = [], []
            gc.collect()
            gc.freeze()
            for r in range(args.requests):
                body = {"user_id": f"u{rng.integers(base.demo.n_users)}", "k": args.k, "context": {"device": "mobile"}}
                t = time.perf_counter()
                out = recommend(service, body)
                rec.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                feedback(service, {"event_id": out["event_id"], "item_id": out["items"][0]["item_id"],
                                   "reward": float(rng.integers(2))})
                fb.append((time.perf_counter() - t) * 1000)
            gc.unfreeze()
            rows.append((name, np.percentile(rec, 50), np.percentile(rec, 99), np.percentile(fb, 50),
                         np.percentile(fb, 99)))
            service.close()
    finally:
        store.delete_all()
        client.close()
        if embedded is not None:
            embedded.close()
        tmp.cleanup()
    base_p50 = rows[0][1]
    print(f"| strategy ({args.candidates} candidates, k={args.k}) | recommend p50 ms | p99 ms | x epsilon-greedy (p50) "
          "| feedback p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, p50, p99, f50, f99 in rows:
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {p50 / base_p50:.2f} | {f50:.2f} | {f99:.2f} |")


if __name__ == "__main__":
    main()
