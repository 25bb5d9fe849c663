"""utcp and the kernel's TCP side by side, through the same impaired IP path.

Two network namespaces, A (the sender) and B (the receiver), each with a TUN
device of MTU 1500 and nothing else: no veth, no route out. A forwarder process
in the root namespace holds both TUN devices; it reads every IP packet one
namespace sends, passes it through an :class:`~utcp.emulator.ImpairedPath` (one
per direction, seeded) and writes it into the other namespace when the path says
it arrives. utcp's UDP datagrams and the kernel's TCP segments are both plain IP
packets there, so both stacks cross the same emulator, measured in the same
bytes (a whole IP packet counts against the bottleneck's rate), and neither has
an advantage.

Each run starts a fresh forwarder (same seeds, empty queues), a receiver in B
and a sender in A, which connects, sends ``--size`` bytes, shuts its side down
and waits for the receiver's count: goodput is the size over the time from
before the connect until that answer (the handshake and the answer's half
round trip included, alike for both stacks). utcp runs with each of its
congestion controls (``--utcp-cc``), the kernel (``TCP_CONGESTION``) with its
default, as /proc/sys/net/ipv4/tcp_congestion_control says, and with those
that match utcp's: ``cubic``, ``reno`` for ``newreno``, and ``bbr`` (which is
also set beside the kernel's ``cubic``).

Needs root (namespaces, TUN devices); otherwise it says so and exits 0.

    python benchmarks/bench_vs_linux.py [--size 10] [--repeat 1] [--rows clean loss1 ...]
    python benchmarks/bench_vs_linux.py --utcp-cc bbr --repeat 3
    python benchmarks/bench_vs_linux.py --ceiling   # the forwarder's own limit
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import heapq
import itertools
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this tree's utcp, in this process and in its children

from utcp import Options  # noqa: E402
from utcp.core.congestion import CONTROLLERS as UTCP_CCS  # noqa: E402
from utcp.emulator import ImpairedPath, Impairments  # noqa: E402

IP_A = "169.254.91.1"  # the sender's namespace
IP_B = "169.254.91.2"  # the receiver's namespace
PORT = 5301  # the receiver's port, TCP (kernel) or UDP (utcp)
MTU = 1500
#: utcp's MSS for a 1500-byte MTU: 1500 - 20 (IP) - 8 (UDP) - 20 (TCP header); with
#: timestamps a segment then carries 1440 bytes, the kernel's 1448.
UTCP_MSS = MTU - 20 - 8 - 20
CHUNK = 1 << 16

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)
TCP_INFO = getattr(socket, "TCP_INFO", 11)

MBIT = 1e6


def _path(rate_mbit: float, one_way_ms: float, queue: int, loss: float = 0.0) -> Impairments:
    return Impairments(delay=one_way_ms / 1000, rate=rate_mbit * MBIT, queue=queue, loss=loss)


#: name -> (what it is, one direction's impairments; both directions get the same).
#: Queues are in packets; a BDP of 1500-byte packets is rate * RTT / 12000.
ROWS: dict[str, tuple[str, Impairments]] = {
    "clean": ("20 Mbit/s, RTT 20 ms, queue 100", _path(20, 10, 100)),
    "loss1": ("as clean, 1 % loss each way", _path(20, 10, 100, 0.01)),
    "loss2": ("as clean, 2 % loss each way", _path(20, 10, 100, 0.02)),
    "rtt100": ("20 Mbit/s, RTT 100 ms, queue 170 (1 BDP)", _path(20, 50, 170)),
    "bottleneck10": ("10 Mbit/s, RTT 50 ms, queue 42 (1 BDP)", _path(10, 25, 42)),
}
CEILING = ("no impairment: the forwarder's own limit", Impairments())

#: Kernel counters worth showing (deltas over a run, in the sender's namespace).
KERNEL_COUNTERS = ("Tcp.OutSegs", "Tcp.RetransSegs", "TcpExt.TCPTimeouts",
                   "TcpExt.TCPLossProbes", "TcpExt.TCPSackRecovery", "TcpExt.TCPRenoRecovery",
                   "TcpExt.TCPSpuriousRTOs", "Udp.RcvbufErrors")


def kernel_counters() -> dict[str, int]:
    """/proc/net/snmp and /proc/net/netstat of the calling process's namespace."""
    out: dict[str, int] = {}
    for name in ("/proc/net/snmp", "/proc/net/netstat"):
        with open(name) as f:
            lines = f.read().splitlines()
        for head, values in zip(lines[::2], lines[1::2], strict=True):
            prefix, names = head.split(":", 1)
            for n, v in zip(names.split(), values.split(":", 1)[1].split(), strict=True):
                out[f"{prefix}.{n}"] = int(v)
    return out


#: ... and in the receiver's: out-of-order data it dropped or pruned.
RECEIVER_COUNTERS = ("TcpExt.TCPOFOQueue", "TcpExt.TCPOFODrop", "TcpExt.OfoPruned",
                     "TcpExt.PruneCalled", "Udp.RcvbufErrors")


def counter_deltas(before: dict[str, int], after: dict[str, int],
                   names: tuple[str, ...] = KERNEL_COUNTERS) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in names}


def cpu_seconds() -> float:
    return time.process_time()  # (os.times counts in 10 ms ticks: too coarse here)


# ------------------------------------------------------------------ the forwarder


def open_tun(name: str) -> int:
    """A TUN device (bare IP packets, no packet-information prefix); lives with the fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Pcap:
    """A pcap file of raw IPv4 packets (LINKTYPE_RAW). utcp's datagrams are written
    as the TCP segments they carry (IP protocol 6, the UDP header left out), so that
    a capture reads the same for both stacks (tshark's TCP analysis and all); their
    checksums stay utcp's, without the pseudo-header."""

    def __init__(self, name: str) -> None:
        self.f = open(name, "wb")  # noqa: SIM115 (closed by close())
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))

    def write(self, packet: bytes, at: float) -> None:
        ihl = (packet[0] & 0x0F) * 4 if packet and packet[0] >> 4 == 4 else 0
        if ihl and packet[9] == socket.IPPROTO_UDP and len(packet) >= ihl + 28:
            segment = packet[ihl + 8:]
            header = bytearray(packet[:ihl])
            header[2:4] = struct.pack("!H", ihl + len(segment))
            header[9] = socket.IPPROTO_TCP
            packet = bytes(header) + segment
        self.f.write(struct.pack("<IIII", int(at), int(at % 1 * 1e6), len(packet), len(packet)))
        self.f.write(packet)

    def close(self) -> None:
        self.f.close()


def forwarder(args: argparse.Namespace) -> None:
    """Create the two TUN devices, move one into each namespace, forward until stdin
    closes; then print what the paths did and what the forwarder cost, as JSON."""
    imp = Impairments(**json.loads(args.impairments))
    ends = []
    for tun, ns, ip in ((args.tun_a, args.ns_a, IP_A), (args.tun_b, args.ns_b, IP_B)):
        fd = open_tun(tun)
        ends.append(fd)
        _ip("link", "set", tun, "netns", ns)
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", tun)
        # No IPv6 on the link: no router solicitations crossing the path.
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        f"net.ipv6.conf.{tun}.disable_ipv6=1"], capture_output=True, timeout=30)
        _ip("-n", ns, "link", "set", tun, "mtu", str(MTU), "txqueuelen", "1000", "up")
    fd_a, fd_b = ends
    paths = {"a>b": ImpairedPath(imp, seed=f"{args.seed}a>b"),
             "b>a": ImpairedPath(imp, seed=f"{args.seed}b>a")}
    # a readable fd -> (its path, where its packets go)
    route = {fd_a: (paths["a>b"], fd_b), fd_b: (paths["b>a"], fd_a)}
    # With --pcap: what each side sent, and what reached the other side.
    sent = Pcap(args.pcap + "-sent.pcap") if args.pcap else None
    arrived = Pcap(args.pcap + "-arrived.pcap") if args.pcap else None
    clock = time.time() - time.monotonic()  # (pcap times are wall-clock times)
    ctrl = sys.stdin.fileno()
    heap: list[tuple[float, int, int, bytes]] = []  # (arrival, order, out fd, packet)
    order = itertools.count()
    released = write_errors = late_1ms = 0
    late_max = late_sum = 0.0
    # The forwarder's CPU is counted from the first packet read to the last released.
    busy_since: float | None = None
    cpu0 = cpu_last = last = 0.0
    print(json.dumps({"ready": True}), flush=True)
    readable = [fd_a, fd_b, ctrl]
    running = True
    monotonic, read, write = time.monotonic, os.read, os.write
    push, pop = heapq.heappush, heapq.heappop
    while running:
        timeout = max(0.0, heap[0][0] - monotonic()) if heap else 0.5
        ready, _, _ = select.select(readable, [], [], timeout)
        now = monotonic()
        for fd in ready:
            if fd == ctrl:
                if not read(ctrl, 4096):
                    running = False
                continue
            path, out = route[fd]
            for _ in range(256):
                try:
                    packet = read(fd, 65536)
                except BlockingIOError:
                    break
                if busy_since is None:
                    busy_since, cpu0 = now, cpu_seconds()
                if sent is not None:
                    sent.write(packet, now + clock)
                for at, data in path.send(packet, now):
                    push(heap, (at, next(order), out, data))
        now = monotonic()
        if heap and heap[0][0] <= now:
            last = now
        while heap and heap[0][0] <= now:
            at, _, out, data = pop(heap)
            late = now - at
            late_sum += late
            late_max = max(late_max, late)
            late_1ms += late > 0.001
            released += 1
            try:
                write(out, data)
            except OSError:
                write_errors += 1
            if arrived is not None:
                arrived.write(data, at + clock)
        if last == now:
            cpu_last = cpu_seconds()
    wall = last - busy_since if busy_since is not None else 0.0
    cpu = cpu_last - cpu0
    print(json.dumps({
        "paths": {name: dict(p.counters) for name, p in paths.items()},
        "released": released, "write_errors": write_errors,
        "late_mean_ms": late_sum / released * 1000 if released else 0.0,
        "late_max_ms": late_max * 1000, "late_over_1ms": late_1ms,
        "cpu": cpu / wall if wall else 0.0,
    }), flush=True)
    for fd in ends:
        os.close(fd)
    for capture in (sent, arrived):
        if capture is not None:
            capture.close()


# ------------------------------------------------------------------ kernel TCP


def tcp_info(sock: socket.socket) -> dict[str, int]:
    """A few fields of struct tcp_info (<linux/tcp.h>): 8 bytes of u8 fields, then u32s."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 104)
    u32 = struct.unpack_from("24I", raw, 8)
    return {"rtt_us": u32[15], "snd_cwnd": u32[19], "total_retrans": u32[23],
            "snd_mss": u32[2]}


def kernel_receiver(args: argparse.Namespace) -> None:
    before = kernel_counters()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((IP_B, PORT))
    srv.listen(1)
    srv.settimeout(args.timeout + 10)
    print(json.dumps({"ready": True}), flush=True)
    conn, _ = srv.accept()
    conn.settimeout(args.timeout + 10)
    buf = bytearray(1 << 18)
    total = 0
    while n := conn.recv_into(buf):
        total += n
    conn.sendall(json.dumps({"received": total}).encode())
    conn.close()
    srv.close()
    print(json.dumps({"received": total, "counters": counter_deltas(
        before, kernel_counters(), RECEIVER_COUNTERS)}), flush=True)


def kernel_sender(args: argparse.Namespace) -> None:
    before = kernel_counters()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.cc != "default":
        sock.setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, args.cc.encode())
    cc = sock.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16).split(b"\0")[0].decode()
    sock.settimeout(args.timeout)
    chunk = bytes(CHUNK)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    sock.connect((IP_B, PORT))
    left = args.size
    while left > 0:
        n = min(left, CHUNK)
        sock.sendall(chunk[:n])
        left -= n
    sock.shutdown(socket.SHUT_WR)
    reply = b""
    while part := sock.recv(4096):
        reply += part
    seconds = time.perf_counter() - t0
    info = tcp_info(sock)
    sock.close()
    print(json.dumps({
        "seconds": seconds, "received": json.loads(reply)["received"], "cc": cc,
        "cpu": (cpu_seconds() - cpu0) / seconds, "tcp_info": info,
        "counters": counter_deltas(before, kernel_counters()),
    }), flush=True)


# ------------------------------------------------------------------ utcp


def utcp_receiver(args: argparse.Namespace) -> None:
    import utcp

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        total = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal total
            while chunk := await reader.read(1 << 18):
                total += len(chunk)
            writer.write(json.dumps({"received": total}).encode())
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            if not done.done():
                done.set_result(total)

        # The orchestrator closes our stdin when the sender has given up: report anyway.
        loop.add_reader(0, lambda: done.done() or os.read(0, 4096)
                        or done.set_exception(TimeoutError()))
        server = await utcp.start_server(handle, IP_B, PORT, mss=UTCP_MSS,
                                         rcv_buf=args.rcv_buf,
                                         rcv_buf_max=args.rcv_buf_max, limit=1 << 18)
        print(json.dumps({"ready": True}), flush=True)
        try:
            await done
            error = None
        except TimeoutError:
            error = "the sender gave up"
        stats = server.statistics()
        server.close()
        print(json.dumps({"received": total, "statistics": {
            k: stats[k] for k in ("segments_in", "segments_out", "drops",
                                  "connection_totals")}, **({"error": error} if error else {})}),
              flush=True)

    asyncio.run(main())


def utcp_sender(args: argparse.Namespace) -> None:
    import utcp

    async def main() -> None:
        before = kernel_counters()
        chunk = bytes(CHUNK)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        reader, writer = await utcp.open_connection(
            IP_B, PORT, mss=UTCP_MSS, rcv_buf=args.rcv_buf, rcv_buf_max=args.rcv_buf_max,
            congestion_control=args.cc)
        transport = writer.transport

        async def transfer() -> bytes:
            left = args.size
            while left > 0:
                n = min(left, CHUNK)
                writer.write(chunk[:n])
                left -= n
                await writer.drain()
            writer.write_eof()
            return await reader.read()

        def report(info: dict) -> dict:
            return {"srtt_ms": (info["srtt"] or 0) * 1000,
                    **{k: info.get(k, 0) for k in ("segments_out", "retransmissions",
                                                    "timeouts", "recoveries", "tlp_probes",
                                                    "lost_retransmissions", "undos")}}

        try:
            reply = await asyncio.wait_for(transfer(), args.timeout)
        except asyncio.TimeoutError:
            # Where it stuck, for whoever reads the error.
            info = transport.get_extra_info("utcp")
            print(json.dumps({"error": f"timed out after {args.timeout:g} s",
                              "utcp": report(info), "info": info}), flush=True)
            transport.abort()
            return
        seconds = time.perf_counter() - t0
        info = transport.get_extra_info("utcp")
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (asyncio.TimeoutError, OSError):
            pass
        print(json.dumps({
            "seconds": seconds, "received": json.loads(reply)["received"],
            "cc": args.cc, "cpu": (cpu_seconds() - cpu0) / seconds, "utcp": report(info),
            "counters": counter_deltas(before, kernel_counters()),
        }), flush=True)

    asyncio.run(main())


# ------------------------------------------------------------------ orchestration


class Lab:
    """The two namespaces, and every process started in or for them; ``close``
    (also on errors and Ctrl-C) ends the processes and deletes the namespaces."""

    def __init__(self) -> None:
        tag = os.getpid()
        self.ns_a, self.ns_b = f"utcp-vsl-a-{tag}", f"utcp-vsl-b-{tag}"
        self.tun_a, self.tun_b = f"vsl{tag}a", f"vsl{tag}b"
        self.procs: list[subprocess.Popen[str]] = []
        self.made: list[str] = []

    def __enter__(self) -> Lab:
        try:
            for ns in (self.ns_a, self.ns_b):
                _ip("netns", "add", ns)
                self.made.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made.clear()

    def start(self, role: str, netns: str | None, *extra: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--role", role, *extra]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def finish(self, proc: subprocess.Popen[str], timeout: float) -> dict:
        """The last JSON line ``proc`` prints once it ends (closing its stdin first)."""
        try:
            out, err = proc.communicate(input="", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            proc.communicate()
            self._forget(proc)
            return {"error": f"timed out after {timeout:.0f} s"}
        self._forget(proc)  # (not on Ctrl-C: close() still has to end it)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            return {"error": (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
        return json.loads(lines[-1])

    def _forget(self, proc: subprocess.Popen[str]) -> None:
        """``proc`` has ended: close() need not stop it (it may be gone already)."""
        if proc in self.procs:
            self.procs.remove(proc)

    def wait_ready(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if '"ready"' not in line:
            _, err = proc.communicate(timeout=10)
            self._forget(proc)
            last = (err.strip().splitlines() or [line.strip() or f"exit {proc.returncode}"])[-1]
            raise RuntimeError(f"a helper failed to start: {last}")

    def host_drops(self) -> int:
        """Packets the namespaces' TUN devices or their queues dropped (the forwarder
        fell behind): none should be, or the emulator is not the only path."""
        total = 0
        for ns, dev in ((self.ns_a, self.tun_a), (self.ns_b, self.tun_b)):
            link = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", dev],
                                  capture_output=True, text=True, timeout=10).stdout
            qdisc = subprocess.run(["ip", "netns", "exec", ns, "tc", "-s", "-j", "qdisc",
                                    "show", "dev", dev],
                                   capture_output=True, text=True, timeout=10).stdout
            try:
                total += json.loads(link)[0]["stats64"]["tx"]["dropped"]
            except (ValueError, LookupError, TypeError):
                pass
            try:
                total += sum(q.get("drops", 0) for q in json.loads(qdisc))
            except (ValueError, TypeError):
                pass
        return total

    def run(self, imp: Impairments, seed: int, stack: str, cc: str,
            args: argparse.Namespace, pcap: str | None = None) -> dict:
        """One transfer through a fresh forwarder; the sender's, receiver's and
        forwarder's reports together. ``pcap``: a path prefix for captures."""
        fields = {f: getattr(imp, f) for f in ("delay", "jitter", "loss", "burst", "rate",
                                               "queue", "reorder", "duplicate")}
        fwd = self.start("forwarder", None, "--impairments", json.dumps(fields),
                         "--seed", str(seed), "--tun-a", self.tun_a, "--tun-b", self.tun_b,
                         "--ns-a", self.ns_a, "--ns-b", self.ns_b,
                         *(["--pcap", pcap] if pcap else []))
        try:
            self.wait_ready(fwd)
            common = ["--size", str(args.size), "--cc", cc, "--rcv-buf", str(args.rcv_buf),
                      "--rcv-buf-max", str(args.rcv_buf_max), "--timeout", str(args.timeout)]
            receiver = self.start(f"{stack}-receiver", self.ns_b, *common)
            self.wait_ready(receiver)
            sender = self.start(f"{stack}-sender", self.ns_a, *common)
            result = self.finish(sender, args.timeout + 10)
            got = self.finish(receiver, 10)
            drops = self.host_drops()
        finally:
            path = self.finish(fwd, 10)
        result.update(stack=stack, want_cc=cc, receiver=got, forwarder=path,
                      host_drops=drops)
        if "seconds" in result:
            result["mbit"] = args.size * 8 / result["seconds"] / MBIT
            if result["received"] != args.size:
                result["error"] = f"received {result['received']} of {args.size} bytes"
        elif "utcp" in result:
            result["stalled"] = True  # no more progress: counted as nothing delivered
            result["mbit"] = 0.0
        return result


#: The kernel's congestion control that matches each of utcp's.
KERNEL_CC = {"cubic": "cubic", "newreno": "reno", "bbr": "bbr"}


def configs(default_cc: str, available: list[str],
            utcp_ccs: Sequence[str] = UTCP_CCS) -> list[tuple[str, str]]:
    """(stack, congestion control) of each run in a row: utcp with each of
    ``utcp_ccs``, the kernel with its default and with what pairs() compares."""
    runs = [("utcp", cc) for cc in utcp_ccs] + [("linux", "default")]
    wanted = {k for _, k in pairs(default_cc, available, utcp_ccs)} - {"default"}
    runs += [("linux", cc) for cc in ("cubic", "reno", "bbr") if cc in wanted]
    return runs


def pairs(default_cc: str, available: list[str],
          utcp_ccs: Sequence[str] = UTCP_CCS) -> list[tuple[str, str]]:
    """(utcp's, the kernel's) congestion controls compared in the table: each of
    utcp's with the kernel's default and with the kernel's same algorithm, and BBR
    with the kernel's CUBIC too (what a loss-based sender gets on that path)."""
    out = []
    for ucc in utcp_ccs:
        kernel = [KERNEL_CC[ucc]] + (["cubic"] if ucc == "bbr" else [])
        if ucc == "cubic":
            kernel.insert(0, "default")  # (the table has always led with this pair)
        for kcc in kernel:
            if kcc == default_cc:
                kcc = "default"
            elif kcc != "default" and kcc not in available:
                continue
            if (ucc, kcc) not in out:
                out.append((ucc, kcc))
    return out


def losses(r: dict) -> tuple[str, str, str]:
    """What the sender did about losses: (segments resent / sent, RTOs, recoveries)."""
    if r["stack"] == "utcp":
        u = r["utcp"]
        return (f"{u['retransmissions']} / {u['segments_out']}", str(u["timeouts"]),
                f"{u['recoveries']} (+{u['tlp_probes']} TLP)")
    c = r["counters"]
    return (f"{c['Tcp.RetransSegs']} / {c['Tcp.OutSegs']}", str(c["TcpExt.TCPTimeouts"]),
            f"{c['TcpExt.TCPSackRecovery'] + c['TcpExt.TCPRenoRecovery']} "
            f"(+{c['TcpExt.TCPLossProbes']} TLP)")


def ooo_dropped(r: dict) -> str:
    """Out-of-order data the receiver threw away after holding it."""
    got = r.get("receiver", {})
    if r["stack"] == "utcp":
        n = got.get("statistics", {}).get("connection_totals", {}).get("ooo_dropped")
        return "?" if n is None else f"{n // 1000} kB" if n else "0"
    c = got.get("counters")
    return "?" if c is None else str(c["TcpExt.TCPOFODrop"] + c["TcpExt.OfoPruned"])


def describe_run(r: dict) -> str:
    if "mbit" not in r:
        return f"error: {r.get('error')}"
    fwd = r["forwarder"]
    ab = fwd.get("paths", {}).get("a>b", {})
    resent, rtos, recoveries = losses(r)
    head = (f"STALLED ({r['error']})" if r.get("stalled") else f"{r['mbit']:.2f} Mbit/s"
            + (f" [{r['error']}]" if "error" in r else ""))
    return (f"{head}; resent {resent} segments, {rtos} RTOs, {recoveries} recoveries; "
            f"receiver dropped out-of-order: {ooo_dropped(r)}; path A>B lost "
            f"{ab.get('lost', 0)}, queue-full {ab.get('queue-full', 0)} of {ab.get('sent', 0)}; "
            f"forwarder CPU {fwd.get('cpu', 0) * 100:.0f} %, late by "
            f"{fwd.get('late_mean_ms', 0):.2f} ms mean / {fwd.get('late_max_ms', 0):.1f} max; "
            f"sender CPU {r.get('cpu', 0) * 100:.0f} %; host drops {r['host_drops']}")


def median_run(runs: list[dict]) -> dict | None:
    """The median run by goodput; a stalled run counts as 0 Mbit/s."""
    done = sorted((r for r in runs if "mbit" in r), key=lambda r: r["mbit"])
    return done[len(done) // 2] if done else None


def fmt(runs: list[dict]) -> str:
    med = median_run(runs)
    if med is None:
        return "failed"
    rates = sorted(r["mbit"] for r in runs if "mbit" in r)
    text = "stalled" if med.get("stalled") else f"{med['mbit']:.2f}"
    if len(rates) > 1:
        text += f" ({rates[0]:.2f}-{rates[-1]:.2f})"  # (as precise as the median)
    stalled = sum(1 for r in runs if r.get("stalled"))
    failed = sum(1 for r in runs if "mbit" not in r)
    if stalled and len(runs) > 1:
        text += f", {stalled} of {len(runs)} stalled"
    if failed:
        text += f", {failed} of {len(runs)} failed"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=None,
                        help="megabytes (10**6 bytes) per transfer (default 10; with "
                             "--ceiling 200)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per case, each with its own seed; the median is shown")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--utcp-cc", nargs="+", choices=list(UTCP_CCS), default=list(UTCP_CCS),
                        dest="cc_list", metavar="CC",
                        help="utcp's congestion controls to run (default: all of "
                             f"{', '.join(UTCP_CCS)}); the kernel runs its default and "
                             "those they are compared with")
    parser.add_argument("--ceiling", action="store_true",
                        help="instead: push each stack through an unimpaired forwarder")
    parser.add_argument("--rcv-buf", type=int, default=Options().rcv_buf,
                        help="utcp's receive buffer as it starts, both ends (default: "
                             "utcp's own, %(default)s; the kernel autotunes its own up to "
                             "tcp_rmem's maximum)")
    parser.add_argument("--rcv-buf-max", type=int, default=Options().rcv_buf_max,
                        help="the most utcp's receive buffer grows to; 0: it stays at "
                             "--rcv-buf (default: utcp's own, %(default)s)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per transfer")
    parser.add_argument("--json", action="store_true", help="also print every run as JSON")
    # The helpers this script starts as processes of their own:
    roles = {"forwarder": forwarder, "linux-receiver": kernel_receiver,
             "linux-sender": kernel_sender, "utcp-receiver": utcp_receiver,
             "utcp-sender": utcp_sender}
    parser.add_argument("--role", choices=list(roles), help=argparse.SUPPRESS)
    parser.add_argument("--pcap", metavar="DIR",
                        help="write each run's packets (sent, and as they arrived) to "
                             "pcap files in DIR")
    for name in ("--cc", "--impairments", "--seed", "--tun-a", "--tun-b", "--ns-a", "--ns-b"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role is not None:
        args.size = int(args.size or 0)
        try:
            roles[args.role](args)
        except KeyboardInterrupt:
            return 1
        return 0
    if args.size is None:
        args.size = 200 if args.ceiling else 10
    args.size = int(args.size * 1e6)
    return orchestrate(args)


def orchestrate(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench_vs_linux: network namespaces and TUN devices need root")
        print("skipped: needs root")
        return 0
    missing = [t for t in ("ip", "tc") if shutil.which(t) is None]
    if missing or not os.path.exists("/dev/net/tun"):
        print(f"skipped: needs {' and '.join(missing) or '/dev/net/tun'}")
        return 0
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        default_cc = f.read().strip()
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
        available = f.read().split()

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Clean up on any of these, even if started with SIGINT ignored (as by nohup or &).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    rows = {"ceiling": CEILING} if args.ceiling else {name: ROWS[name] for name in args.rows}
    runs_of = configs(default_cc, available, args.cc_list)
    print(f"# utcp vs Linux TCP through one impaired IP path ({time.strftime('%Y-%m-%d')}, "
          f"kernel {os.uname().release}, default congestion control {default_cc}, "
          f"available: {' '.join(available)})")
    default = Options()
    own = (args.rcv_buf, args.rcv_buf_max) == (default.rcv_buf, default.rcv_buf_max)
    print(f"# {args.size / 1e6:g} MB per transfer, {args.repeat} run(s) each; utcp mss "
          f"{UTCP_MSS}, rcv_buf {args.rcv_buf} growing to {args.rcv_buf_max}"
          f"{' (its default)' if own else ''}; MTU {MTU}", flush=True)
    results: dict[tuple[str, str, str], list[dict]] = {}
    try:
        with Lab() as lab:
            for name, (_, imp) in rows.items():
                for rep in range(args.repeat):
                    for stack, cc in runs_of:
                        pcap = None
                        if args.pcap:
                            os.makedirs(args.pcap, exist_ok=True)
                            pcap = os.path.join(args.pcap, f"{name}-{rep + 1}-{stack}-{cc}")
                        r = lab.run(imp, rep + 1, stack, cc, args, pcap)
                        results.setdefault((name, stack, cc), []).append(r)
                        label = cc if cc != "default" else f"default ({default_cc})"
                        print(f"{name} #{rep + 1} {stack} {label}: {describe_run(r)}",
                              flush=True)
    except KeyboardInterrupt:
        print("interrupted; namespaces and helpers removed", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench_vs_linux: {exc}; namespaces and helpers removed", file=sys.stderr)
        return 1
    print()
    print("| row | impairments (each way) | utcp cc | utcp Mbit/s | Linux cc | Linux Mbit/s "
          "| utcp/Linux |")
    print("|---|---|---|---:|---|---:|---:|")
    for name, (what, _) in rows.items():
        for ucc, kcc in pairs(default_cc, available, args.cc_list):
            u = results.get((name, "utcp", ucc), [])
            k = results.get((name, "linux", kcc), [])
            mu, mk = median_run(u), median_run(k)
            ratio = f"{mu['mbit'] / mk['mbit']:.2f}" if mu and mk else "-"
            kname = f"{default_cc} (default)" if kcc == "default" else kcc
            print(f"| {name} | {what} | {ucc} | {fmt(u)} | {kname} | {fmt(k)} | {ratio} |")
    print()
    print("What the median run of each case saw (resent: segments retransmitted / sent; "
          "RTOs; fast recoveries, and tail loss probes; out-of-order data the "
          "receiver dropped; the data path's random losses and queue overflows):")
    print()
    print("| row | stack | Mbit/s | resent | RTOs | recoveries | receiver dropped "
          "| path lost | queue-full | forwarder CPU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in rows:
        for stack, cc in runs_of:
            med = median_run(results.get((name, stack, cc), []))
            if med is None:
                continue
            ab = med["forwarder"].get("paths", {}).get("a>b", {})
            label = f"{stack} {cc if cc != 'default' else default_cc}"
            rate = "stalled" if med.get("stalled") else f"{med['mbit']:.2f}"
            print(f"| {name} | {label} | {rate} | {' | '.join(losses(med))} | "
                  f"{ooo_dropped(med)} | {ab.get('lost', 0)} | {ab.get('queue-full', 0)} | "
                  f"{med['forwarder'].get('cpu', 0) * 100:.0f} % |")
    if args.json:
        print(json.dumps([{"row": n, "stack": s, "cc": c, "runs": rs}
                          for (n, s, c), rs in results.items()], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
