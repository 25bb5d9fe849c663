"""What a network path does to the datagrams that cross it, seeded and sans-I/O.

An :class:`Impairments` names a path's behaviour (delay and jitter, random and
burst loss, reordering, duplication, bit flips, a bottleneck with a bounded
queue, an MTU, blackouts); an :class:`ImpairedPath` applies it to one direction
of traffic: it is given each datagram with the time it was sent and returns when
each copy of it arrives, and counts what it did. The same path drives the
virtual-time network (:mod:`utcp.emulator.network`) and ``utcp impair``, the relay
for real traffic; with one seed, a run repeats exactly.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Impairments:
    """One direction of a path. Times are in seconds, rates in bits per second.

    - ``delay``, ``jitter``: each datagram takes ``delay`` plus up to ``jitter``
      (uniformly drawn) to cross. Jitter alone does not reorder: a datagram
      never overtakes an earlier one, but for ``reorder``.
    - ``loss``: the fraction of datagrams lost. With ``burst`` above 1, losses
      come in bursts of that mean length (a Gilbert-Elliott channel whose bad
      state loses everything), at the same mean rate.
    - ``max_burst``: at most this many datagrams in a row are lost to ``loss``;
      the next one gets through (none: no cap). The QUIC interop runner's
      drop-rate network (its handshake-loss test, say) caps its runs of drops
      this way; the cap lowers the mean loss a little, the more so with ``burst``.
    - ``reorder``: the fraction held back by ``reorder_delay`` more (default:
      ``delay``, at least 1 ms), so that later datagrams overtake them.
    - ``duplicate``: the fraction delivered twice.
    - ``corrupt``: the fraction delivered with one bit flipped.
    - ``rate``, ``queue``: a bottleneck of ``rate`` bit/s in front of the delay,
      with room for ``queue`` datagrams waiting (more are dropped, tail drop).
    - ``mtu``: datagrams longer than this many bytes are dropped.
    - ``blackout``: ``(up, down)``: the path carries nothing for ``down`` seconds
      after every ``up`` seconds of service, starting up.
    """

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    burst: float = 1.0
    max_burst: int | None = None
    reorder: float = 0.0
    reorder_delay: float | None = None
    duplicate: float = 0.0
    corrupt: float = 0.0
    rate: float | None = None
    queue: int = 1000
    mtu: int | None = None
    blackout: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("delay", "jitter"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more seconds, not {getattr(self, name)!r}")
        for name in ("loss", "reorder", "duplicate", "corrupt"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} is a fraction from 0 to 1, not {value!r}")
        if self.loss == 1 and self.burst > 1:
            raise ValueError("loss=1 with burst: every datagram is lost, there are no bursts")
        if not self.burst >= 1:
            raise ValueError(f"burst is a mean length of 1 or more, not {self.burst!r}")
        if self.max_burst is not None and not (isinstance(self.max_burst, int)
                                               and not isinstance(self.max_burst, bool)
                                               and self.max_burst >= 1):
            raise ValueError(f"max_burst is a count of 1 or more, not {self.max_burst!r}")
        if self.reorder_delay is not None and not self.reorder_delay > 0:
            raise ValueError(f"reorder_delay must be above 0, not {self.reorder_delay!r}")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate must be above 0 bit/s, not {self.rate!r}")
        if self.queue < 1:
            raise ValueError(f"queue must hold 1 datagram or more, not {self.queue!r}")
        if self.mtu is not None and self.mtu < 1:
            raise ValueError(f"mtu must be 1 byte or more, not {self.mtu!r}")
        if self.blackout is not None:
            up, down = self.blackout
            if not (up > 0 and down > 0):
                raise ValueError(f"blackout is (up, down), both above 0 s, not {self.blackout!r}")

    def describe(self) -> str:
        """The settings that differ from a perfect path, as ``name=value`` words."""
        base = Impairments()
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                        if getattr(self, f.name) != getattr(base, f.name)) or "clean"


class ImpairedPath:
    """One direction of a path, applying ``impairments`` with its own seeded random
    generator. :meth:`send` says when each copy of a datagram arrives."""

    def __init__(self, impairments: Impairments | None = None, *,
                 seed: int | str | None = 1) -> None:
        self.impairments = imp = impairments if impairments is not None else Impairments()
        self._rng = random.Random(seed)
        self._last_arrival = 0.0  # no datagram overtakes another, but by reordering
        self._departures: deque[float] = deque()  # when each queued datagram leaves
        self._busy_until = 0.0
        self._bad = False  # the Gilbert-Elliott channel's state
        self._lost_in_a_row = 0  # (for max_burst)
        # Gilbert-Elliott: leave the bad state with probability 1 / burst; enter it
        # with the probability that makes the mean loss rate ``loss``.
        if imp.burst > 1 and imp.loss > 0:
            self._to_good = 1 / imp.burst
            self._to_bad = imp.loss * self._to_good / (1 - imp.loss)
        else:
            self._to_good = self._to_bad = 0.0
        self._reorder_delay = imp.reorder_delay if imp.reorder_delay is not None \
            else max(imp.delay, 0.001)
        #: What the path did, by name: sent, delivered, lost, queue-full, too-big,
        #: blackout, duplicated, corrupted, reordered.
        self.counters: Counter[str] = Counter()

    def send(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        """``data`` enters the path at ``now``: when each copy arrives, and as what
        (empty if it is lost)."""
        imp = self.impairments
        rng = self._rng
        count = self.counters
        count["sent"] += 1
        if imp.mtu is not None and len(data) > imp.mtu:
            count["too-big"] += 1
            return []
        if imp.blackout is not None:
            up, down = imp.blackout
            if now % (up + down) >= up:
                count["blackout"] += 1
                return []
        leave = now
        if imp.rate is not None:
            queued = self._departures
            while queued and queued[0] <= now:
                queued.popleft()
            if len(queued) >= imp.queue:
                count["queue-full"] += 1
                return []
            leave = max(now, self._busy_until) + len(data) * 8 / imp.rate
            self._busy_until = leave
            queued.append(leave)
        if self._lost(rng):
            count["lost"] += 1
            return []
        if imp.corrupt and rng.random() < imp.corrupt:
            count["corrupted"] += 1
            if data:
                bit = rng.randrange(len(data) * 8)
                flipped = bytearray(data)
                flipped[bit >> 3] ^= 1 << (bit & 7)
                data = bytes(flipped)
        copies = 1
        if imp.duplicate and rng.random() < imp.duplicate:
            count["duplicated"] += 1
            copies = 2
        out = []
        for _ in range(copies):
            at = leave + imp.delay
            if imp.jitter:
                at += rng.random() * imp.jitter
            if imp.reorder and rng.random() < imp.reorder:
                count["reordered"] += 1
                at += self._reorder_delay  # held back: later datagrams pass it
            else:
                at = max(at, self._last_arrival)  # jitter alone keeps the order
                self._last_arrival = at
            out.append((at, data))
        count["delivered"] += copies
        return out

    def _lost(self, rng: random.Random) -> bool:
        imp = self.impairments
        if not imp.loss:
            return False
        if imp.max_burst is not None:
            if self._lost_in_a_row >= imp.max_burst:
                self._lost_in_a_row = 0  # this one gets through, drawing nothing
                return False
            lost = self._draw_loss(rng)
            self._lost_in_a_row = self._lost_in_a_row + 1 if lost else 0
            return lost
        return self._draw_loss(rng)

    def _draw_loss(self, rng: random.Random) -> bool:
        if self._to_good:
            # Gilbert-Elliott: the state moves, then the bad state loses the datagram.
            if self._bad:
                if rng.random() < self._to_good:
                    self._bad = False
            elif rng.random() < self._to_bad:
                self._bad = True
            return self._bad
        return rng.random() < self.impairments.loss
