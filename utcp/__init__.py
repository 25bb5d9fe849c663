"""utcp: TCP in user space, carried in UDP datagrams, with asyncio's streams API.

Swap ``asyncio.open_connection`` / ``asyncio.start_server`` for
``utcp.open_connection`` / ``utcp.start_server``; everything else (StreamReader,
StreamWriter, drain, IncompleteReadError) is asyncio's own. For protocols,
``utcp.create_connection`` / ``utcp.create_server`` stand in for the loop's
methods of the same names.
"""

from .core import compiled_modules
from .core.config import Options
from .core.connection import Connection
from .core.events import (
    Closed,
    Connected,
    DataReceived,
    EndOfStream,
    FinAcked,
    Reset,
    TimedOut,
    TimeoutReason,
    Writable,
)
from .core.observer import NullObserver, Observer
from .core.stack import Stack
from .core.state import State
from .core.wire import MalformedSegment, Segment
from .ladder import Ladder
from .pcap import PcapWriter, Tee
from .protocols import Server, create_connection, create_server
from .streams import StreamReader, StreamWriter, open_connection, start_server
from .transport import ConnectionTransport

__version__ = "0.1.0"

#: Whether the sans-I/O core is compiled with mypyc (installed with ``UTCP_COMPILE=1``:
#: see the README) rather than the pure-Python package; ``utcp --version`` says so too.
compiled: bool = bool(compiled_modules())

__all__ = [
    "Closed", "Connected", "Connection", "ConnectionTransport", "DataReceived", "EndOfStream",
    "FinAcked", "Ladder", "MalformedSegment", "NullObserver", "Observer", "Options",
    "PcapWriter", "Reset", "Segment", "Server", "Stack", "State", "StreamReader",
    "StreamWriter", "Tee", "TimedOut", "TimeoutReason",
    "Writable", "compiled", "create_connection", "create_server", "open_connection",
    "start_server",
]
