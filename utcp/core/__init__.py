"""The sans-I/O TCP core: wire format, sequence arithmetic, the connection, and the
stack that carries many connections behind one datagram socket.

Nothing in this package reads a clock, sleeps, or touches a socket: it takes
segments, application calls and the current time, and returns segments to send,
the next deadline and events for the application.
"""
