"""A network emulator: impaired paths, seeded, for virtual time and for real traffic.

- :class:`Impairments` / :class:`ImpairedPath`: what one direction of a path does
  to datagrams (delay, jitter, loss in bursts, reordering, duplication, bit
  flips, a bottleneck queue, an MTU, blackouts).
- :class:`VirtualNetwork`: hosts joined by such paths on virtual time, where
  ``utcp.open_connection`` / ``utcp.start_server`` run unchanged.
- :class:`Relay`: a UDP relay applying them to real traffic, one upstream
  socket per client as a NAT has (``utcp impair`` on the command line).
"""

from .impairments import ImpairedPath, Impairments
from .network import Host, VirtualNetwork, VirtualTimeLoop
from .relay import Relay

__all__ = ["Host", "ImpairedPath", "Impairments", "Relay", "VirtualNetwork", "VirtualTimeLoop"]
