"""State in Redis: the connection (or an embedded server) and every operation on it."""

from banditrec.lazy import lazy_exports

_EXPORTS = {"StoreError": "store.base", "stream_id": "store.base", "EmbeddedRedis": "store.connection",
            "connect": "store.connection", "make_client": "store.connection", "open_store": "store.connection",
            "store_session": "store.connection",
            "Store": "store.redis_store"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
