"""Scalar checks whose messages name the field, the bound and the value.

>>> check_scalar(0.5, "exploration.epsilon_greedy.epsilon", float, min=0.0, max=1.0)
0.5
>>> check_scalar(1.5, "exploration.epsilon_greedy.epsilon", float, min=0.0, max=1.0)
Traceback (most recent call last):
...
banditrec.errors.ConfigError: exploration.epsilon_greedy.epsilon == 1.5, must be <= 1.0
"""

from __future__ import annotations

import math

from banditrec.errors import ConfigError

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def check_scalar(value, name, kind, *, min=None, max=None, min_exclusive=False,
                 max_exclusive=False, choices=None, error=ConfigError):
    """Return `value` (ints widened to float where a float is wanted) or raise `error`."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok_type = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if not ok_type:
        raise error(f"{name} must be {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise error(f"{name} == {value!r}, must be finite")
    if choices is not None and value not in choices:
        raise error(f"{name} == {value!r}, must be one of {', '.join(map(repr, choices))}")
    if min is not None and (value <= min if min_exclusive else value < min):
        raise error(f"{name} == {value!r}, must be {'>' if min_exclusive else '>='} {min!r}")
    if max is not None and (value >= max if max_exclusive else value > max):
        raise error(f"{name} == {value!r}, must be {'<' if max_exclusive else '<='} {max!r}")
    return value
