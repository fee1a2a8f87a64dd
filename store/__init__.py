"""State in Redis: the connection (or an embedded server) and every operation on it."""

from store.base import StoreError, stream_id
from store.connection import EmbeddedRedis, connect, make_client, open_store
from store.redis_store import Store

__all__ = ["EmbeddedRedis", "Store", "StoreError", "connect", "make_client", "open_store", "stream_id"]
