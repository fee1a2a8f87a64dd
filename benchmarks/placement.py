"""New items placed by content alone: do they land among their collaborative neighbours? What each encoder costs.

    .venv/bin/python -m benchmarks.placement --seeds 5

Placement, on MovieLens 100k (`simulations.ratings`; the data comes from the `recbole` wheel):
per seed, 10 % of the items with at least 20 ratings are held out. The embeddings are fitted
as a build fits them on the other items and on every rating but the held-out items' (a rating
of 4 or 5 is a click, any other a view); then each held-out item is embedded from its record
alone, as `PUT /items` embeds a new item (title, first genre as category, every genre, year and
decade as attributes: `simulations.ratings.item_record`). Its 10 and 50 nearest items by the
cosine of the item vectors (what retrieval searches) are compared with its collaborative
neighbours: the nearest items by the collaborative part of a fit on all ratings. overlap@K is
the share of the K that are in both; `random` draws K items instead. Medians over the seeds,
with the smallest and largest.

Cost, per encoder, in a child process of its own: the time to fit the embeddings of
`--build-items` demo items (`retrieval/demo.py`, 100k) with their interactions, as `banditrec
build` fits them (a sentence model on every core; `--model-items`, 10k, scaled to 100k: its
encoding, nearly all of the time, is linear in items), the child's peak resident memory and how
much of it the fit added, and the median time to embed one new item (what `PUT /items` adds).
Then, in another child, what a serving process pays on its first embed (a sentence model loads):
the time of that first one-item embed and the resident memory it adds. `--build-items 0` skips it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from retrieval.config import TEXT_ENCODERS, EmbeddingConfig
from retrieval.data import Interactions
from retrieval.embeddings import ItemEmbedder, fit_item_embeddings
from simulations.movielens import load_movielens, movielens_dir
from simulations.ratings import item_record

KS = (10, 50)
ROOT = Path(__file__).resolve().parent.parent
NOW = 1_764_200_000


def _catalog(ml) -> list[dict]:
    return [{"item_id": ml.item_ids[i], "description": "", **item_record(ml, i, 0.0)} for i in range(ml.shape[1])]


def _rows(ml) -> list[tuple[str, str, str, float]]:
    return [(ml.user_ids[u], ml.item_ids[i], "click" if r >= 4 else "view", float(t))
            for u, i, r, t in zip(ml.user.tolist(), ml.item.tolist(), ml.rating.tolist(), ml.timestamp.tolist())]


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _top(queries: np.ndarray, base: np.ndarray, k: int) -> np.ndarray:
    sims = np.asarray(queries, dtype=np.float64) @ np.asarray(base, dtype=np.float64).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())]))


def placement(encoders=TEXT_ENCODERS, seeds: int = 5, holdout: float = 0.1, min_ratings: int = 20,
              data: str | None = None, cfg: EmbeddingConfig | None = None) -> dict:
    """{name: {K: [overlap@K per seed]}} for each encoder and `random`."""
    ml = load_movielens(data or movielens_dir())
    cfg = cfg or EmbeddingConfig()
    items, rows = _catalog(ml), _rows(ml)
    now = float(ml.timestamp.max()) + 1.0
    _, full, _ = fit_item_embeddings(items, Interactions.from_rows(rows), cfg, now)
    collab = _unit(full[:, cfg.content_dim:].astype(np.float64))
    eligible = np.flatnonzero(np.bincount(ml.item, minlength=ml.shape[1]) >= min_ratings)
    out = {name: {k: [] for k in KS} for name in (*encoders, "random")}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        held = np.sort(rng.choice(eligible, size=max(1, int(round(holdout * len(eligible)))), replace=False))
        kept = np.setdiff1d(np.arange(len(items)), held)
        held_ids = {items[h]["item_id"] for h in held}
        log = Interactions.from_rows(r for r in rows if r[1] not in held_ids)
        truth = {k: _top(collab[held], collab[kept], k) for k in KS}
        for encoder in encoders:
            embedder, vectors, _ = fit_item_embeddings([items[r] for r in kept], log,
                                                       dataclasses.replace(cfg, text_encoder=encoder), now, seed=seed)
            placed = embedder.embed([items[h] for h in held])  # as PUT /items embeds a new item
            for k in KS:
                out[encoder][k].append(_overlap(_top(placed, vectors, k), truth[k]))
        for k in KS:
            draws = np.vstack([rng.choice(len(kept), size=k, replace=False) for _ in held])
            out["random"][k].append(_overlap(draws, truth[k]))
    return out


def cost(encoder: str, n_items: int) -> dict:
    """Fit seconds for `n_items` demo items (and per 100k), peak RSS, one new item's embed time."""
    from retrieval.demo import generate_world

    world = generate_world(n_items=n_items, n_users=max(100, n_items // 10), seed=3, now=NOW)
    log = Interactions.from_rows(world.interactions)
    cfg = EmbeddingConfig(text_encoder=encoder)
    before = _memory_mb("VmRSS")
    t = time.perf_counter()
    embedder, _, _ = fit_item_embeddings(world.items, log, cfg, NOW, threads=0)  # as `banditrec build`
    seconds = time.perf_counter() - t
    peak = _memory_mb("VmHWM")
    one = []
    for item in world.items[:50]:
        t = time.perf_counter()
        embedder.embed([item])
        one.append(time.perf_counter() - t)
    return {"encoder": encoder, "items": n_items, "seconds": round(seconds, 2),
            "seconds_per_100k": round(seconds * 100_000 / n_items, 1),
            "peak_rss_mb": peak, "fit_adds_mb": peak - before, "one_item_ms": round(1000 * float(np.median(one)), 2)}


def first_embed(encoder: str) -> dict:
    """A serving process's first embed of one new item (an untrained embedder: no build needed):
    its seconds and the resident memory it adds (a sentence model loads then)."""
    from retrieval.demo import generate_world

    item = generate_world(n_items=1, n_users=10, seed=3, now=NOW).items[0]
    embedder = ItemEmbedder.untrained(EmbeddingConfig(text_encoder=encoder))
    before = _memory_mb("VmRSS")
    t = time.perf_counter()
    embedder.embed([item])
    seconds = time.perf_counter() - t
    return {"encoder": encoder, "first_item_s": round(seconds, 2), "first_item_adds_mb": _memory_mb("VmRSS") - before}


def _memory_mb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process; the peak, unlike ru_maxrss, is not inherited across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _in_child(flag: str, encoder: str, n_items: int = 0) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.placement", flag, encoder, "--build-items", str(n_items)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="0: only the cost")
    parser.add_argument("--holdout", type=float, default=0.1, help="share of the eligible items held out")
    parser.add_argument("--min-ratings", type=int, default=20, help="items with this many ratings may be held out")
    parser.add_argument("--encoders", default=",".join(TEXT_ENCODERS))
    parser.add_argument("--build-items", type=int, default=100_000, help="demo items for the cost (0: skip it)")
    parser.add_argument("--model-items", type=int, default=10_000,
                        help="at most this many for a sentence model (it is linear in items: scaled to 100k)")
    parser.add_argument("--data", help="a directory with ml-100k.{inter,item,user} (default: the recbole wheel's)")
    parser.add_argument("--cost-only", choices=TEXT_ENCODERS, help=argparse.SUPPRESS)  # the children of the cost
    parser.add_argument("--first-only", choices=TEXT_ENCODERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cost_only or args.first_only:
        print(json.dumps(cost(args.cost_only, args.build_items) if args.cost_only else first_embed(args.first_only)))
        return
    encoders = tuple(args.encoders.split(","))
    if args.seeds:
        result = placement(encoders, args.seeds, args.holdout, args.min_ratings, args.data)
        print(f"New-item placement, MovieLens 100k, {args.seeds} seeds (median, min-max):\n")
        print("| content encoder | overlap@10 | overlap@50 |\n| --- | --- | --- |")
        for name, by_k in result.items():
            cells = [f"{np.median(v):.3f} ({min(v):.3f}-{max(v):.3f})" for v in by_k.values()]
            print(f"| {name} | {' | '.join(cells)} |", flush=True)
    if args.build_items:
        print("\nCost (demo items, each encoder in a child process):\n")
        print("| content encoder | items | fit s | s per 100k items | peak RSS MB | the fit adds MB "
              "| one new item ms | a process's first item s | it adds MB |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for encoder in encoders:
            c = _in_child("--cost-only", encoder, args.build_items if encoder == "tfidf"
                          else min(args.build_items, args.model_items))
            f = _in_child("--first-only", encoder)
            print(f"| {encoder} | {c['items']} | {c['seconds']} | {c['seconds_per_100k']} | {c['peak_rss_mb']} | "
                  f"{c['fit_adds_mb']} | {c['one_item_ms']} | {f['first_item_s']} | {f['first_item_adds_mb']} |",
                  flush=True)


if __name__ == "__main__":
    main()
