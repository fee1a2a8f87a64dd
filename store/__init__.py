"""State in Redis: the connection (or an embedded server) and every operation on it."""

from store.connection import EmbeddedRedis, connect, make_client
from store.redis_store import Store, StoreError

__all__ = ["EmbeddedRedis", "Store", "StoreError", "connect", "make_client"]
