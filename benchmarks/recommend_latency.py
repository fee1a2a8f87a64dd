"""Latency of the request path on the demo build, and Annoy recall against exact search.

    .venv/bin/python benchmarks/recommend_latency.py [--data-dir data] [--requests 2000]

Builds the demo catalog of the config (generated into a temporary directory) and uses a
throw-away Redis key prefix, so nothing served is touched: the embedded Redis of a temporary
directory, or REDIS_URL when set. Calls the same function the HTTP route calls; prints
markdown tables.
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
from retrieval.bundle import current_path, load_bundle
from serving import Service, feedback, recommend
from store import Store, connect


def percentiles(samples_ms):
    return np.percentile(samples_ms, 50), np.percentile(samples_ms, 99)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", help="TOML with your settings (demo size, index, retrieval)")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="banditrec-bench-")
    base = load_config(args.config).replace(data={"dir": tmp.name})
    paths = ensure_demo(base)
    client, embedded = connect(base.redis, base.data.path)
    store = Store(client, f"bench-{uuid.uuid4().hex[:8]}")
    print("| candidates | k | recommend p50 ms | p99 ms | feedback p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    try:
        run_build(base, store, **paths, progress=False)
        for n_candidates, k in ((200, 10), (1000, 10), (1000, 50)):
            config = base.replace(retrieval={"n_candidates": n_candidates}, server={"max_k": 100})
            service = Service.open(config, store=store, start_threads=False)
            rng = np.random.default_rng(0)
            rec_ms, fb_ms = [], []
            gc.collect()
            gc.freeze()
            for r in range(args.requests):
                body = {"user_id": f"u{rng.integers(base.demo.n_users)}", "k": k,
                        "context": {"device": "mobile", "hour": int(rng.integers(24))}}
                t = time.perf_counter()
                out = recommend(service, body)
                rec_ms.append((time.perf_counter() - t) * 1000)
                if r % 5 == 0:
                    t = time.perf_counter()
                    feedback(service, {"event_id": out["event_id"], "item_id": out["items"][0]["item_id"],
                                       "reward": float(rng.integers(2))})
                    fb_ms.append((time.perf_counter() - t) * 1000)
            gc.unfreeze()
            p50, p99 = percentiles(rec_ms)
            f50, f99 = percentiles(fb_ms)
            print(f"| {n_candidates} | {k} | {p50:.2f} | {p99:.2f} | {f50:.2f} | {f99:.2f} |")
            service.close()

        bundle = load_bundle(current_path(base.data.path), base.index.search_k)
        vectors = np.asarray(bundle.vectors)
        queries = vectors[np.random.default_rng(1).choice(len(vectors), 200, replace=False)]
        for n in (200, 1000):
            hits = 0
            for q in queries:
                exact = set(np.argsort(-(vectors @ q))[:n].tolist())
                hits += len(exact & set(bundle.index.search(q, n)[0].tolist()))
            print(f"\nAnnoy recall@{n} vs exact ({len(vectors)} items, {base.index.n_trees} trees, "
                  f"search_k {base.index.search_k}): {hits / (n * len(queries)):.3f}")
    finally:
        store.delete_all()
        client.close()
        if embedded is not None:
            embedded.close()
        tmp.cleanup()


if __name__ == "__main__":
    main()
