"""Every connection's next deadline, kept in buckets of one millisecond.

A stack asks for a connection's deadline after each thing that happens to it,
which is once or more per segment. Most of those deadlines only move later (the
retransmission timer restarts on every ACK), so the buckets are lazy, as Linux's
timer wheel effectively is for TCP: a deadline that moves later stays in its
bucket and is re-filed when that bucket comes due; only a deadline that moves
earlier is moved at once. Arming, moving and cancelling are dict operations,
O(1), with no allocation unless a bucket is new; a connection is in at most one
bucket, so nothing superseded piles up.

Deadlines are rounded up to the bucket's end, so a timer runs at most one
millisecond late (Linux's timers tick in jiffies of 1-4 ms), never early.
"""

from __future__ import annotations

import heapq
from typing import Any, Final

#: Bucket width: one millisecond.
RESOLUTION: Final = 0.001
#: Buckets per second (a bucket index over this is its time).
PER_SECOND: Final = 1000


def bucket_of(when: float) -> int:
    """The bucket that covers ``when``: its index times RESOLUTION is >= ``when``."""
    k = int(when * PER_SECOND)
    return k if k >= when * PER_SECOND else k + 1


class Timers:
    """Deadline buckets for objects with a ``timer_bucket`` slot (None when not filed)."""

    __slots__ = ("_buckets", "_heap")

    def __init__(self) -> None:
        # bucket index -> the objects filed there (a dict used as an ordered set).
        self._buckets: dict[int, dict[Any, None]] = {}
        # Indices of buckets, each pushed when its bucket is made; an index whose
        # bucket has since emptied and gone is skipped when it comes up.
        self._heap: list[int] = []

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def arm(self, item: Any, when: float) -> None:
        """Make sure ``item`` is woken at or after ``when`` (and at most a bucket after).

        An item already filed at or before ``when`` stays where it is: when its bucket
        comes due, the owner looks at the item's real deadline and files it again.
        """
        k = int(when * PER_SECOND)  # bucket_of(when), written out
        if k < when * PER_SECOND:
            k += 1
        old = item.timer_bucket
        if old is not None:
            if old <= k:
                return
            bucket = self._buckets.get(old)
            if bucket is not None:
                bucket.pop(item, None)
                if not bucket:
                    del self._buckets[old]
        item.timer_bucket = k
        bucket = self._buckets.get(k)
        if bucket is None:
            self._buckets[k] = {item: None}
            heapq.heappush(self._heap, k)
        else:
            bucket[item] = None

    def cancel(self, item: Any) -> None:
        """Take ``item`` out of its bucket, if it is in one."""
        old = item.timer_bucket
        if old is None:
            return
        item.timer_bucket = None
        bucket = self._buckets.get(old)
        if bucket is not None:
            bucket.pop(item, None)
            if not bucket:
                del self._buckets[old]

    def next_deadline(self) -> float | None:
        """When the earliest non-empty bucket comes due, or None."""
        heap = self._heap
        buckets = self._buckets
        while heap:
            k = heap[0]
            if k in buckets:
                return k / PER_SECOND
            heapq.heappop(heap)
        return None

    def expired(self, now: float) -> list[Any]:
        """Remove and return every item in a bucket due at ``now``, earliest first.

        Their ``timer_bucket`` is cleared: the caller files again those it wants.
        """
        heap = self._heap
        buckets = self._buckets
        limit = now * PER_SECOND
        due: list[Any] = []
        while heap and heap[0] <= limit:
            bucket = buckets.pop(heapq.heappop(heap), None)
            if bucket:
                for item in bucket:
                    item.timer_bucket = None
                due.extend(bucket)
        return due
