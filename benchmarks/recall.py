"""Retrieval: the index kinds' recall against exact search, their latencies, and where exact search stops being faster.

    .venv/bin/python -m benchmarks.recall --items 1000000 --users 100000 [--faiss]

On the bench deployment's item vectors, for queries that are real users' long-term vectors
(what /recommend searches with): recall@100 and recall@1000 against exact numpy search, and
the latency of a top-1000 query, for each index kind (`ivf`, `annoy`) over a sweep of
`search_k`, each kind built here with the configured settings (and its build time); with
`--faiss` (and faiss-cpu installed; it is not a dependency of banditrec) FAISS's IVF-Flat
and HNSW on the same vectors, one thread, as an outside reference. Then the crossover: exact
search and the configured kind timed on growing subsets of the catalog, so the default
`index.exact_below` can be checked against this machine.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Bench, bench_for, parser_for, percentiles
from retrieval.bundle import current_path, load_bundle
from retrieval.index import KINDS, VectorIndex, build_index
from retrieval.ivf import auto_nlist

SWEEPS = {"ivf": (5000, 10000, 20000, 40000), "annoy": (5000, 10000, 20000, 40000)}


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


def _built(kind: str, vectors: np.ndarray, cfg, directory: Path) -> float:
    """Build `kind` over `vectors` into `directory` once (kept for the next run); its build seconds."""
    settings = {"kind": kind, "items": len(vectors), "n_trees": cfg.index.n_trees, "nlist": cfg.index.nlist,
                "seed": cfg.index.build_seed}
    record = directory / "recall.json"
    if record.exists() and json.loads(record.read_text())["settings"] == settings:
        return json.loads(record.read_text())["seconds"]
    directory.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    build_index(kind, vectors, directory, n_trees=cfg.index.n_trees, nlist=cfg.index.nlist, seed=cfg.index.build_seed)
    seconds = time.perf_counter() - t
    record.write_text(json.dumps({"settings": settings, "seconds": seconds}))
    return seconds


def _sweep(search, queries, truth) -> dict:
    hits100 = hits1000 = 0
    ms = []
    for q, exact in zip(queries, truth):
        t = time.perf_counter()
        ids = search(q)
        ms.append((time.perf_counter() - t) * 1000)
        hits1000 += len(np.intersect1d(ids, exact))
        hits100 += len(np.intersect1d(ids[:100], exact[:100]))
    p50, p99 = percentiles(ms)
    return {"recall@100": hits100 / (100 * len(queries)), "recall@1000": hits1000 / (1000 * len(queries)),
            "p50_ms": p50, "p99_ms": p99}


def _faiss_rows(vectors: np.ndarray, queries, truth, nlist: int) -> list[dict]:
    """FAISS IVF-Flat and HNSW (inner product, one thread) on the same vectors, if faiss is installed."""
    try:
        import faiss
    except ImportError:
        return []
    faiss.omp_set_num_threads(1)
    rows = []
    t = time.perf_counter()
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    ivf = faiss.IndexIVFFlat(quantizer, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors[np.random.default_rng(0).choice(len(vectors), min(len(vectors), 64 * nlist), replace=False)])
    ivf.add(vectors)
    built = time.perf_counter() - t
    for nprobe in (8, 16, 32, 64):
        ivf.nprobe = nprobe
        rows.append({"kind": "faiss IVF-Flat", "search_k": f"nprobe {nprobe}", "build_s": built,
                     **_sweep(lambda q: ivf.search(q[None, :], 1000)[1][0], queries, truth)})
    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(vectors)
    built = time.perf_counter() - t
    for ef in (1000, 2000):
        hnsw.hnsw.efSearch = ef
        rows.append({"kind": "faiss HNSW32", "search_k": f"efSearch {ef}", "build_s": built,
                     **_sweep(lambda q: hnsw.search(q[None, :], 1000)[1][0], queries, truth)})
    return rows


def measure(bench: Bench, n_queries: int, sweeps: dict | None = None, sizes=(10_000, 30_000, 100_000, 300_000),
            with_faiss: bool = False) -> dict:
    cfg = bench.config
    bundle = load_bundle(current_path(cfg.data.path), cfg.index.search_k)
    vectors = np.ascontiguousarray(bundle.vectors)
    queries = _queries(bench, bundle, n_queries)
    exact_ms, truth = [], []
    for q in queries:
        t = time.perf_counter()
        truth.append(_exact(vectors, q, 1000))
        exact_ms.append((time.perf_counter() - t) * 1000)
    sweep = []
    for kind in KINDS:
        directory = bench.directory / f"recall-{kind}"
        build_s = _built(kind, vectors, cfg, directory)
        index = VectorIndex(directory, vectors.shape[1], kind=kind)
        for search_k in sorted(set((sweeps or SWEEPS)[kind]) | {cfg.index.search_k}):
            index.search_k = search_k
            sweep.append({"kind": kind, "search_k": search_k, "build_s": build_s,
                          "configured": kind == cfg.index.kind and search_k == cfg.index.search_k,
                          **_sweep(lambda q: index.search(q, 1000)[0], queries, truth)})
        index.close()
    if with_faiss:
        sweep += [{**row, "configured": False}
                  for row in _faiss_rows(vectors, queries, truth, cfg.index.nlist or auto_nlist(len(vectors)))]
    crossover = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in [s for s in sizes if s < len(vectors)] + [len(vectors)]:
            sub = vectors[:size]
            directory = bench.directory / f"recall-{cfg.index.kind}" if size == len(vectors) else Path(tmp) / str(size)
            if size != len(vectors):
                directory.mkdir()
                build_index(cfg.index.kind, sub, directory, n_trees=cfg.index.n_trees, nlist=cfg.index.nlist,
                            seed=cfg.index.build_seed)
            index = VectorIndex(directory, sub.shape[1], cfg.index.search_k, kind=cfg.index.kind)
            a_ms, e_ms = [], []
            for q in queries[: min(100, len(queries))]:
                t = time.perf_counter()
                index.search(q, 1000)
                a_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                _exact(sub, q, min(1000, size))
                e_ms.append((time.perf_counter() - t) * 1000)
            index.close()
            crossover.append({"items": size, "index_p50_ms": percentiles(a_ms)[0],
                              "exact_p50_ms": percentiles(e_ms)[0]})
    faster = [c["items"] for c in crossover if c["exact_p50_ms"] <= c["index_p50_ms"]]
    return {"items": len(vectors), "kind": cfg.index.kind, "n_trees": cfg.index.n_trees,
            "nlist": cfg.index.nlist or auto_nlist(len(vectors)), "queries": len(queries),
            "exact_ms": dict(zip(("p50", "p99"), percentiles(exact_ms))), "sweep": sweep, "crossover": crossover,
            "exact_faster_up_to": max(faster) if faster else 0, "exact_below": cfg.index.exact_below}


def report(r: dict) -> str:
    lines = [f"{r['items']} items, {r['queries']} queries (users' long-term vectors), top 1000; ivf with "
             f"{r['nlist']} partitions, annoy with {r['n_trees']} trees; exact numpy search of all items: "
             f"p50 {r['exact_ms']['p50']:.2f} ms, p99 {r['exact_ms']['p99']:.2f} ms.", "",
             "| kind | search_k | recall@100 | recall@1000 | p50 ms | p99 ms | build s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in r["sweep"]:
        mark = " (configured)" if s["configured"] else ""
        lines.append(f"| {s['kind']} | {s['search_k']}{mark} | {s['recall@100']:.3f} | {s['recall@1000']:.3f} | "
                     f"{s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['build_s']:.0f} |")
    lines += ["", f"Crossover (top 1000; the configured kind, {r['kind']}, and search_k):", "",
              f"| items | {r['kind']} p50 ms | exact p50 ms |", "| --- | --- | --- |"]
    for c in r["crossover"]:
        lines.append(f"| {c['items']} | {c['index_p50_ms']:.2f} | {c['exact_p50_ms']:.2f} |")
    lines += ["", f"Exact search was at least as fast up to {r['exact_faster_up_to']} items here; "
                  f"`index.exact_below` is {r['exact_below']} (catalogs below it are searched exactly)."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--faiss", action="store_true", help="also FAISS IVF-Flat and HNSW (needs faiss-cpu)")
    args = parser.parse_args(argv)
    bench = bench_for(args)
    try:
        print(report(measure(bench, args.queries, with_faiss=args.faiss)))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
