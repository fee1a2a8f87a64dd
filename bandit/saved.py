"""Reading a model VW saved, without VW: its command line and its weights (bandit.linear
scores from them). VW itself is asked once per command line, through `bandit.vw`, how long
the header after that command line is."""

from __future__ import annotations

import functools

import numpy as np

from bandit.vw import VWModel

# Reading a model's weights. A saved model (VW 9 saves the learning state too) is a header
# then one record per non-zero weight: uint32 index, the weight, and two float32s of its
# adaptive learning state. The header holds the model's own command line (length-prefixed,
# NUL-terminated); what follows it up to the weights is fixed-size numbers whose length
# depends only on that command line, so an untrained model saved under it measures it. The
# command line read from the model itself, not the config, says which namespaces it crosses.
# Anything else (another layout) gives None, and the caller keeps scoring through VW;
# `bandit.linear` also checks the weights against VW's own predictions.
_RECORD = np.dtype([("index", "<u4"), ("weight", "<f4"), ("adaptive", "<f4"), ("normalizer", "<f4")])


def saved_options(blob: bytes) -> tuple[str, int] | None:
    """The command line a saved model keeps in its header, and the offset just after it."""
    at = blob.find(b" --")
    if at < 4:
        return None
    size = int.from_bytes(blob[at - 4:at], "little")
    end = at + size
    if size <= 1 or end > len(blob) or blob[end - 1] != 0:
        return None
    try:
        return blob[at:end - 1].decode("ascii"), end
    except UnicodeDecodeError:
        return None


@functools.cache
def _after_options(options: str) -> int | None:
    """Bytes between a saved model's command line and its first weight record."""
    probe = VWModel(f"{options} --quiet")
    try:
        blob = probe.to_bytes()
    finally:
        probe.close()
    found = saved_options(blob)
    return len(blob) - found[1] if found is not None and found[0] == options else None


def dense_weights(blob: bytes, size: int) -> np.ndarray | None:
    """The weights (float32, one per hashed index, `size` of them: the model's `num_weights`)
    of a saved model, else None."""
    start = _weights_start(blob)
    if start is None or (len(blob) - start) % _RECORD.itemsize:
        return None
    records = np.frombuffer(blob, dtype=_RECORD, offset=start)
    index = records["index"].astype(np.int64)
    if len(index) and (index[-1] >= size or np.any(np.diff(index) <= 0)):
        return None
    weights = np.zeros(size, dtype=np.float32)
    weights[index] = records["weight"]
    return weights


def _weights_start(blob: bytes) -> int | None:
    """Where a saved model's weight records begin, else None."""
    found = saved_options(blob)
    after = _after_options(found[0]) if found is not None else None
    if after is None or len(blob) < found[1] + after:
        return None
    return found[1] + after


def plain_scale(blob: bytes) -> bool:
    """Whether a saved model's predictions are its weights as they are: the two numbers VW
    saves right before them, the L1 gravity and the L2 contraction (which multiplies every
    prediction, and which each model of a snapshot has moved by its own updates when
    `model.l2` > 0), are 0 and 1."""
    start = _weights_start(blob)
    return start is not None and start >= 16 and \
        np.frombuffer(blob, "<f8", 2, offset=start - 16).tolist() == [0.0, 1.0]
