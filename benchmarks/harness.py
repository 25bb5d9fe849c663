"""What both benchmark scripts share: running a case on a fresh loop, the
allocator warm-up, and picking the median of repeated runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

R = TypeVar("R")


def run_on(coro: Any, loop_name: str) -> Any:
    """Run ``coro`` on a fresh loop (asyncio's default or uvloop) and close the loop.

    Like ``asyncio.run`` (tasks still pending are cancelled, which closes utcp's
    endpoints), but with a choice of loop on Python 3.10 too.
    """
    if loop_name == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def warm_malloc() -> None:
    """Put glibc's allocator in the state a long-running process reaches anyway.

    asyncio's selector datagram transport reads with ``recvfrom(256 KiB)``. Until
    a block that large has been freed once, glibc serves such a buffer with mmap
    and munmap, about 15 us per datagram; afterwards its dynamic mmap threshold
    is higher and the buffer comes from the heap. Which case a benchmark sees
    would otherwise depend on what ran before it; freeing one 1 MiB block first
    makes every case see the same allocator.
    """
    block = bytearray(1 << 20)
    del block


def medians(runs: Iterable[R], group: Callable[[R], Hashable],
            rate: Callable[[R], float]) -> list[tuple[R, list[R]]]:
    """Per group, the run with the median ``rate`` and all the group's runs sorted by it."""
    groups: dict[Hashable, list[R]] = {}
    for r in runs:
        groups.setdefault(group(r), []).append(r)
    out = []
    for rs in groups.values():
        rs = sorted(rs, key=rate)
        out.append((rs[(len(rs) - 1) // 2], rs))
    return out
