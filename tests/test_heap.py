"""The C heap's free memory goes back to the system (serving/heap.py), on glibc."""

from __future__ import annotations

import ctypes
import ctypes.util

from serving import heap


def _anon_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssAnon:")) / 1024


def test_trim_returns_the_free_memory_in_the_middle_of_the_heap():
    assert heap.available()  # the CI machine runs glibc
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(40_000)]  # ~160 MB of small chunks, below the mmap threshold
    for block in blocks:
        ctypes.memset(block, 1, 4096)  # touched: resident
    keep = libc.malloc(4096)  # a chunk above them stays in use: glibc cannot shrink the heap from its top
    for block in blocks:
        libc.free(block)
    before = _anon_mb()
    assert heap.trim()
    assert _anon_mb() < before - 100  # most of the ~160 MB freed in the middle went back
    libc.free(keep)
