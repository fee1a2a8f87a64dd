"""Retrieval: Annoy's recall against exact search, both latencies, and where exact search stops being faster.

    .venv/bin/python -m benchmarks.recall --items 1000000 --users 100000

On the bench deployment's item vectors: recall@100 and recall@1000 of the configured Annoy
index (n_trees, search_k) against exact numpy search, for queries that are real users'
long-term vectors, with the latency of each; a sweep of search_k; and the crossover: exact
search and Annoy (same n_trees, search_k) timed on growing subsets of the catalog, so the
default `index.exact_below` can be checked against this machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Bench, bench_for, parser_for, percentiles
from retrieval.bundle import current_path, load_bundle
from retrieval.index import VectorIndex, build_annoy


def _exact(vectors: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    sims = vectors @ q
    top = np.argpartition(-sims, n - 1)[:n]
    return top[np.argsort(-sims[top], kind="stable")]


def _queries(bench: Bench, bundle, n: int) -> np.ndarray:
    """Long-term vectors of real users (what /recommend searches with); random items' as a fallback."""
    store = bench.store()
    try:
        out = []
        for u in np.random.default_rng(5).integers(bench.config.demo.n_users, size=4 * n):
            state = store.user_state(f"u{u}", fast=False)
            vec = state and state["vectors"].get(bundle.space)
            if vec is not None and np.linalg.norm(vec) > 0:
                out.append(np.asarray(vec, dtype=np.float32) / np.linalg.norm(vec))
            if len(out) == n:
                break
    finally:
        store.close()
    if len(out) < n:
        rows = np.random.default_rng(6).integers(len(bundle.vectors), size=n - len(out))
        out += [np.asarray(bundle.vectors[r]) for r in rows]
    return np.vstack(out)


def measure(bench: Bench, n_queries: int, search_ks=(5000, 10000, 20000, 40000),
            sizes=(10_000, 30_000, 100_000, 300_000)) -> dict:
    cfg = bench.config
    bundle = load_bundle(current_path(cfg.data.path), cfg.index.search_k)
    vectors = np.ascontiguousarray(bundle.vectors)
    queries = _queries(bench, bundle, n_queries)
    index = bundle.index
    exact_ms, truth = [], []
    for q in queries:
        t = time.perf_counter()
        truth.append(_exact(vectors, q, 1000))
        exact_ms.append((time.perf_counter() - t) * 1000)
    sweep = []
    for search_k in sorted(set(search_ks) | {cfg.index.search_k}):
        index.search_k = search_k
        hits100 = hits1000 = 0
        ms = []
        for q, exact in zip(queries, truth):
            t = time.perf_counter()
            ids, _ = index.search(q, 1000)
            ms.append((time.perf_counter() - t) * 1000)
            hits1000 += len(np.intersect1d(ids, exact))
            hits100 += len(np.intersect1d(ids[:100], exact[:100]))
        sweep.append({"search_k": search_k, "recall@100": hits100 / (100 * len(queries)),
                      "recall@1000": hits1000 / (1000 * len(queries)), "p50_ms": percentiles(ms)[0],
                      "p99_ms": percentiles(ms)[1], "configured": search_k == cfg.index.search_k})
    crossover = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in [s for s in sizes if s < len(vectors)] + [len(vectors)]:
            sub = vectors[:size]
            path = bundle.path / "items.ann" if size == len(vectors) else Path(tmp) / f"sub-{size}.ann"
            if size != len(vectors):
                build_annoy(sub, path, cfg.index.n_trees, cfg.index.build_seed)
            annoy = VectorIndex(path, sub.shape[1], cfg.index.search_k)
            a_ms, e_ms = [], []
            for q in queries[: min(100, len(queries))]:
                t = time.perf_counter()
                annoy.search(q, 1000)
                a_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                _exact(sub, q, min(1000, size))
                e_ms.append((time.perf_counter() - t) * 1000)
            annoy.close()
            crossover.append({"items": size, "annoy_p50_ms": percentiles(a_ms)[0],
                              "exact_p50_ms": percentiles(e_ms)[0]})
    faster = [c["items"] for c in crossover if c["exact_p50_ms"] <= c["annoy_p50_ms"]]
    return {"items": len(vectors), "n_trees": cfg.index.n_trees, "queries": len(queries),
            "exact_ms": dict(zip(("p50", "p99"), percentiles(exact_ms))), "sweep": sweep, "crossover": crossover,
            "exact_faster_up_to": max(faster) if faster else 0, "exact_below": cfg.index.exact_below}


def report(r: dict) -> str:
    lines = [f"{r['items']} items, {r['n_trees']} trees, {r['queries']} queries (users' long-term vectors); "
             f"exact numpy search of all items: p50 {r['exact_ms']['p50']:.2f} ms, "
             f"p99 {r['exact_ms']['p99']:.2f} ms.", "",
             "| search_k | recall@100 | recall@1000 | Annoy p50 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    for s in r["sweep"]:
        mark = " (configured)" if s["configured"] else ""
        lines.append(f"| {s['search_k']}{mark} | {s['recall@100']:.3f} | {s['recall@1000']:.3f} | "
                     f"{s['p50_ms']:.2f} | {s['p99_ms']:.2f} |")
    lines += ["", "Crossover (top 1000; configured n_trees and search_k):", "",
              "| items | Annoy p50 ms | exact p50 ms |", "| --- | --- | --- |"]
    for c in r["crossover"]:
        lines.append(f"| {c['items']} | {c['annoy_p50_ms']:.2f} | {c['exact_p50_ms']:.2f} |")
    lines += ["", f"Exact search was at least as fast up to {r['exact_faster_up_to']} items here; "
                  f"`index.exact_below` is {r['exact_below']} (catalogs below it are searched exactly)."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    bench = bench_for(args)
    try:
        print(report(measure(bench, args.queries)))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
