"""``utcp demo``: a client and a server in one process, drawn as a ladder."""

from __future__ import annotations

import asyncio
from typing import Any

from ..core.connection import Connection
from ..core.observer import NullObserver
from ..core.state import State
from ..core.wire import Segment
from ..ladder import Ladder
from ..pcap import PcapWriter, Tee
from ..streams import open_connection, start_server
from .output import stdout


async def demo(msl: float, trace: bool, options: dict[str, Any],
               pcap: PcapWriter | None = None) -> None:
    """Run a server and a client over loopback and print the ladder of their exchange
    (and, with ``pcap``, capture it: the client's side sees every segment once)."""
    # Live, each row is printed once nothing still to come can change it: the
    # picture is the one printed at the end without --trace, drawn as it happens.
    ladder = Ladder("client", "server", live=stdout.line if trace else None, settle=True)
    done = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.read()  # everything up to the client's FIN
            writer.write(request.upper())  # the half-closed client still receives this
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, asyncio.CancelledError):
            return  # the demo is ending early (its reader has gone, as with | head)
        done.set_result(None)

    opts = {"msl": msl, **options}
    server = await start_server(handle, "127.0.0.1", 0, observer=ladder.observer("server"),
                                **opts)
    stdout.line(f"A server listens on 127.0.0.1:{server.port}. A client connects, sends "
                 "'hello'\nand half-closes; the server answers 'HELLO' to the half-closed "
                 "client and\ncloses. Sequence numbers are relative to each side's ISN.\n")
    client_side = ladder.observer("client")
    watch = _TimeWaitWatch(client_side if pcap is None else Tee(client_side, pcap))
    reader, writer = await open_connection("127.0.0.1", server.port, observer=watch, **opts)
    writer.write(b"hello")
    writer.write_eof()
    reply = await reader.read()
    writer.close()
    await writer.wait_closed()
    await done
    waited = await watch.closed
    server.close()
    await server.wait_closed()
    if trace:
        ladder.flush_live()
    else:
        stdout.line(ladder.render())
    stdout.line(f"\nclient received {reply!r}; TIME-WAIT lasted {waited:.2f} s "
                 f"(2 x MSL = {2 * msl:g} s), then CLOSED.")


class _TimeWaitWatch(NullObserver):
    """Passes a connection's events on, and measures how long its TIME-WAIT lasts."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._entered = 0.0
        self.closed: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def state_changed(self, conn: Connection, old: State, new: State, cause: str,
                      now: float) -> None:
        self._inner.state_changed(conn, old, new, cause, now)
        if new is State.TIME_WAIT:
            self._entered = now
        elif new is State.CLOSED and old is State.TIME_WAIT and not self.closed.done():
            self.closed.set_result(now - self._entered)

    def segment_sent(self, conn: Connection, seg: Segment, now: float) -> None:
        self._inner.segment_sent(conn, seg, now)

    def segment_received(self, conn: Connection, seg: Segment, now: float) -> None:
        self._inner.segment_received(conn, seg, now)
