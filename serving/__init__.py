"""The request and learning paths as plain functions over a Service (routes, simulator, benchmarks)."""

from banditrec.lazy import lazy_exports

_EXPORTS = {  # (`decide`, `feedback` and `recommend` are modules too: import those functions from them)
    "Slate": "serving.decide",
    **dict.fromkeys(("put_user", "record_event"), "serving.events"),
    **dict.fromkeys(("delete_item", "put_item"), "serving.items"),
    "Learner": "serving.learner",
    "Service": "serving.service",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
