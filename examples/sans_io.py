"""TCP with no sockets and no clock: two utcp stacks, a list for a network.

utcp.Stack takes datagrams and the time and returns datagrams, events and the
next moment it wants to be woken, so it runs over any datagram transport, or,
as here, over nothing at all: datagrams go from one stack to the other 10 ms
later, and the clock jumps from one moment to the next. The server answers in
capitals and closes when the client has; TIME-WAIT (MSL 0.5 s) ends it all.

    python examples/sans_io.py
"""

import utcp

CLIENT, SERVER = ("10.0.0.2", 5000), ("10.0.0.1", 7007)
stacks = {CLIENT: utcp.Stack(CLIENT), SERVER: utcp.Stack(SERVER)}
server, client = stacks[SERVER], stacks[CLIENT]
in_flight: list[tuple[float, tuple, tuple, bytes]] = []  # (arrival, from, to, datagram)
now = 0.0


def on_event(side: str, conn: utcp.Connection, event: object) -> None:
    """The applications: print each event. Once connected, the client sends and
    half-closes; the server echoes in capitals, and closes after the client."""
    print(f"{now * 1000:4.0f} ms  {side}: {event}")
    if side == "client" and isinstance(event, utcp.Connected):
        client.send(conn, b"hello, sans-I/O", now)
        client.shutdown(conn, now)  # half-close: the client still reads the answer
    elif side == "server" and isinstance(event, utcp.DataReceived):
        server.send(conn, event.data.upper(), now)
    elif side == "server" and isinstance(event, utcp.EndOfStream):
        server.close(conn, now)


def step() -> bool:
    """Deliver what the stacks sent and run what is due at the next moment; False once
    nothing is left to happen."""
    global now
    for here, stack in stacks.items():
        for conn, events in stack.take_events():
            for event in events:
                on_event("server" if stack is server else "client", conn, event)
        for data, to, _ in stack.datagrams_to_send():
            in_flight.append((now + 0.010, here, to, data))
    moments = [t for t, *_ in in_flight] + [
        d for d in (s.next_deadline() for s in stacks.values()) if d is not None]
    if not moments:
        return False
    now = min(moments)
    in_flight.sort(key=lambda item: item[0])
    while in_flight and in_flight[0][0] <= now:
        _, frm, to, data = in_flight.pop(0)
        stacks[to].receive(data, frm, now)
        stacks[to].end_batch(now)
    for stack in stacks.values():
        due = stack.next_deadline()
        if due is not None and due <= now:
            stack.handle_timer(now)
    return True


server.listen(7007, backlog=10, options=utcp.Options())
client.connect(SERVER, 7007, utcp.Options(msl=0.5), now)
while step():
    pass
print(f"{now * 1000:4.0f} ms  TIME-WAIT over: the client holds {len(client)} connections, "
      f"the server {len(server)}")
