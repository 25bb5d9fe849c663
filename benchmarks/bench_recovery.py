"""Loss recovery on the emulator: RACK-TLP against RFC 6675 alone.

Every case runs utcp's public API on a ``VirtualNetwork`` (virtual time, seeded
impairments, the same both ways), once with ``rack=True`` (the default) and once
with ``rack=False``, over ``--seeds`` seeds:

* ``clean``: 2 MB uploaded through 10 Mbit/s, 15 ms each way, a queue of 25
  datagrams: no loss but the queue's, which slow start overflows.
* ``bursty``: the same path losing 2 % of datagrams in bursts of 3.
* ``random``: 20 Mbit/s, 20 ms each way, a queue of 50, 1 % random loss.
* ``rpc``: ``--requests`` requests of 100 bytes in turn on one connection, each
  answered with 16 KB, through 10 Mbit/s, 15 ms, a queue of 50, 2 % random loss:
  every answer ends in a tail, where only a probe or the RTO finds a loss.

Time runs from the first write until the server has read everything (bulk) or
the client has read the last answer (rpc); the sha256 of each upload is checked.
The counters are the sending connection's. Seconds are virtual: the whole run
takes a few seconds of wall time.

    python benchmarks/bench_recovery.py --seeds 10
    python benchmarks/bench_recovery.py --only clean --seeds 1 --pacing on
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from dataclasses import dataclass, field

import utcp
from utcp.core.congestion import CONTROLLERS, PACED
from utcp.emulator import Impairments, VirtualNetwork

PATHS = {
    "clean": Impairments(delay=0.015, rate=10e6, queue=25),
    "bursty": Impairments(delay=0.015, rate=10e6, queue=25, loss=0.02, burst=3),
    "random": Impairments(delay=0.020, rate=20e6, queue=50, loss=0.01),
    "rpc": Impairments(delay=0.015, rate=10e6, queue=50, loss=0.02),
}
ANSWER = 16_000
REQUEST = 100


@dataclass
class Totals:
    seconds: float = 0.0
    nbytes: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    queue_full: int = 0
    lost: int = 0

    def add(self, seconds: float, nbytes: int, info: dict, path_counters: dict) -> None:
        self.seconds += seconds
        self.nbytes += nbytes
        for name in ("retransmissions", "timeouts", "tlp_probes", "lost_retransmissions"):
            self.counters[name] = self.counters.get(name, 0) + info[name]
        self.queue_full += path_counters["queue-full"]
        self.lost += path_counters["lost"]


def network(case: str, seed: int) -> tuple[VirtualNetwork, object, object]:
    net = VirtualNetwork(seed=seed)
    server = net.add_host("10.0.0.1", "server")
    client = net.add_host("10.0.0.2")
    net.set_path("10.0.0.1", "10.0.0.2", PATHS[case])
    return net, server, client


def bulk(case: str, seed: int, size: int, **opts) -> tuple[float, dict, dict]:
    """Seconds until the server has all ``size`` bytes, the client's counters, and
    what the path from client to server did."""
    net, server, client = network(case, seed)
    blob = hashlib.sha256(b"bench_recovery").digest() * (size // 32)
    done: dict[str, float] = {}

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = await reader.read()
        done["at"] = asyncio.get_running_loop().time()
        writer.write(hashlib.sha256(got).digest())
        writer.close()

    async def main() -> tuple[float, bytes, dict]:
        await server.run(utcp.start_server(sink, "0.0.0.0", 7000, **opts))

        async def go() -> tuple[float, bytes, dict]:
            reader, writer = await utcp.open_connection("server", 7000, **opts)
            t0 = asyncio.get_running_loop().time()
            writer.write(blob)
            writer.write_eof()
            digest = await reader.read()
            return t0, digest, writer.get_extra_info("utcp")

        return await client.run(go())

    t0, digest, info = net.run(main())
    if digest != hashlib.sha256(blob).digest():
        raise SystemExit(f"{case} seed {seed}: the server received other data")
    return done["at"] - t0, info, net.path("10.0.0.2", "10.0.0.1").counters


def rpc(seed: int, requests: int, **opts) -> tuple[float, dict, dict]:
    """Seconds for ``requests`` exchanges, the server's counters, and what the
    path from server to client did."""
    net, server, client = network("rpc", seed)
    answer = bytes(ANSWER)
    stats: dict[str, dict] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(requests):
            await reader.readexactly(REQUEST)
            writer.write(answer)
            await writer.drain()
        stats["server"] = writer.get_extra_info("utcp")
        writer.close()

    async def main() -> float:
        await server.run(utcp.start_server(serve, "0.0.0.0", 7000, **opts))

        async def go() -> float:
            loop = asyncio.get_running_loop()
            reader, writer = await utcp.open_connection("server", 7000, **opts)
            t0 = loop.time()
            for _ in range(requests):
                writer.write(bytes(REQUEST))
                await reader.readexactly(ANSWER)
            took = loop.time() - t0
            writer.close()
            return took

        return await client.run(go())

    took = net.run(main())
    return took, stats["server"], net.path("10.0.0.1", "10.0.0.2").counters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds per case (1, 2, ...)")
    ap.add_argument("--size", type=float, default=2, help="MB uploaded in the bulk cases")
    ap.add_argument("--requests", type=int, default=200, help="exchanges in the rpc case")
    ap.add_argument("--congestion-control", default="cubic", choices=CONTROLLERS)
    ap.add_argument("--pacing", choices=("on", "off"), default=None,
                    help="pace sending, or not (default: as the congestion control "
                         "needs, see Options.pacing)")
    ap.add_argument("--only", choices=tuple(PATHS), action="append",
                    help="run only these cases (repeatable)")
    args = ap.parse_args()
    if args.seeds < 1 or args.size <= 0 or args.requests < 1:
        ap.error("--seeds, --size and --requests must be above 0")
    size = int(args.size * 1e6)
    pacing = {"on": True, "off": False, None: None}[args.pacing]
    paced = pacing if pacing is not None else args.congestion_control in PACED
    print(f"utcp loss recovery, {args.congestion_control}, "
          f"{'paced' if paced else 'not paced'}, seeds 1-{args.seeds}, "
          "virtual seconds summed over the seeds")
    print(f"{'case':7} {'recovery':9} {'seconds':>8} {'Mbit/s':>7} {'rtx':>6} {'RTOs':>5} "
          f"{'probes':>6} {'lost rtx':>8} {'queue drops':>11} {'lost':>5}")
    for case in args.only or PATHS:
        rows = {}
        for rack in (False, True):
            t = Totals()
            for seed in range(1, args.seeds + 1):
                opts = dict(rack=rack, congestion_control=args.congestion_control,
                            pacing=pacing)
                if case == "rpc":
                    took, info, path = rpc(seed, args.requests, **opts)
                    t.add(took, args.requests * ANSWER, info, path)
                else:
                    took, info, path = bulk(case, seed, size, **opts)
                    t.add(took, size, info, path)
            rows[rack] = t
            c = t.counters
            print(f"{case:7} {'RACK-TLP' if rack else 'RFC 6675':9} {t.seconds:8.2f} "
                  f"{t.nbytes * 8 / t.seconds / 1e6:7.2f} {c['retransmissions']:6} "
                  f"{c['timeouts']:5} {c['tlp_probes']:6} {c['lost_retransmissions']:8} "
                  f"{t.queue_full:11} {t.lost:5}")
        print(f"{'':7} {'ratio':9} {rows[True].seconds / rows[False].seconds:8.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
