"""Rebuilds and refits a serving process runs in a process of their own (banditrec/build/apart.py)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app import create_app
from banditrec.build import apart, incremental
from banditrec.build.apart import SERVED_STEPS, BuildProcessError, run_apart
from banditrec.config import to_dict
from banditrec.errors import DataError
from serving.service import Service
from tests.conftest import make_config, url_of

REPO_ROOT = Path(__file__).resolve().parent.parent


def _served(build, store, tmp_path) -> Service:
    """A service as `app.create_app` opens one (SERVED_STEPS), on the test store's Redis and prefix."""
    config = build()
    config = config.replace(redis={"url": url_of(store)})
    return Service.open(config, store=store, start_threads=False, build=SERVED_STEPS)


def _forbidden(what: str):
    """A stand-in that fails the test if it is called in this process."""
    def called(*args, **kwargs):
        raise AssertionError(what)

    return called


def test_a_rebuild_folds_new_items_in_a_build_process_and_the_service_serves_the_new_version(build, store, tmp_path,
                                                                                             monkeypatch):
    service = _served(build, store, tmp_path)
    try:
        monkeypatch.setattr(incremental, "_incremental_build",  # the spawned child imports its own
                            _forbidden("the incremental build ran in the serving process"))
        client = create_app(deps=service).test_client()
        first = service.catalog.bundle.version
        assert client.put("/items/new-1", json={"category": "shoes", "title": "trail runner"}).status_code == 200
        summary = client.post("/admin/rebuild").get_json()
        assert summary["rebuilt"] is True and summary["changes"] == 1
        catalog = service.catalog
        assert catalog.bundle.version == summary["index_version"] != first
        assert catalog.row_of["new-1"] < catalog.n_base  # in the index now, not the fresh buffer
    finally:
        service.close()


def test_no_build_process_is_started_when_nothing_waits_to_be_folded_or_a_build_runs(build, store, tmp_path,
                                                                                       monkeypatch):
    service = _served(build, store, tmp_path)
    try:
        monkeypatch.setattr(apart, "run_apart", _forbidden("a build process was started with nothing to fold"))
        assert service.rebuild() is None
        assert store.read_items(count=1) == []  # (nothing was ever added through the API)
        create_app(deps=service).test_client().put("/items/waits", json={"category": "books"})
        token = store.acquire_lock("build", 60)  # another build runs: it folds this item, or the next rebuild does
        try:
            assert service.rebuild() is None
        finally:
            store.release_lock("build", token)
    finally:
        service.close()


def _raises_data_error(config, store):
    raise DataError(f"no catalog under prefix {store.prefix}")


def _dies(config, store):
    os._exit(3)


def test_what_the_build_raised_in_its_process_is_raised_to_the_caller(store, tmp_path):
    config = make_config(tmp_path, redis={"url": url_of(store)})
    with pytest.raises(DataError, match=f"no catalog under prefix {store.prefix}"):  # the store's prefix, not br
        run_apart(_raises_data_error, config, store)


def test_a_build_process_that_dies_without_answering_is_a_clear_error(store, tmp_path):
    config = make_config(tmp_path, redis={"url": url_of(store)})
    with pytest.raises(BuildProcessError, match="exited with code 3 before it answered"):
        run_apart(_dies, config, store)


def test_a_refit_runs_its_full_build_in_a_build_process(build, store, tmp_path, small_world, monkeypatch):
    from banditrec.build import full

    config = build().replace(index={"refit_min_events": 100, "refit_growth": 0.0}, redis={"url": url_of(store)})
    service = Service.open(config, store=store, start_threads=False, build=SERVED_STEPS)
    try:
        monkeypatch.setattr(full, "_full_build", _forbidden("the refit's full build ran in the serving process"))
        client = create_app(deps=service).test_client()
        for user_id, item_id, kind, ts in small_world.interactions[:150]:
            assert client.post("/events", json={"user_id": user_id, "item_id": item_id, "type": kind,
                                                "timestamp": ts}).status_code == 200
        summary = service.refit()
        assert summary is not None and summary["interactions"] == len(small_world.interactions) + 150
        assert service.catalog.space == summary["version"]
    finally:
        service.close()


def _imports_the_metrics(config, store):
    import serving.metrics  # noqa: F401 - what a build's imports do

    return os.getpid()


def test_a_build_process_leaves_no_file_in_the_workers_metrics_directory(store, tmp_path, monkeypatch):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    config = make_config(tmp_path, redis={"url": url_of(store)})
    pid = run_apart(_imports_the_metrics, config, store)
    assert pid != os.getpid() and not [p.name for p in metrics_dir.iterdir() if str(pid) in p.name]


def _holds_the_lock(config, store, pid_file):
    from banditrec.build import BuildLock

    with BuildLock(store):
        Path(pid_file).write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)


def _wait_for(path: Path, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} not written"
        time.sleep(0.05)
    return int(path.read_text())


def _lock_free(store) -> bool:
    from banditrec.build import BuildLock

    with BuildLock(store, required=False) as lock:
        return lock.held


def test_a_build_process_stopped_gives_its_build_lock_back_and_the_caller_a_clear_error(store, tmp_path):
    config = make_config(tmp_path, redis={"url": url_of(store)})
    pid_file, raised = tmp_path / "pid", []

    def call():
        try:
            run_apart(_holds_the_lock, config, store, pid_file=str(pid_file))
        except BuildProcessError as exc:
            raised.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    os.kill(_wait_for(pid_file), signal.SIGTERM)  # as at a shutdown
    caller.join(120)
    assert not caller.is_alive() and "exited with code 143 before it answered" in str(raised[0])
    assert _lock_free(store)  # not held for BUILD_LOCK_S by a build that is gone


def _times_out_once_the_lock_is_held(pid_file: Path):
    """`apart._wait` as if the timeout passed, once the child holds the build lock (not before:
    on a busy machine a spawn can take seconds)."""
    def wait(receive, timeout_s):
        _wait_for(pid_file)
        return False

    return wait


def test_a_build_process_that_does_not_answer_in_time_is_stopped_and_gives_its_lock_back(store, tmp_path,
                                                                                          monkeypatch):
    """A hung build does not hold its caller (the periodic rebuild's thread, an admin request)
    for good: past `timeout_s` it is stopped (SIGTERM: its lock given back, exit code 143) and
    the caller gets a clear error."""
    config = make_config(tmp_path, redis={"url": url_of(store)})
    pid_file = tmp_path / "pid"
    monkeypatch.setattr(apart, "_wait", _times_out_once_the_lock_is_held(pid_file))
    with pytest.raises(BuildProcessError, match=r"did not answer within 5 s; stopped \(exit code 143\)"):
        run_apart(_holds_the_lock, config, store, timeout_s=5.0, pid_file=str(pid_file))
    assert _lock_free(store) and not _alive(int(pid_file.read_text()))


def _holds_the_lock_deaf(config, store, pid_file):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a build stuck where a SIGTERM does not reach it
    _holds_the_lock(config, store, pid_file)


def test_a_stopped_build_process_that_does_not_end_is_killed(store, tmp_path, monkeypatch):
    config = make_config(tmp_path, redis={"url": url_of(store)})
    pid_file = tmp_path / "pid"
    monkeypatch.setattr(apart, "_wait", _times_out_once_the_lock_is_held(pid_file))
    monkeypatch.setattr(apart, "_STOP_GRACE_S", 1.0)
    try:
        with pytest.raises(BuildProcessError, match=r"did not answer within 5 s; stopped \(exit code -9\)"):
            run_apart(_holds_the_lock_deaf, config, store, timeout_s=5.0, pid_file=str(pid_file))
        assert not _alive(int(pid_file.read_text()))
    finally:
        store.client.delete(store._lock_key("build"))  # (killed: its lock would expire only after BUILD_LOCK_S)


def _answers_late(config, store):
    time.sleep(1.0)
    return {"built": True}


def test_an_answer_that_comes_as_the_build_process_is_stopped_is_not_lost(store, tmp_path, monkeypatch):
    config = make_config(tmp_path, redis={"url": url_of(store)})

    def wait(receive, timeout_s):  # the timeout passes just before the answer comes: it is waited for
        deadline = time.monotonic() + 120
        while not receive.poll(0.05):
            assert time.monotonic() < deadline, "no answer"
        return False

    monkeypatch.setattr(apart, "_wait", wait)
    assert run_apart(_answers_late, config, store, timeout_s=5.0) == {"built": True}


def test_a_build_process_whose_parent_is_killed_ends_and_gives_its_build_lock_back(store, tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(to_dict(make_config(tmp_path, redis={"url": url_of(store)}))))
    pid_file = tmp_path / "pid"
    script = (f"import json, sys; sys.path[:0] = {sys.path!r}\n"
              "from banditrec.config import from_dict\nfrom store import Store, make_client\n"
              "from banditrec.build.apart import run_apart\nfrom tests.test_build_apart import _holds_the_lock\n"
              f"config = from_dict(json.loads(open({str(config_path)!r}).read()))\n"
              f"store = Store(make_client(config.redis.url, config.redis), prefix={store.prefix!r})\n"
              f"run_apart(_holds_the_lock, config, store, pid_file={str(pid_file)!r})\n")
    parent, child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT), None
    try:
        child = _wait_for(pid_file)
        assert not _lock_free(store)
        parent.kill()  # as gunicorn kills a worker at its graceful timeout
        parent.wait(30)
        deadline = time.monotonic() + 120
        while not _lock_free(store):
            assert time.monotonic() < deadline, "the orphaned build kept its lock"
            time.sleep(0.2)
        while _alive(child):
            assert time.monotonic() < deadline, "the orphaned build process kept running"
            time.sleep(0.2)
    finally:
        if parent.poll() is None:
            parent.kill()
        if child is not None and _alive(child):  # (only when the test failed: no build left running)
            os.kill(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (ended, not yet reaped by its new parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
