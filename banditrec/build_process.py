"""The body of a build process (`banditrec.build.apart`). Outside the `banditrec.build` package
and importing nothing of banditrec at its top: the spawned child loads it (and the build's
name, a string) before anything else, so that what it changes first takes effect before the
build's imports:

- it leaves the workers' metrics directory (`PROMETHEUS_MULTIPROC_DIR`): importing
  `serving.metrics` there would leave a file per build process, and a
  `banditrec_served_model_version` series at 0 for its pid, in every scrape after it;
- SIGTERM and SIGINT end the build by `SystemExit`, so that its build lock is given back on the
  way out (a killed build would hold it for `BUILD_LOCK_S`); and it ends itself that way when
  the process that started it is gone (a worker killed at gunicorn's graceful timeout).
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time


def main(build: str, data: dict, kwargs: dict, send, parent: int) -> None:
    """Run `build` ("module:function") as `function(config, store, **kwargs)` and send back
    (True, its result) or (False, what it raised)."""
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit)
    threading.Thread(target=_watch, args=(parent,), daemon=True, name="banditrec-build-parent").start()

    import logging

    from banditrec.config import from_dict
    from banditrec.logs import setup as setup_logging
    from store import store_session

    module, _, name = build.partition(":")
    config = from_dict(data)
    setup_logging(config.server.log_format)
    try:
        with store_session(config.redis, config.data.path) as store:
            answer = (True, getattr(importlib.import_module(module), name)(config, store, **kwargs))
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        logging.getLogger("banditrec.build").exception("%s failed in its build process", name)
        answer = (False, exc)
    try:
        send.send(answer)
    except Exception as exc:  # noqa: BLE001 - an exception that cannot be pickled: its text instead
        send.send((False, RuntimeError(f"{name}: {answer[1]!r} (not picklable: {exc})")))
    finally:
        send.close()


def _exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)  # orphaned: end the build (and give its lock back)
