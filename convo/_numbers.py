"""Checks for the numbers public constructors take: finite, of the right type, in range.

NaN compares false with everything, so ``value <= 0`` lets it through and a budget of NaN never
refuses; a string or a bool would fail later with a bare ``TypeError``. Every numeric setting
goes through :func:`number` instead, which raises :class:`~convo.InvalidConfigError` naming the
setting.
"""

from __future__ import annotations

import math
from typing import Any

from ._exceptions import InvalidConfigError

__all__ = ["number", "usd"]


def number(
    name: str,
    value: Any,
    *,
    integer: bool = False,
    minimum: float | None = None,
    positive: bool = False,
    hint: str = "",
) -> Any:
    """``value`` if it is a finite int (or float, unless ``integer``) >= ``minimum`` (> 0 when
    ``positive``); otherwise :class:`InvalidConfigError` that says what ``name`` must be."""
    kind = "an int" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise InvalidConfigError(f"{name} must be {kind}, got {type(value).__name__} {value!r}{hint}")
    if not math.isfinite(value):
        raise InvalidConfigError(f"{name} must be a finite number, got {value!r}{hint}")
    if positive and value <= 0:
        raise InvalidConfigError(f"{name} must be positive, got {value!r}{hint}")
    if minimum is not None and value < minimum:
        raise InvalidConfigError(f"{name} must be at least {minimum:g}, got {value!r}{hint}")
    return value


def usd(amount: float) -> str:
    """An amount of dollars for a message: cents, or enough digits to tell a sub-cent cap."""
    if amount != 0 and abs(amount) < 0.01:
        return f"${amount:.6f}".rstrip("0")
    return f"${amount:.2f}"
