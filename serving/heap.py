"""Give the C heap's free memory back to the system (glibc's `malloc_trim`), every
`server.heap_trim_s` seconds in each serving and learning process.

A worker's requests allocate and free many small C objects (Vowpal Wabbit's examples, Redis
replies, small numpy arrays, Python objects above pymalloc's size). glibc keeps what is
freed inside its heap, where it still counts as the process's memory, and gives pages back
on its own only from the heap's top. At 1M items, after 50 s at 25 req/s a worker's heap
held ~100 MB free of 229 MB (mallinfo2); `malloc_trim(0)` returned it in 8 ms. With a C
library other than glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from serving.background import Periodic

log = logging.getLogger(__name__)

_UNRESOLVED = object()
_malloc_trim = _UNRESOLVED  # glibc's malloc_trim, None where there is none; resolved at the first call


def _resolve():
    global _malloc_trim
    if _malloc_trim is _UNRESOLVED:
        try:
            function = ctypes.CDLL(ctypes.util.find_library("c") or None).malloc_trim
        except (OSError, AttributeError):
            function = None
        else:
            function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
        _malloc_trim = function
    return _malloc_trim


def available() -> bool:
    """Whether this C library can give heap memory back on request (glibc)."""
    return _resolve() is not None


def trim() -> bool:
    """Return the heap's free pages to the system; True if any were returned. (ctypes lets
    go of the GIL meanwhile: the other threads run Python, not malloc.)"""
    function = _resolve()
    return bool(function(0)) if function is not None else False


def trim_every(interval_s: float):
    """A started `Periodic` that trims every `interval_s` (jittered), or None when that is 0 or
    this C library cannot (`server.heap_trim_s`)."""
    if interval_s <= 0 or not available():
        return None
    return Periodic("heap-trim", interval_s, trim, jitter=0.2).start()
