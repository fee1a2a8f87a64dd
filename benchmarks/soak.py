"""Soak: many mixed requests against one worker; errors and memory growth along the way.

    .venv/bin/python -m benchmarks.soak --items 100000 --users 10000 --requests 100000 --rate 100

One worker (which learns inline, as the single-process default does), a warm-up, then the
requests in chunks from `benchmarks.loadgen` (open loop: 1 feedback and 1 event per 8
requests, the rest /recommend), with the worker's memory read after each chunk: RSS, and
its anonymous (heap) part, since the rest of RSS is the memory-mapped index paged in as
queries reach it. Growth is measured from the end of the warm-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks.harness import ROOT, Bench, bench_for, parser_for
from benchmarks.http_load import Server, memory_mb


def chunk(server: Server, rate: float, requests: int, users: int, seed: int) -> dict:
    seconds = requests / rate
    out = subprocess.run([sys.executable, "-m", "benchmarks.loadgen", "--url", server.url, "--rate", str(rate),
                          "--seconds", str(seconds), "--users", str(users), "--feedback-every", "8",
                          "--events-every", "7", "--seed", str(seed)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(bench: Bench, *, requests: int, rate: float, chunks: int = 10, warmup: int = 5000,
        reward_wait_s: float | None = None) -> dict:
    feedback = {} if reward_wait_s is None else {"feedback": {"reward_wait_s": reward_wait_s}}
    server = Server(bench, workers=1, log_name="serve-soak", inactive={"after_s": 0.0}, **feedback)
    try:
        (pid,) = server.worker_pids(tries=5)
        users = bench.config.demo.n_users
        started = memory_mb(pid)
        warm = chunk(server, rate, min(warmup, requests), users, seed=0)
        base = memory_mb(pid)
        series, errors, t0 = [], {}, time.monotonic()
        for n in range(chunks):
            result = chunk(server, rate, requests // chunks, users, seed=n + 1)
            for name, count in (result["errors"] or {}).items():
                errors[name] = errors.get(name, 0) + count
            mem = memory_mb(pid)
            series.append({"requests": (n + 1) * (requests // chunks),
                           "minutes": round((time.monotonic() - t0) / 60, 1),
                           **mem, "all_p99": result["all_p99"], "achieved_rate": result["achieved_rate"],
                           "errors": result["errors"]})
            print(json.dumps(series[-1]), flush=True)
        last = series[-1]
        return {"rate": rate, "requests": requests,
                "warmup": {"requests": min(warmup, requests), "errors": warm["errors"]},
                "after_start": started, "after_warmup": base, "series": series, "errors": errors,
                "rss_growth_pct": round(100.0 * (last["rss"] / base["rss"] - 1), 1),
                "anon_growth_pct": round(100.0 * (last["anon"] / base["anon"] - 1), 1)}
    finally:
        server.stop()


def report(r: dict) -> str:
    lines = [f"Soak: {r['requests']} mixed requests (1 feedback and 1 event per 8) at {r['rate']:.0f} req/s "
             f"against one worker, after a {r['warmup']['requests']}-request warm-up.", "",
             f"After start: RSS {r['after_start']['rss']} MB (anon {r['after_start']['anon']}); after warm-up: "
             f"RSS {r['after_warmup']['rss']} MB (anon {r['after_warmup']['anon']}).", "",
             "| requests | minutes | RSS MB | anon MB | p99 ms | achieved req/s | errors |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in r["series"]:
        lines.append(f"| {s['requests']} | {s['minutes']} | {s['rss']} | {s['anon']} | {s['all_p99']} | "
                     f"{s['achieved_rate']} | {s['errors'] or 0} |")
    lines += ["", f"Growth after warm-up: RSS {r['rss_growth_pct']:+.1f} %, heap (anon) {r['anon_growth_pct']:+.1f} %; "
                  f"errors: {r['errors'] or 0}."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--reward-wait-s", type=float, help="feedback.reward_wait_s (default: the shipped 60 s; "
                        "shorter reaches the steady state, where unrewarded decisions are closed, sooner)")
    args = parser.parse_args(argv)
    bench = bench_for(args)
    try:
        print(report(run(bench, requests=args.requests, rate=args.rate, chunks=args.chunks,
                         reward_wait_s=args.reward_wait_s)))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
