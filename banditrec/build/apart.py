"""Builds a serving process asks for (an incremental rebuild, a refit), run in a process of their own.

An incremental build reads the whole served version (at 1M items: every item record, 256 MB
of vectors) and writes a new one: ~40 s of CPU. Run on a thread of a serving worker, it
held that worker's requests behind the GIL for as long, and the worker kept 109-232 MB more
of its own memory for good afterwards (the freed records fragment the heap; measured at 1M
items, 2 workers). In a child process the worker only waits on a pipe, and everything the
build touched goes back to the system when the child exits.

The child is spawned, not forked (a serving process has threads: a fork could copy a lock
some other thread holds), gets the parent's resolved config, opens its own Redis
connection (an embedded server is joined, not started), logs as the parent does, and sends
back the build's summary or its exception (`banditrec.build_process`: also how it keeps out
of the workers' metrics and gives its build lock back when stopped).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from typing import Callable

from banditrec.build.full import run_build
from banditrec.build.incremental import pending_changes, run_incremental
from banditrec.build.lock import BUILD_LOCK_S
from banditrec.build.refit import Refitter
from banditrec.build_process import main as child_main
from banditrec.config import Config, to_dict
from banditrec.errors import BanditrecError
from serving.service import BuildSteps
from store import Store

_STOP_GRACE_S = 30.0  # a stopped build process's time to give its lock back before it is killed


class BuildProcessError(BanditrecError):
    """The build process ended without an answer (killed, out of memory, crashed), or did not
    answer in time and was stopped."""


def run_apart(build: Callable[..., dict | None], config: Config, store: Store, *, timeout_s: float = BUILD_LOCK_S,
              **kwargs) -> dict | None:
    """`build(config, store, **kwargs)` in a spawned process (`banditrec.build_process`): its
    return value, or what it raised (re-raised here; `BuildProcessError` if the child ended
    without an answer: killed, out of memory, stopped). The child connects to the Redis `config`
    names (`redis.url`, or the embedded server of `data.dir`, joined) under `store`'s key
    prefix. `build` must be a module-level function (the child imports it by name). Waits as
    long as the build takes, up to `timeout_s` (by default as long as the build lock lasts,
    `BUILD_LOCK_S`: past that another build could take the lock): then the child is stopped
    (SIGTERM: it gives its lock back; SIGKILL if it has not ended `_STOP_GRACE_S` later, its
    lock then expires by itself) and BuildProcessError raised. So is a child whose caller's
    wait is cut short (an exception in this thread): no build is left running unwaited for."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    name = f"{build.__module__}:{build.__qualname__}"
    data = to_dict(config.replace(redis={"prefix": store.prefix}))
    child = ctx.Process(target=child_main, args=(name, data, kwargs, send, os.getpid()),
                        name=f"banditrec-{build.__name__}", daemon=True)
    try:
        child.start()
    finally:
        send.close()  # (the child holds its own end: EOF here when it ends without answering)
    answer, ended, stopped = None, False, False
    try:
        ended = _wait(receive, timeout_s)  # an answer, or its end (EOF)
        if ended:
            answer = _receive(receive)
    finally:
        if not ended and child.is_alive():  # no answer in time, or this wait was cut short: never left running
            stopped = True
            child.terminate()
            child.join(_STOP_GRACE_S)
            if child.is_alive():
                child.kill()
        if not ended and receive.poll(0):  # it answered as it was being stopped
            answer = _receive(receive)
        receive.close()
        child.join()
    if answer is None and stopped:
        raise BuildProcessError(f"{build.__name__}: the build process did not answer within {timeout_s:g} s; "
                                f"stopped (exit code {child.exitcode})")
    if answer is None:
        raise BuildProcessError(f"{build.__name__}: the build process exited with code {child.exitcode} "
                                "before it answered")
    ok, value = answer
    if not ok:
        raise value
    return value


def _wait(receive, timeout_s: float) -> bool:
    """Whether the child answered (or ended) within `timeout_s`."""
    return receive.poll(timeout_s)


def _receive(receive):
    """The child's answer, or None if it ended without one."""
    try:
        return receive.recv()
    except EOFError:
        return None


def incremental_apart(config: Config, store: Store) -> dict | None:
    """`run_incremental` in a process of its own, started only when there is something to fold
    and no build runs (every worker's periodic rebuild asks; the first one builds)."""
    if store.lock_held("build") or not pending_changes(config, store):
        return None
    return run_apart(run_incremental, config, store)


def refit_apart(config: Config, store: Store, **kwargs) -> dict | None:
    """`run_build` (a refit's full build) in a process of its own."""
    return run_apart(run_build, config, store, **kwargs)


# What a serving process (`app.create_app`) and the learner process (`banditrec learn`, its refits) call:
# builds in processes of their own. The simulator's service and the tests' keep `banditrec.build.STEPS`
# (in-process: small catalogs).
SERVED_STEPS = BuildSteps(incremental=incremental_apart, refitter=functools.partial(Refitter, build=refit_apart))
