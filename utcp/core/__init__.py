"""The sans-I/O TCP core: wire format, sequence arithmetic and the connection.

Nothing in this package reads a clock, sleeps, or touches a socket: it takes
segments, application calls and the current time, and returns segments to send,
the next deadline and events for the application.
"""
