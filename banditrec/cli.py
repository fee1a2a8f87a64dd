"""The `banditrec` command: the argument parser and one function per command (build, serve,
learn, simulate, tune, export, evaluate, model, config, dead-letters, report); `canary` is
`banditrec.canary_cli`, `serve`'s process supervision `banditrec.supervisor`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from banditrec import canary_cli
from banditrec.config import Config, load_config
from banditrec.errors import BanditrecError
from banditrec.logs import setup as setup_logging

log = logging.getLogger("banditrec")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging("text")
    try:
        config = _config(args)
        return args.func(config, args)
    except BanditrecError as exc:
        print(f"banditrec: {exc.message}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML file with your settings (also $BANDITREC_CONFIG)")
    common.add_argument("--data-dir", help="directory for data, index versions and the embedded Redis")
    parser = argparse.ArgumentParser(prog="banditrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", parents=[common], help="data -> embeddings -> vector index -> Redis (without "
                                                           "--catalog or --demo: refit from the served catalog and "
                                                           "everything received through the API)")
    build.add_argument("--demo", action="store_true", help="generate the demo data set (if missing) and build from it")
    build.add_argument("--incremental", action="store_true",
                       help="only fold items added, changed or deleted through the API into a new index version")
    build.add_argument("--catalog", type=Path, help="items, JSONL (see README); without it, the served items and "
                                                    "those received through PUT /items")
    build.add_argument("--users", type=Path, help="user profiles, JSONL (optional)")
    build.add_argument("--interactions", type=Path, help="interaction log, CSV (optional)")
    build.add_argument("--if-missing", action="store_true", help="do nothing if a build is already in place")
    build.add_argument("--now", type=float, help="unix time used for time decay (default: now)")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")
    build.set_defaults(func=_build)

    serve = sub.add_parser("serve", parents=[common], help="serve the HTTP API with gunicorn")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8765)")
    serve.add_argument("--workers", type=int, help="gunicorn worker processes (default from config: 1); with more "
                                                   "than one, a separate learner process learns")
    serve.set_defaults(func=_serve)

    learn = sub.add_parser("learn", parents=[common],
                           help="the separate learner: learn the reward stream, publish model snapshots")
    learn.set_defaults(func=_learn)

    sim = sub.add_parser("simulate", parents=[common], help="compare policies on a simulated world (regret, CTR, ...)")
    sim.add_argument("--scenario", default="steady", help="steady | churn | cold_users | drift | small")
    sim.add_argument("--policies", help="comma-separated; e.g. banditrec,banditrec:thompson,banditrec:noboost,"
                                        "azure,mabwiser_lints,popularity,random,oracle (default: the scenario's)")
    sim.add_argument("--rounds", type=int, help="decisions per run (default: the scenario's)")
    sim.add_argument("--seeds", type=int, help="runs per policy (default 5)")
    sim.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes")
    sim.add_argument("--out", type=Path, help="output directory (default: runs/<scenario>)")
    sim.add_argument("--http", help="drive a running banditrec at this URL instead of an in-process one")
    sim.add_argument("--no-plots", action="store_true")
    sim.add_argument("--write-world", type=Path, metavar="DIR",
                     help="only write the scenario's starting world (seed 0: items, users, interactions) to DIR, "
                          "to build a server for --http from it, and exit")
    sim.set_defaults(func=_simulate)

    tune = sub.add_parser("tune", parents=[common], help="search exploration settings against the simulator")
    tune.add_argument("--space", type=Path, required=True, help="search space TOML (see simulations/tune.py)")
    tune.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    tune.add_argument("--out", type=Path, default=Path("runs/tune"))
    tune.set_defaults(func=_tune)

    export = sub.add_parser("export", parents=[common], help="write the settled decision log as VW DSJson")
    export.add_argument("--format", choices=["dsjson"], default="dsjson")
    export.add_argument("--out", type=Path, required=True)
    export.set_defaults(func=_export)

    evaluate = sub.add_parser("evaluate", parents=[common],
                              help="off-policy evaluation: how a candidate config would have done on the log")
    evaluate.add_argument("--log", type=Path, help="a DSJson file (default: the decision log in Redis)")
    evaluate.add_argument("--candidate", type=Path, help="TOML with the candidate's settings (default: --config's)")
    evaluate.add_argument("--importance", action="store_true", help="also: the drop without each feature namespace")
    evaluate.add_argument("--out", type=Path, default=Path("runs/evaluate"))
    evaluate.set_defaults(func=_evaluate)

    model = sub.add_parser("model", parents=[common], help="model snapshots: list, or roll back to one")
    model.add_argument("action", choices=["list", "rollback"])
    model.add_argument("version", nargs="?", type=int, help="with rollback: the version to go back to")
    model.set_defaults(func=_model)

    canary_cli.add_parser(sub, common)

    conf = sub.add_parser("config", parents=[common],
                          help="show the config in effect (file, environment and a promoted exploration), or drop "
                               "a promoted exploration")
    conf.add_argument("action", choices=["show", "clear-live"])
    conf.set_defaults(func=_config_command)

    dead = sub.add_parser("dead-letters", parents=[common],
                          help="rewards set aside because they could not be learned, with the error")
    dead.add_argument("--json", action="store_true", help="one JSON object per line")
    dead.set_defaults(func=_dead_letters)

    report = sub.add_parser("report", parents=[common],
                            help="the A/B holdout: per-arm CTR, conversion, revenue, sessions and the lift")
    report.add_argument("--json", action="store_true", help="the same JSON as GET /experiments")
    report.set_defaults(func=_report)
    return parser


def _config(args) -> Config:
    env = dict(os.environ)
    if args.data_dir:
        env["BANDITREC_DATA_DIR"] = args.data_dir
    if getattr(args, "host", None):
        env["BANDITREC_HOST"] = args.host
    if getattr(args, "port", None) is not None:
        env["BANDITREC_PORT"] = str(args.port)
    if getattr(args, "workers", None) is not None:
        env["BANDITREC_WORKERS"] = str(args.workers)
    return load_config(args.config, env)


def _store(config: Config):
    """A Store for the command's duration; its client (and an embedded server it started) closed after."""
    from store import store_session

    return store_session(config.redis, config.data.path)


def _build(config: Config, args) -> int:
    from banditrec.build import ensure_demo, is_built, run_build, run_incremental

    if args.incremental:
        with _store(config) as store:
            summary = run_incremental(config, store, progress=not args.no_progress)
            log.info("incremental build: %s", summary or "nothing to fold (or another build is running)")
            return 0
    if args.demo and args.catalog:
        print("banditrec build: give either --demo or --catalog FILE (or neither: refit from what the API "
              "received)", file=sys.stderr)
        return 2
    with _store(config) as store:
        if args.if_missing and is_built(config, store):
            log.info("build in place (%s); nothing to do", store.get_meta("build"))
            return 0
        if args.demo:
            paths = ensure_demo(config, now=args.now)
        else:
            paths = {"catalog": args.catalog, "users": args.users, "interactions": args.interactions}
        summary = run_build(config, store, **paths, now=args.now, progress=not args.no_progress,
                            threads=0)  # a build of its own: a sentence model may use every core
        log.info("build done: %s", summary)
        return 0


def _serve(config: Config, args) -> int:
    from banditrec.supervisor import serve

    return serve(config, args.config)


def _learn(config: Config, args) -> int:
    """Run the separate learner until SIGINT/SIGTERM (then a final snapshot)."""
    import threading

    from banditrec.build.apart import SERVED_STEPS
    from serving.learn_loop import LearnerProcess
    from serving.metrics import serves_no_requests

    if config.server.learns_inline:
        print("banditrec learn: this deployment learns in its serving process (server.workers = 1, "
              "server.learner = \"auto\"); for a separate learner set server.learner = \"external\"",
              file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    parent = os.environ.get("BANDITREC_LEARNER_PARENT")
    serves_no_requests()
    with _store(config) as store:
        # its refits' full builds in a process of their own, as a serving worker's: learning goes on meanwhile
        LearnerProcess(config, store, refitter=SERVED_STEPS.refitter).run(stop, parent=int(parent) if parent else None)
    return 0


def _simulate(config: Config, args) -> int:
    import dataclasses

    from simulations.config import load_scenario
    from simulations.report import markdown, plot, summarize, write_csv, write_runs
    from simulations.runner import run_all

    scenario = load_scenario(args.scenario)
    run = scenario.run
    changes = {k: v for k, v in (("rounds", args.rounds), ("seeds", args.seeds)) if v is not None}
    if args.policies:
        changes["policies"] = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    scenario = dataclasses.replace(scenario, run=dataclasses.replace(run, **changes))
    if args.write_world:
        from simulations.world import SimWorld

        world = SimWorld(scenario.world, 0, scenario.run.rounds)
        paths = world.write_initial(args.write_world)
        print(f"banditrec build --catalog {paths['catalog']} --users {paths['users']} "
              f"--interactions {paths['interactions']} --now {world.start:.0f}")
        return 0
    out = args.out or Path("runs") / scenario.name
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = run_all(scenario, config, jobs=args.jobs, redis_url=config.redis.url or None, http=args.http)
    seconds = time.perf_counter() - started
    title = (f"{scenario.name}: {scenario.run.rounds} rounds x {scenario.run.seeds} seeds, k = {scenario.run.k} "
             f"({seconds:.0f} s on {args.jobs} processes)")
    text = markdown(summarize(results), title)
    if args.http:  # the server's own A/B report: what its holdout says about the same traffic
        from serving.experiment import format_report
        from simulations.policies.banditrec import BanditrecHTTP

        server = BanditrecHTTP(args.http)
        try:
            text += "\n\n### The server's A/B report (GET /experiments)\n\n" + format_report(server.experiment()) + "\n"
        finally:
            server.close()
    (out / "summary.md").write_text(text)
    every = min(scenario.run.report_every, max(1, scenario.run.rounds // 20))  # at least 20 points per run
    write_csv(results, out / "per_round.csv", every)
    write_runs(results, out / "per_run.csv")
    if not args.no_plots:
        plot(results, out, scenario.name, every)
    print(text)
    log.info("wrote %s (summary.md, per_round.csv, per_run.csv%s)", out,
             "" if args.no_plots else ", regret.png, ctr.png, fresh.png")
    return 0


def _tune(config: Config, args) -> int:
    from banditrec.config import dump_toml, to_dict
    from simulations.tune import changed_settings, load_space, table, tune

    result = tune(load_space(args.space), config, jobs=args.jobs, redis_url=config.redis.url or None)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ranked.md").write_text(table(result))
    changed = changed_settings(result["best_config"], to_dict(config))
    (args.out / "best.toml").write_text("# the best config found by `banditrec tune` (only what differs from yours)\n"
                                        + (dump_toml(changed) if changed else "# (the current config stays best)\n"))
    print(table(result))
    log.info("wrote %s (ranked.md, best.toml)", args.out)
    return 0


def _settled_log(config: Config):
    from evaluation.log import settled

    with _store(config) as store:
        return settled(config, store)


def _export(config: Config, args) -> int:
    from evaluation.log import write_dsjson

    count = write_dsjson(_settled_log(config), args.out)
    log.info("wrote %d settled decisions to %s", count, args.out)
    return 0


def _evaluate(config: Config, args) -> int:
    from evaluation.log import read_dsjson
    from evaluation.replay import estimate, importance, plot, replay, table

    decisions = list(read_dsjson(args.log)) if args.log else _settled_log(config)
    candidate = load_config(args.candidate, {}) if args.candidate else config
    estimates = estimate(replay(decisions, candidate))
    text = table(estimates, len(decisions))
    if args.importance:
        rows = importance(decisions, candidate, estimates)
        text += ("\n### feature importance (candidate's SNIPS without each namespace)\n\n"
                 "| namespace | without | drop |\n| --- | --- | --- |\n"
                 + "".join(f"| {s} | {w:.4f} | {d:+.4f} |\n" for s, w, d in rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.md").write_text(text)
    plot(estimates, args.out / "evaluation.png")
    print(text)
    return 0


def _model(config: Config, args) -> int:
    with _store(config) as store:
        if args.action == "rollback":
            if args.version is None:
                print("banditrec model rollback: name the VERSION (see `banditrec model list`)", file=sys.stderr)
                return 2
            try:
                version = store.rollback_snapshot(args.version, store.reward_head(), config.snapshot.keep)
            except KeyError:
                print(f"banditrec model rollback: no snapshot v{args.version} (see `banditrec model list`)",
                      file=sys.stderr)
                return 2
            print(f"v{version} = v{args.version}; rewards recorded until now are skipped. Running services "
                  f"switch to it within {min(5.0, config.snapshot.interval_s):g} s.")
            return 0
        for meta in store.list_snapshots():
            origin = f"\t{meta['origin']} of v{meta['from_version']}" if meta.get("origin") in ("rollback", "canary") \
                else ""
            print(f"v{meta['version']}\tcreated_at={meta['created_at']:.0f}\tlearned={meta.get('learned', 0)}"
                  f"\tt={meta.get('t', 0)}\treplicas={meta.get('replicas', 0)}\tcursor={meta['cursor']}{origin}")
        return 0


def _config_command(config: Config, args) -> int:
    """`banditrec config show`: the config in effect as TOML (keys masked), with the exploration
    a canary promoted where it applies; `clear-live`: drop that promotion."""
    import re

    from banditrec.config import dump_toml, to_dict
    from serving.live import describe, effective

    with _store(config) as store:
        if args.action == "clear-live":
            dropped = store.clear_live_exploration()
            print("dropped the promoted exploration: running services go back to their config file's within "
                  f"{config.canary.check_s:g} s" if dropped else "no exploration was promoted")
            return 0
        live = store.live_exploration()
    exploring = effective(config.exploration, live)
    data = to_dict(config.replace(exploration=to_dict(exploring.config)))
    for key in ("api_key", "read_key"):
        data["server"][key] = "***" if data["server"][key] else ""
    data["redis"]["url"] = re.sub(r"//[^@/]*@", "//***@", data["redis"]["url"])
    source = args.config or os.environ.get("BANDITREC_CONFIG") or "the defaults only"
    print(f"# the config in effect: {source}, the environment, and the live exploration\n"
          f"# {describe(exploring, live)}\n" + dump_toml(data))
    return 0


def _dead_letters(config: Config, args) -> int:
    import json

    with _store(config) as store:
        letters = store.dead_letters()
    for letter in letters:
        entry = letter["entry"]
        print(json.dumps(letter) if args.json else
              f"{letter['id']}\tevent_id={entry.get('event_id')}\titem_id={entry.get('item_id')}\t{letter['error']}")
    if not args.json:
        print(f"{len(letters)} reward(s) could not be learned", file=sys.stderr)
    return 0


def _report(config: Config, args) -> int:
    import json

    from serving.experiment import format_report, report

    with _store(config) as store:
        result = report(store.arm_counts(config.experiment.salt), config.experiment)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
