"""Memory per worker: 2 workers (and the learner) under load, each worker's private memory.

    .venv/bin/python -m benchmarks.worker_memory --items 1000000 --users 100000

`banditrec serve` with 2 workers at the shipped settings and 1000 candidates, then, from
`benchmarks.loadgen` in its own process: a warm-up (--warmup-s at --warmup-rate) and a step
(--step-s at --rate). Each worker's memory is read after start, after the warm-up and after
the step: RSS, its private part (what the process shares with no other: its own heap and
the pages of mapped files no other process has touched) and its anonymous part. Prints one
JSON object, then a markdown table. This is how the README's memory numbers were measured;
run it on the code before and after a change, one after the other, to compare.
"""

from __future__ import annotations

import json

from benchmarks.harness import Bench, bench_for, parser_for
from benchmarks.http_load import Server, load, memory_mb


def run(bench: Bench, *, warmup_s: float = 20, warmup_rate: float = 50, step_s: float = 60, rate: float = 25,
        n_candidates: int = 1000, direct_scoring: bool = True) -> dict:
    server = Server(bench, workers=2, log_name="serve-memory", retrieval={"n_candidates": n_candidates},
                    inactive={"after_s": 0.0}, server={"direct_scoring": direct_scoring})
    try:
        pids = sorted(server.worker_pids())
        users = bench.config.demo.n_users
        out = {"after start": {pid: memory_mb(pid) for pid in pids}}
        load(server, warmup_rate, warmup_s, users)
        out["after warm-up"] = {pid: memory_mb(pid) for pid in pids}
        step = load(server, rate, step_s, users)
        out["after the step"] = {pid: memory_mb(pid) for pid in pids}
        out["step"] = {"rate": rate, "seconds": step_s, "errors": step["errors"],
                       **{k: step[k] for k in ("recommend_p50", "recommend_p99", "all_p99")}}
        learner = server.learner_pid()
        out["learner"] = memory_mb(learner) if learner else None
        return out
    finally:
        server.stop()


def report(r: dict) -> str:
    stages = [s for s in r if s.startswith("after")]
    lines = ["| worker | " + " | ".join(f"{s}: RSS / private / own / anon MB" for s in stages) + " |",
             "| --- " * (1 + len(stages)) + "|"]
    for pid in r[stages[0]]:
        cells = [f"{r[s][pid]['rss']} / {r[s][pid]['private']} / {r[s][pid]['own']} / {r[s][pid]['anon']}"
                 for s in stages]
        lines.append(f"| {pid} | " + " | ".join(cells) + " |")
    step = r["step"]
    lines += ["", f"Step: {step['seconds']:g} s at {step['rate']:g} req/s, /recommend p50 {step['recommend_p50']} ms, "
                  f"p99 {step['recommend_p99']} ms, errors {step['errors'] or 0}."]
    if r["learner"]:
        lines.append(f"Learner: RSS {r['learner']['rss']} MB, private {r['learner']['private']} MB.")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--warmup-s", type=float, default=20)
    parser.add_argument("--warmup-rate", type=float, default=50)
    parser.add_argument("--step-s", type=float, default=60)
    parser.add_argument("--rate", type=float, default=25)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--through-vw", action="store_true", help="server.direct_scoring = false (to compare)")
    args = parser.parse_args(argv)
    bench = bench_for(args)
    try:
        result = run(bench, warmup_s=args.warmup_s, warmup_rate=args.warmup_rate, step_s=args.step_s,
                     rate=args.rate, n_candidates=args.candidates, direct_scoring=not args.through_vw)
        print(json.dumps(result))
        print(report(result))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
