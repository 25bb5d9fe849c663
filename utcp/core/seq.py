"""Sequence-number arithmetic modulo 2**32 (RFC 9293 section 3.4).

Comparisons treat the difference of two sequence numbers as a signed 32-bit
value, so they stay correct across wrap-around as long as the numbers compared
are less than 2**31 apart, which TCP's windows guarantee.
"""

from __future__ import annotations

from typing import Final

MOD: Final = 1 << 32
MASK: Final = MOD - 1
HALF: Final = 1 << 31


def add(a: int, n: int) -> int:
    """Return ``a + n`` modulo 2**32 (``n`` may be negative)."""
    return (a + n) & MASK


def sub(a: int, b: int) -> int:
    """Return the signed distance ``a - b``, in ``[-2**31, 2**31)``."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def lt(a: int, b: int) -> bool:
    """``a < b`` in sequence space."""
    return ((a - b) & MASK) >= HALF


def le(a: int, b: int) -> bool:
    """``a <= b`` in sequence space."""
    return a == b or ((a - b) & MASK) >= HALF


def gt(a: int, b: int) -> bool:
    """``a > b`` in sequence space."""
    return ((b - a) & MASK) >= HALF


def ge(a: int, b: int) -> bool:
    """``a >= b`` in sequence space."""
    return a == b or ((b - a) & MASK) >= HALF


def in_window(x: int, start: int, size: int) -> bool:
    """``start <= x < start + size`` in sequence space (empty when size is 0)."""
    return ((x - start) & MASK) < size
