"""The `banditrec` command: build, serve, and look at model snapshots."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from banditrec.config import Config, load_config
from banditrec.errors import BanditrecError

log = logging.getLogger("banditrec")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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

    build = sub.add_parser("build", parents=[common], help="data -> embeddings -> Annoy index -> Redis")
    build.add_argument("--demo", action="store_true", help="generate the demo data set (if missing) and build from it")
    build.add_argument("--incremental", action="store_true",
                       help="only fold items added, changed or deleted through the API into a new Annoy version")
    build.add_argument("--catalog", type=Path, help="items, JSONL (see README)")
    build.add_argument("--users", type=Path, help="user profiles, JSONL (optional)")
    build.add_argument("--interactions", type=Path, help="interaction log, CSV (optional)")
    build.add_argument("--if-missing", action="store_true", help="do nothing if a build is already in place")
    build.add_argument("--now", type=float, help="unix time used for time decay (default: now)")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")
    build.set_defaults(func=_build)

    serve = sub.add_parser("serve", parents=[common], help="serve the HTTP API with gunicorn")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8765)")
    serve.set_defaults(func=_serve)

    model = sub.add_parser("model", parents=[common], help="model snapshots: list, or roll back to one")
    model.add_argument("action", choices=["list", "rollback"])
    model.add_argument("version", nargs="?", type=int, help="with rollback: the version to go back to")
    model.set_defaults(func=_model)
    return parser


def _config(args) -> Config:
    env = dict(os.environ)
    if args.data_dir:
        env["BANDITREC_DATA_DIR"] = args.data_dir
    if getattr(args, "host", None):
        env["BANDITREC_HOST"] = args.host
    if getattr(args, "port", None) is not None:
        env["BANDITREC_PORT"] = str(args.port)
    return load_config(args.config, env)


@contextmanager
def _store(config: Config):
    """A Store for the command's duration; its client (and an embedded server it started) closed after."""
    from store import open_store

    store, embedded = open_store(config.redis, config.data.path)
    try:
        yield store
    finally:
        store.close()
        if embedded is not None:
            embedded.close()


def _build(config: Config, args) -> int:
    from banditrec.build import ensure_demo, is_built, run_build, run_incremental

    if args.incremental:
        with _store(config) as store:
            summary = run_incremental(config, store, progress=not args.no_progress)
            log.info("incremental build: %s", summary or "nothing to fold (or another build is running)")
            return 0
    if args.demo == bool(args.catalog):
        print("banditrec build: give either --demo, --catalog FILE or --incremental", file=sys.stderr)
        return 2
    with _store(config) as store:
        if args.if_missing and is_built(config, store):
            log.info("build in place (%s); nothing to do", store.get_meta("build"))
            return 0
        if args.demo:
            paths = ensure_demo(config, now=args.now)
        else:
            paths = {"catalog": args.catalog, "users": args.users, "interactions": args.interactions}
        summary = run_build(config, store, **paths, now=args.now, progress=not args.no_progress)
        log.info("build done: %s", summary)
        return 0


def _serve(config: Config, args) -> int:
    """Run gunicorn on `app:create_app()`; start the embedded Redis here if there is no REDIS_URL."""
    from store.connection import EmbeddedRedis

    env = dict(os.environ)
    env.update(BANDITREC_DATA_DIR=str(config.data.path), BANDITREC_HOST=config.server.host,
               BANDITREC_PORT=str(config.server.port))
    if args.config:
        env["BANDITREC_CONFIG"] = str(Path(args.config).resolve())
    embedded = None
    if not config.redis.url:
        embedded = EmbeddedRedis(config.data.path / "redis", config.redis.embedded_fsync)
        env["REDIS_URL"] = embedded.url
    cmd = [sys.executable, "-m", "gunicorn", "--config", "python:banditrec.gunicorn_conf", "app:create_app()"]
    log.info("serving on http://%s:%d", config.server.host, config.server.port)
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum, _frame):
        proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        return proc.wait()
    finally:
        if embedded is not None:
            embedded.close()


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
            origin = f"\trollback of v{meta['from_version']}" if meta.get("origin") == "rollback" else ""
            print(f"v{meta['version']}\tcreated_at={meta['created_at']:.0f}\tlearned={meta.get('learned', 0)}"
                  f"\tt={meta.get('t', 0)}\treplicas={meta.get('replicas', 0)}\tcursor={meta['cursor']}{origin}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
