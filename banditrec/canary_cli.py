"""`banditrec canary`: start a canary (a model snapshot, or an exploration config served with
the current model), see how it does, promote or abort it; and the off-policy gate before it
starts (`serving.canary` holds what the serving processes do with it)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

from banditrec.config import Config, ExplorationConfig, exploration_from_dict
from banditrec.errors import ConfigError

GATE_MIN_DECISIONS = 100  # settled decisions logged after the model was written, to judge a candidate off-policy


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    canary = sub.add_parser("canary", parents=[common],
                            help="canary rollout of a model snapshot or an exploration config: start, status, "
                                 "promote, abort")
    canary.add_argument("action", choices=["start", "status", "promote", "abort"])
    canary.add_argument("version", nargs="?", type=int, help="with start: the snapshot to try (`banditrec model list`)")
    canary.add_argument("--exploration", type=Path, metavar="TOML",
                        help="with start, instead of a VERSION: a TOML file whose [exploration] section (the "
                             "strategy and its settings) to try with the current model")
    canary.add_argument("--share", type=float, help="with start: share of the bandit's users (default: canary.share)")
    canary.add_argument("--json", action="store_true", help="with status: the same JSON as GET /experiments' canary")
    canary.add_argument("--gate", action="store_true",
                        help="with start: evaluate the candidate off-policy on decisions logged since its model "
                             "was written; do not start it if it is worse than the logged policy with confidence")
    canary.set_defaults(func=run)


def read_exploration(path: Path) -> ExplorationConfig:
    """The `[exploration]` section of a TOML file (a whole config file, or just that section)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{str(path)!r} is not valid TOML: {exc}") from None
    if not isinstance(data.get("exploration"), dict):
        raise ConfigError(f"{str(path)!r} has no [exploration] section to try")
    return exploration_from_dict(data["exploration"])


def run(config: Config, args) -> int:
    from serving import canary
    from serving.live import effective, same_exploration, section
    from store import store_session
    from store.canary import PROMOTING, PROMOTING_STALE_S, CanaryExists

    def fail(message: str) -> int:
        print(f"banditrec canary {args.action}: {message}", file=sys.stderr)
        return 2

    switch = f"Running services switch within {config.canary.check_s:g} s."
    with store_session(config.redis, config.data.path) as store:
        record = store.canary()
        if args.action == "start":
            if (args.version is None) == (args.exploration is None):
                return fail("name the VERSION to try (see `banditrec model list`) or --exploration FILE, not both")
            share = config.canary.share if args.share is None else args.share
            if not 0.0 < share <= 0.5:
                return fail(f"--share must be in (0, 0.5], got {share:g}")
            exploration = None
            if args.exploration is not None:
                tried = read_exploration(args.exploration)
                live = effective(config.exploration, store.live_exploration())
                if same_exploration(tried, live.config):
                    return fail(f"{args.exploration} says what every user gets already ({live.source}'s exploration)")
                exploration = section(tried)
            try:
                if args.gate:
                    passed, text = gate(config, store, args.version, exploration)
                    print(text)
                    if not passed:
                        return fail("not started: the off-policy estimate says no (see above)")
                record = store.start_canary(args.version, share, exploration=exploration)
            except KeyError:
                return fail(f"no snapshot v{args.version} (see `banditrec model list`)")
            except CanaryExists as exc:
                return fail(str(exc))
            print(f"canary {record['id']}: {canary.candidate(record)} for {share:.1%} of the bandit's users. {switch}")
            return 0
        if args.action == "status":
            result = canary.report(record, store.arm_counts(canary.experiment_of(record["id"])) if record else {},
                                   config.canary)
            if args.json:
                print(json.dumps(result, indent=2))
            elif result is None:
                print("no canary was started (`banditrec canary start VERSION`)")
            else:
                print(canary.format_report(result))
            return 0
        if record is not None and record["status"] == PROMOTING and not canary.endable(record, time.time()):
            return fail(f"canary {record['id']} is being promoted (since {time.time() - record['ended_at']:.0f} s); "
                        f"if the process promoting it died, run this again once {PROMOTING_STALE_S:.0f} s have passed")
        if not canary.endable(record, time.time()):
            return fail("no canary is running")
        if args.action == "abort":
            if not canary.abort(store, record, "by hand (banditrec canary abort)"):
                return fail("it ended meanwhile (see `banditrec canary status`)")
            print(f"canary {record['id']} aborted: every user gets the current model. {switch}")
            return 0
        became = canary.promote(store, record, config, "by hand (banditrec canary promote)")
        if became is None:
            return fail("it ended meanwhile (see `banditrec canary status`)")
        if record["kind"] == "exploration":
            print(f"canary {record['id']} promoted: {canary.candidate(record)} is the live exploration, over the "
                  f"config file's [exploration] as long as that stays as it is (`banditrec config show`). {switch}")
        else:
            print(f"canary {record['id']} promoted: {became} = v{record['version']}, learning on from its cursor "
                  f"(the rewards since are learned). Running services switch within "
                  f"{min(5.0, config.snapshot.interval_s):g} s.")
        return 0


def gate(config: Config, store, version: int | None, exploration: dict | None) -> tuple[bool, str]:
    """(passed, what it found) of `banditrec canary start --gate`: the candidate served as a
    canary would serve it, replayed on the settled decisions logged after its model was written
    (ones that model never learned), against the policy that logged them
    (`evaluation.replay.gate`). A snapshot is its own model; an exploration is judged with the
    newest snapshot that has enough such decisions after it."""
    from evaluation.log import settled
    from evaluation.replay import estimate, replay, table
    from evaluation.replay import gate as judge

    decisions = settled(config, store)
    if exploration is None:
        snapshot = store.get_snapshot(version)
        if snapshot is None:
            raise KeyError(version)
    else:
        config = config.replace(exploration=exploration)
        snapshot = None
        for meta in sorted(store.list_snapshots(), key=lambda m: -m["version"]):
            if sum(d.ts > meta["created_at"] for d in decisions) >= GATE_MIN_DECISIONS:
                snapshot, version = store.get_snapshot(meta["version"]), meta["version"]
                break
        if snapshot is None:
            return False, (f"no model snapshot has {GATE_MIN_DECISIONS} settled decisions logged after it (the gate "
                           "judges the exploration with a model that did not learn them); start without --gate to "
                           "try it on users directly")
    blob, meta = snapshot
    after = [d for d in decisions if d.ts > meta["created_at"]]
    if len(after) < GATE_MIN_DECISIONS:
        return False, (f"only {len(after)} settled decisions were logged after v{version} was written; the "
                       f"gate needs {GATE_MIN_DECISIONS} (start without --gate to try it on users directly)")
    estimates = estimate(replay(after, config, snapshot=(blob, meta["replica_blobs"])))
    passed, verdict = judge(estimates)
    model = f"model v{version}" + (" with the candidate exploration" if exploration is not None else "")
    return passed, f"{model}:\n" + table(estimates, len(after)) + "\n" + verdict
