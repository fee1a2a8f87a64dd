"""Where /recommend spends its time, per stage and per strategy (in-process, no HTTP).

    .venv/bin/python benchmarks/stages.py --items 1000000 --users 100000 --requests 2000

Calls the function the HTTP route calls (`serving.recommend`) with a lap timer, on a demo
deployment of the given size (built once into --dir), for 1000 candidates and k = 50, with
one feedback per five recommendations. Prints a markdown table per strategy: p50 and p99
of each stage and of the whole call, in milliseconds.
"""

from __future__ import annotations

import gc
import json
import time

import numpy as np

from benchmarks.harness import CLOSING, Bench, bench_for, parser_for, percentiles, user_ids
from serving import Service
from serving.feedback import feedback
from serving.recommend import recommend
from serving.stages import RECOMMEND_STAGES, Laps

STRATEGIES = ("epsilon_greedy", "thompson", "squarecb", "greedy")


def measure(bench: Bench, strategy: str, requests: int, n_candidates: int = 1000, k: int = 50,
            seed: int = 0, worker: bool = False, direct_scoring: bool = True) -> dict:
    """{stage: [ms per request]}, plus "total" and "feedback". `worker`: as a worker beside a
    separate learner (it serves the snapshot, scoring from its weights); else as one process
    that learns inline; `direct_scoring` false: a worker scoring through VW's parser."""
    config = bench.config_with(retrieval={"n_candidates": n_candidates},
                               server={"max_k": max(k, 100), "learner": "process" if worker else "auto",
                                       "direct_scoring": direct_scoring},
                               exploration={"strategy": strategy}, inactive={"after_s": 0.0}, feedback=CLOSING)
    service = Service.open(config, start_threads=False)
    rng = np.random.default_rng(seed)
    users = user_ids(bench, requests, seed)
    stages = {s: [] for s in (*RECOMMEND_STAGES, "total", "feedback")}
    try:
        for warm in range(50):  # first touches of the mmap'd index and the model
            recommend(service, {"user_id": users[warm % len(users)], "k": k})
        service.popular.counts.start(service.catalog)  # as a started worker does ...
        service.popular.counts.wait()                  # ... and has done by the time traffic arrives
        service.start_exposure_flush()                 # as a worker does (batches only if exposure_flush_s > 0)
        gc.collect()
        gc.freeze()  # as the gunicorn workers do after start-up
        for r, user in enumerate(users):
            body = {"user_id": user, "k": k, "context": {"device": "mobile", "hour": int(rng.integers(24))}}
            laps = Laps()
            out = recommend(service, body, laps=laps)
            json.dumps(out)
            laps("serialise")
            for stage, ms in laps.ms().items():
                stages[stage].append(ms)
            stages["total"].append(sum(laps.stages.values()) * 1000.0)
            if r % 5 == 0 and out["items"]:
                t = time.perf_counter()
                feedback(service, {"event_id": out["event_id"], "item_id": out["items"][0]["item_id"],
                                   "reward": float(rng.integers(2))})
                stages["feedback"].append((time.perf_counter() - t) * 1000.0)
        gc.unfreeze()
    finally:
        service.close(save=False)  # what it learned here must not become the next benchmark's model
    return stages


def table(results: dict[str, dict]) -> str:
    """Markdown: a row per stage, p50 / p99 per strategy."""
    names = list(results)
    head = "| stage | " + " | ".join(f"{n} p50 | {n} p99" for n in names) + " |"
    rows = [head, "| --- " * (1 + 2 * len(names)) + "|"]
    for stage in (*RECOMMEND_STAGES, "total", "feedback"):
        cells = []
        for name in names:
            samples = results[name].get(stage, [])
            p50, p99 = percentiles(samples)
            cells += [f"{p50:.2f}", f"{p99:.2f}"] if len(samples) else ["–", "–"]
        label = f"**{stage}**" if stage == "total" else stage
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--worker", action="store_true",
                        help="also measure each strategy as a worker beside a separate learner")
    parser.add_argument("--through-vw", action="store_true",
                        help="with --worker: also as a worker that scores through VW's parser (direct_scoring off)")
    args = parser.parse_args(argv)
    bench = bench_for(args)
    try:
        results = {}
        for s in args.strategies.split(","):
            results[s] = measure(bench, s, args.requests)
            if args.worker:
                results[f"{s} (worker)"] = measure(bench, s, args.requests, worker=True)
            if args.worker and args.through_vw:
                results[f"{s} (worker, VW)"] = measure(bench, s, args.requests, worker=True, direct_scoring=False)
        print(table(results))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
