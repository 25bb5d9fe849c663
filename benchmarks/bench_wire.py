"""Cost per segment of the struct codec against the construct declaration.

Run: python benchmarks/bench_wire.py
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utcp.core.wire import (  # noqa: E402  (after the path tweak, to run from a checkout)
    ACK,
    PSH,
    Segment,
    build_construct,
    decode,
    encode,
    parse_construct,
)

CASES = {
    "header-only ACK": Segment(40000, 443, 123456789, 987654321, ACK, 65535),
    "1452-byte data": Segment(40000, 443, 123456789, 987654321, ACK | PSH, 65535,
                              payload=bytes(range(256)) * 5 + bytes(172)),
}


def per_op_us(func, arg, seconds: float = 0.2) -> float:
    """Best-of-3 time of one call, in microseconds."""
    timer = timeit.Timer(lambda: func(arg))
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    return min(timer.repeat(repeat=3, number=number)) / number * 1e6


def main() -> None:
    print(f"{'case':<18} {'op':<7} {'struct µs':>10} {'construct µs':>13} {'ratio':>7}")
    for name, seg in CASES.items():
        data = encode(seg)
        assert data == build_construct(seg) and decode(data) == parse_construct(data) == seg
        for op, fast, slow, arg in (("encode", encode, build_construct, seg),
                                    ("decode", decode, parse_construct, data)):
            t_fast, t_slow = per_op_us(fast, arg), per_op_us(slow, arg)
            print(f"{name:<18} {op:<7} {t_fast:>10.2f} {t_slow:>13.1f} {t_slow / t_fast:>6.0f}x")


if __name__ == "__main__":
    main()
