"""Per-connection options, with Linux's defaults (see the README's options table)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from .congestion import CONTROLLERS

#: RFC 7323 5.5: a TS.Recent older than 24 days is no base for PAWS.
PAWS_IDLE: Final = 24 * 86400.0
#: Least time between replies to unacceptable bare ACKs and between challenge
#: ACKs, one limit for both (RFC 5961 7; Linux: tcp_invalid_ratelimit, 500 ms).
OOW_ACK_INTERVAL: Final = 0.5

#: IPv4 path of 1500 bytes: 1500 - 20 (IP) - 8 (UDP) - 20 (TCP header).
DEFAULT_MSS_IPV4 = 1452
#: IPv6 header is 20 bytes larger.
DEFAULT_MSS_IPV6 = 1432


@dataclass(frozen=True, slots=True)
class Options:
    """Tunables of one connection. Times are in seconds, sizes in bytes."""

    #: Largest segment payload we accept (advertised in the SYN's MSS option).
    mss: int = DEFAULT_MSS_IPV4
    #: Receive buffer: the most bytes received but not yet read; sets the window.
    #: The size a connection starts with; see rcv_buf_max.
    rcv_buf: int = 256 * 1024
    #: The largest the receive buffer may grow to while the application reads as
    #: fast as data arrives and a round trip brings more than the buffer holds
    #: (receive-buffer autotuning, Linux's tcp_rmem[2]). None, or no more than
    #: rcv_buf: the buffer stays at rcv_buf (as SO_RCVBUF fixes Linux's).
    rcv_buf_max: int | None = 6 * 1024 * 1024
    #: Send data as soon as it is written (asyncio sets TCP_NODELAY too);
    #: False enables Nagle's algorithm (RFC 896).
    nodelay: bool = True
    #: RFC 6298: initial, minimum and maximum retransmission timeout.
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 120.0
    #: Retransmissions of a SYN / SYN-ACK / data or FIN before giving up
    #: (Linux tcp_syn_retries, tcp_synack_retries, tcp_retries2).
    syn_retries: int = 6
    synack_retries: int = 5
    data_retries: int = 15
    #: Longest an ACK may be delayed (every second full segment is ACKed at once).
    delayed_ack: float = 0.04
    #: RFC 6928 initial congestion window, in segments.
    initial_cwnd: int = 10
    #: Maximum segment lifetime; TIME-WAIT lasts 2 * msl.
    msl: float = 30.0
    #: How long a connection the application has closed may wait in FIN-WAIT-2.
    fin_wait_2_timeout: float = 60.0
    #: Keepalive (off by default): idle time before the first probe, the interval
    #: between probes, and how many unanswered probes abort the connection.
    keepalive: bool = False
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    #: Send a probe after this many seconds without hearing from the peer, to keep
    #: a NAT's UDP mapping alive (routers forget them after 30 s to a few minutes
    #: of silence), e.g. 25; None: never. Unlike keepalive, no answer ends nothing.
    nat_keepalive: float | None = None
    #: RFC 7323 timestamps, offered in every SYN and used when both SYNs carry
    #: them: RTT samples from every ACK, PAWS, and TIME-WAIT reuse (Linux's default).
    timestamps: bool = True
    #: Congestion control: "cubic" (RFC 9438, with HyStart++; Linux's default),
    #: "newreno" (RFC 5681, RFC 6582) or "bbr" (BBR version 1, as Linux's: paces
    #: at the bottleneck bandwidth it measures; random loss does not slow it).
    congestion_control: str = "cubic"
    #: Pace sending: spread what the window allows over the round trip at a
    #: rate, a batch of a millisecond's worth (two segments at least) per
    #: wake-up, instead of sending it at once; past the initial window and once
    #: an RTT is measured, as Linux paces. The rate is the congestion control's
    #: own where it has one; else the window over SRTT, times two in slow start
    #: and 1.2 after (Linux's tcp_pacing_ss_ratio and tcp_pacing_ca_ratio).
    #: None: where the congestion control needs it: BBR, whose model is a rate
    #: (utcp.core.congestion.PACED).
    #: CUBIC and NewReno are not paced by default, as in Linux without the fq
    #: qdisc: on the emulator, pacing CUBIC halved the queue overflows of slow
    #: start through a 10 Mbit/s bottleneck with a 25-packet queue, but did not
    #: finish a transfer sooner, and took 1-3 % longer under random loss.
    pacing: bool | None = None
    #: Selective acknowledgments (RFC 2018, RFC 6675 recovery), offered in every SYN
    #: and used when both SYNs carry SACK-permitted, as Linux does.
    sack: bool = True
    #: RACK-TLP loss detection (RFC 8985), with SACK, as Linux does by default: a
    #: segment is lost once one sent after it has arrived and a reordering window
    #: has passed, lost retransmissions included; a tail loss probe instead of
    #: the timeout. False: RFC 6675's three duplicate ACKs (Linux tcp_recovery=0).
    rack: bool = True

    def __post_init__(self) -> None:
        def check(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ValueError(f"{name} must be {what}, got {getattr(self, name)!r}")

        for name in ("mss", "rcv_buf", "syn_retries", "synack_retries", "data_retries",
                     "initial_cwnd", "keepalive_count"):
            v = getattr(self, name)
            check(isinstance(v, int) and not isinstance(v, bool), name, "an integer")
        check(88 <= self.mss <= 65495, "mss", "between 88 and 65495")
        check(self.mss <= self.rcv_buf <= (0xFFFF << 14), "rcv_buf",
              f"between mss ({self.mss}) and {0xFFFF << 14}")
        top = self.rcv_buf_max
        check(top is None or (isinstance(top, int) and not isinstance(top, bool)
                              and 0 <= top <= (0xFFFF << 14)), "rcv_buf_max",
              f"None or an integer between 0 and {0xFFFF << 14}")
        for name in ("syn_retries", "synack_retries", "data_retries"):
            check(0 <= getattr(self, name) <= 255, name, "between 0 and 255")
        check(1 <= self.initial_cwnd <= 1000, "initial_cwnd", "between 1 and 1000")
        check(1 <= self.keepalive_count <= 1000, "keepalive_count", "between 1 and 1000")
        positive = ("initial_rto", "min_rto", "max_rto", "keepalive_interval", "msl",
                    "keepalive_idle")
        for name in positive + ("delayed_ack", "fin_wait_2_timeout"):
            v = getattr(self, name)
            check(isinstance(v, (int, float)) and not isinstance(v, bool)
                  and math.isfinite(v), name, "a finite number of seconds")
            if name in positive:
                check(v > 0, name, "more than zero seconds")
            else:
                check(v >= 0, name, "zero or more seconds")
        nat = self.nat_keepalive
        if nat is not None:
            check(isinstance(nat, (int, float)) and not isinstance(nat, bool)
                  and math.isfinite(nat) and nat > 0, "nat_keepalive",
                  "None or a finite number of seconds above zero")
        lo, first, hi = self.min_rto, self.initial_rto, self.max_rto
        if lo > hi:
            raise ValueError(f"min_rto ({lo!r}) must be at most max_rto ({hi!r})")
        if not lo <= first <= hi:
            raise ValueError(
                f"initial_rto ({first!r}) must be between min_rto ({lo!r}) and max_rto "
                f"({hi!r}): when changing min_rto or max_rto, set initial_rto too")
        check(self.delayed_ack <= 0.5, "delayed_ack", "at most 0.5 s (RFC 1122)")
        if self.congestion_control not in CONTROLLERS:
            raise ValueError(f"congestion_control must be one of {', '.join(CONTROLLERS)}, "
                             f"got {self.congestion_control!r}")
        for name in ("nodelay", "keepalive", "timestamps", "sack", "rack"):
            check(isinstance(getattr(self, name), bool), name, "True or False")
        check(self.pacing is None or isinstance(self.pacing, bool), "pacing",
              "None, True or False")

    @property
    def rcv_buf_limit(self) -> int:
        """The largest the receive buffer may become: rcv_buf_max if it grows, else
        rcv_buf."""
        top = self.rcv_buf_max
        return top if top is not None and top > self.rcv_buf else self.rcv_buf

    @property
    def wscale(self) -> int:
        """The window-scale shift needed to advertise the largest receive buffer the
        connection may grow to (as Linux's comes from tcp_rmem[2])."""
        # The least shift that brings the limit within 16 bits.
        return (self.rcv_buf_limit >> 16).bit_length()

    def with_(self, **changes: Any) -> Options:
        """Return a copy with ``changes`` applied (validated like the constructor)."""
        unknown = set(changes) - OPTION_NAMES
        if unknown:
            raise ValueError(
                f"unknown option(s): {', '.join(sorted(unknown))}; "
                f"known options are: {', '.join(sorted(OPTION_NAMES))}"
            )
        return replace(self, **changes)


OPTION_NAMES = frozenset(f.name for f in fields(Options))
