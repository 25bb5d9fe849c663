"""The endpoint's single loop timer, which drives every connection's deadlines.

Which deadline comes first is the stack's business (tests/test_stack.py); the
endpoint only keeps one loop timer armed at it."""

from __future__ import annotations

import asyncio
import errno
import gc

import pytest
from conftest import HOST, deadline, read_all, send_all

import utcp
from utcp.emulator import Impairments, VirtualNetwork

pytestmark = pytest.mark.usefixtures("loop_errors")


async def test_one_timer_for_all_segments_not_one_per_segment(monkeypatch, make_server) -> None:
    # The connections' deadlines share the endpoint's one loop timer, re-armed only
    # when the earliest deadline moves earlier: a bulk transfer of thousands of
    # segments arms it a handful of times, never once per segment.
    loop = asyncio.get_running_loop()
    armed = 0
    call_at, call_later = loop.call_at, loop.call_later

    def counting_call_at(*args, **kwargs):
        nonlocal armed
        armed += 1
        return call_at(*args, **kwargs)

    def counting_call_later(*args, **kwargs):
        nonlocal armed
        armed += 1
        return call_later(*args, **kwargs)

    server = await make_server()
    monkeypatch.setattr(loop, "call_at", counting_call_at)
    monkeypatch.setattr(loop, "call_later", counting_call_later)
    async with deadline(30):
        reader, writer = await utcp.open_connection(HOST, server.port)
        data = bytes(5_000_000)
        _, echoed = await asyncio.gather(send_all(writer, data), read_all(reader))
        assert echoed == data
        writer.close()
        await writer.wait_closed()
    segments = server.statistics()["segments_in"] + server.statistics()["segments_out"]
    assert segments > 5000
    assert armed < segments / 100, (armed, segments)


class _NoRoute:
    """A socket whose every send fails at once, as the kernel's does without a route."""

    def __init__(self, sock) -> None:
        self._sock = sock

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def sendto(self, *args):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    sendmsg = sendto


async def test_a_send_that_fails_at_once_reaches_its_connection_at_once() -> None:
    # The events a failed send queues (no route: the connection fails) are
    # delivered by the same flush that sent, not left for whatever input comes next:
    # with nothing else coming, that would be the SYN's first retransmission, 1 s on.
    from utcp.core.events import Unreachable
    from utcp.endpoint import Endpoint

    ep = await Endpoint.create((HOST, 0))
    ep.transport._sock = _NoRoute(ep.transport._sock)
    got: list = []

    class Owner:
        def handle_events(self, events) -> None:
            got.extend(events)

        def endpoint_closed(self) -> None:
            pass

    try:
        ep.connect((HOST, 9), 7, utcp.Options(), lambda conn: Owner())
        assert Unreachable("network") in got
    finally:
        ep.close()


async def test_no_window_grows_past_what_the_socket_can_queue() -> None:
    # The kernel may grant less than the endpoint asks (net.core.rmem_max): half of
    # what it granted (the other half is its own overhead) caps every window.
    import socket

    from utcp.endpoint import Endpoint

    ep = await Endpoint.create((HOST, 0))
    try:
        granted = ep.transport.get_extra_info("socket").getsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert ep.stack.memory.rcv_buf_cap == granted // 2 > 0
    finally:
        ep.close()


@pytest.mark.parametrize("end", ["close", "abort"])
async def test_a_finished_connection_is_freed_without_the_cyclic_collector(make_server,
                                                                           end) -> None:
    # Once a connection is over and the application lets go of it, reference counting
    # frees it at once, on both sides. A connection left for the cyclic garbage
    # collector costs its passes: at thousands of connections a second they took a
    # tenth of a client's CPU.
    server = await make_server()
    gc.collect()
    gc.disable()  # (from here on, only reference counting frees anything)
    try:
        async with deadline(10):
            for _ in range(3):
                reader, writer = await utcp.open_connection(HOST, server.port)
                writer.write(b"ping")
                assert await reader.readexactly(4) == b"ping"
                if end == "close":
                    writer.close()
                    await writer.wait_closed()
                else:
                    writer.transport.abort()
                del reader, writer
            # Until the server's side is over too (the client's is a TIME-WAIT record,
            # or gone).
            while set(server.statistics()["connections"]) - {"TIME-WAIT"}:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # (what the loop still had to run for them)
        alive = [o for o in gc.get_objects() if type(o).__name__ == "Connection"]
        alive += [o.conn for o in gc.get_objects() if type(o).__name__ == "ConnectionTransport"]
        if end == "abort":
            # The server's side ended with a ConnectionResetError, which its reader
            # keeps: the error's traceback holds the handler's frame, which holds the
            # reader. That cycle is asyncio's, the same over the kernel's TCP.
            alive = [conn for conn in alive if conn.local_port != server.port]
        assert alive == []
    finally:
        gc.enable()


@pytest.mark.parametrize("answer", ["close at once", "close later"])
def test_the_ack_of_a_fin_waits_for_the_applications_turn_and_no_longer(answer) -> None:
    # The peer's FIN is acknowledged once the application has had its turn after its
    # end of stream: with the FIN it sends if it closes at once (a close of three
    # segments, as Linux's), alone if it does not, but never 40 ms later, on the
    # delayed-ACK timer. (Virtual time: 10 ms each way.)
    net = VirtualNetwork(default=Impairments(delay=0.01))
    server = net.add_host("10.0.0.1", "server")
    client = net.add_host("10.0.0.2", "client")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        if answer == "close later":
            await asyncio.sleep(1)
        writer.close()

    async def main() -> tuple[float, int]:
        srv = await server.run(utcp.start_server(handle, "0.0.0.0", 7000))

        async def go() -> float:
            loop = asyncio.get_running_loop()
            _, writer = await utcp.open_connection("server", 7000)
            t0 = loop.time()
            writer.close()
            await writer.wait_closed()  # our FIN acknowledged
            return loop.time() - t0

        took = await client.run(go())
        await asyncio.sleep(2)  # (the server's own close, later or not)
        sent = srv.statistics()["segments_out"]
        srv.close()
        return took, sent

    took, sent = net.run(main())
    assert took == pytest.approx(0.02, abs=0.002)  # one round trip
    # Its SYN-ACK, then its FIN with that ACK, or the ACK and later its FIN.
    assert sent == {"close at once": 2, "close later": 3}[answer]


def test_fins_a_turn_apart_each_wait_for_their_own_applications_turn() -> None:
    # FINs arriving one turn of the loop after another, datagram by datagram (as on a
    # loop's own transport): each connection's ACK waits for its own application's
    # turn, so every server side still closes with one segment, its FIN carrying the
    # ACK. (No delay on the path: each FIN arrives in the turn after it was sent.)
    net = VirtualNetwork(default=Impairments(delay=0.0))
    server = net.add_host("10.0.0.1", "server")
    client = net.add_host("10.0.0.2", "client")
    n = 8

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async def main() -> int:
        srv = await server.run(utcp.start_server(handle, "0.0.0.0", 7000))

        async def go() -> None:
            writers = [(await utcp.open_connection("server", 7000))[1] for _ in range(n)]
            for writer in writers:
                writer.close()
                await asyncio.sleep(0)
            await asyncio.gather(*(writer.wait_closed() for writer in writers))

        await client.run(go())
        await asyncio.sleep(1)
        sent = srv.statistics()["segments_out"]
        srv.close()
        return sent

    assert net.run(main()) == 2 * n  # each: its SYN-ACK, then its FIN with the ACK


async def _answering_clients(make_server, n: int):
    """``n`` connections to a server that sends each one byte when told to; each
    client answers its byte with one of its own. Returns the client endpoint, the
    server's writers, the clients' tasks and a coroutine function that closes all."""
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        handlers.append(asyncio.current_task())
        await reader.read()
        writer.close()

    server = await make_server(handle)
    clients = [await utcp.open_connection(HOST, server.port) for _ in range(n)]
    while len(writers) < n:
        await asyncio.sleep(0.001)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        writer.write(b"a")

    tasks = [asyncio.create_task(answer(r, w)) for r, w in clients]
    await asyncio.sleep(0.01)  # (all waiting, nothing in flight)

    async def close() -> None:
        for task in tasks:
            task.cancel()
        for _, writer in clients:
            writer.close()
        await asyncio.gather(*handlers, *(writer.wait_closed() for _, writer in clients))

    return clients[0][1].transport.endpoint, writers, tasks, close


def _hold_input(ep, n: int) -> asyncio.Future:
    """Hold what ``ep`` reads until ``n`` datagrams have come, then hand them to it
    in one batch, as one wake-up that found them all would: the future is done then."""
    done = ep.loop.create_future()
    held: list = []

    def hold(batch: list) -> None:
        held.extend(batch)
        if len(held) >= n:
            del ep.datagrams_received  # (the method again)
            ep.datagrams_received(held)
            done.set_result(None)

    ep.datagrams_received = hold
    return done


def _record_output(monkeypatch, ep) -> list[list[bytes]]:
    """Each call that hands datagrams to ``ep``'s transport, as the payloads it sent."""
    from utcp.core.wire import decode

    calls: list[list[bytes]] = []
    sendmany = ep.transport.sendmany

    def record(datagrams: list) -> None:
        calls.append([decode(data).payload for data, _, _ in datagrams])
        sendmany(datagrams)

    monkeypatch.setattr(ep.transport, "sendmany", record)
    return calls


@pytest.mark.parametrize("n", [1, 12, 20])
async def test_what_the_application_sends_in_one_turn_leaves_together(monkeypatch, make_server,
                                                                      n) -> None:
    # One read brings a byte for each of n connections; each one's task answers. The
    # answers leave together, in one call to the transport (one system call for
    # each run of them, with UDP GSO), or in batches of 16 (TURN_BATCH), so that
    # the peer starts on the first while this side goes on; one alone leaves in the
    # same pass of the loop that ran its task, as it did when each write sent at once.
    from utcp.endpoint import TURN_BATCH

    async with deadline(10):
        ep, writers, tasks, close = await _answering_clients(make_server, n)
        try:
            arrived = _hold_input(ep, n)
            calls = _record_output(monkeypatch, ep)
            for writer in writers:
                writer.write(b"q")
            await arrived  # (the batch is delivered: the clients' tasks are due next)
            await asyncio.sleep(0)  # one pass of the loop: the tasks, then the turn's end
            assert all(task.done() for task in tasks)
            answers = [[p for p in call if p] for call in calls]
            assert [len(a) for a in answers if a] == \
                [TURN_BATCH] * (n // TURN_BATCH) + ([n % TURN_BATCH] if n % TURN_BATCH else [])
            assert sum(answers, []) == [b"a"] * n
        finally:
            await close()


async def test_closing_the_socket_sends_what_the_turn_still_holds(make_server) -> None:
    # Two connections' applications write in their turn, and the second then closes
    # the socket (as the end of its loop does): both segments are sent first, not
    # lost with the turn.
    go = asyncio.Event()
    got: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await go.wait()
        writer.write(b"q")
        got.append(await reader.read(1))
        writer.close()

    async with deadline(10):
        server = await make_server(handle)
        clients = [await utcp.open_connection(HOST, server.port) for _ in range(2)]
        ep = clients[0][1].transport.endpoint
        in_turn: list[bool] = []

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         last: bool) -> None:
            await reader.readexactly(1)
            in_turn.append(ep._turn)
            writer.write(b"a")
            if last:
                ep.close()

        tasks = [asyncio.create_task(answer(r, w, i == 1)) for i, (r, w) in enumerate(clients)]
        arrived = _hold_input(ep, 2)  # (both bytes in one read: a turn opens)
        go.set()
        await arrived
        await asyncio.gather(*tasks)
        assert in_turn == [True, True]
        while len(got) < 2:
            await asyncio.sleep(0.001)
        assert got == [b"a", b"a"]


def test_a_call_made_while_the_loop_is_stopped_is_not_held(monkeypatch) -> None:
    # A callback stopped the loop in the pass that opened a turn, so the turn's end
    # waits for the loop to run again: a write made meanwhile, outside the loop,
    # still goes to the socket at once, as it would with no turn open.
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()
        writer.close()

    class Stops(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            asyncio.get_running_loop().stop()

    async def setup() -> tuple[utcp.Server, list[asyncio.Transport]]:
        server = await utcp.start_server(handle, HOST, 0)
        made = [await utcp.create_connection(Stops, HOST, server.port) for _ in range(2)]
        while len(writers) < 2:
            await asyncio.sleep(0.001)
        return server, [transport for transport, _ in made]

    with asyncio.Runner() as runner:
        server, transports = runner.run(setup())
        ep = transports[0].endpoint
        arrived = _hold_input(ep, 2)  # (both bytes in one read: a turn opens)
        calls = _record_output(monkeypatch, ep)
        for writer in writers:
            writer.write(b"q")
        runner.get_loop().run_forever()  # until the first data_received
        assert arrived.done()
        transports[0].write(b"a")
        assert [b"a"] in calls
        for transport in transports:
            transport.close()
        server.close()
        runner.run(server.wait_closed())


async def test_one_connection_opens_no_turn(monkeypatch, make_server) -> None:
    # A turn gathers what several connections' applications send; one connection's
    # (request and response, or a transfer whose segments arrive over several rounds
    # of one flush) opens none, so nothing of its waits, not even a callback's time.
    async with deadline(10):
        server = await make_server()  # (echo)
        reader, writer = await utcp.open_connection(HOST, server.port)
        ep = writer.transport.endpoint
        ends: list[None] = []
        turn_end = ep._turn_end
        monkeypatch.setattr(ep, "_turn_end", lambda: (ends.append(None), turn_end()))
        data = bytes(300_000)
        for _ in range(5):
            writer.write(data)
            _, echoed = await asyncio.gather(writer.drain(), reader.readexactly(len(data)))
            assert echoed == data
        for _ in range(100):
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
        writer.close()
        await writer.wait_closed()
        assert ends == []
