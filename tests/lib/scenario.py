"""A known TCP socket table, built inside the test's private network namespace.

`Scenario.build()` opens the sockets below, keeps every one of them open until `close()`, and
records, by construction, how many sockets it put in each kernel state. `Scenario.verify()`
then checks that table against `ss -Htan` (the independent oracle), polling briefly until the
states have settled. Every port is fixed: the namespace is fresh, so nothing else holds them.
Client sockets use kernel-chosen ephemeral ports (32768 and up).

Listeners (LISTEN = 6)

    127.0.0.1:20001   IPv4                      ESTAB pairs, TIME_WAIT, CLOSE_WAIT
    [::1]:20002       IPv6-only (V6ONLY=1)      ESTAB pairs, TIME_WAIT, CLOSE_WAIT
    [::]:20003        dual-stack (V6ONLY=0)     ESTAB pairs from IPv4 and IPv6 clients
    127.0.0.1:20004   backlog 0                 SYN_SENT
    [::1]:20005       TCP_DEFER_ACCEPT 3600 s   SYN_RECV
    127.0.0.1:20006   SO_RCVBUF 4 KiB           FIN_WAIT1, LAST_ACK, CLOSING

States (kernel name = expected count; every non-zero count is different from the others)

    ESTABLISHED = 28
        2 pairs IPv4 to :20001, 2 pairs IPv6 to :20002, 3 pairs IPv4 clients to the
        dual-stack :20003 (the accepted side shows in tcp6 as [::ffff:127.0.0.1]), 1 pair IPv6
        to :20003 (16 sockets); the one connection sitting un-accepted in the backlog-0
        queue (2); the 7 client ends of the SYN_RECV connections (7); the 3 server ends of
        the FIN_WAIT1 connections, which never see the client's FIN (3).
    SYN_SENT = 4     non-blocking connects to :20004 once its accept queue is full (one
                     connection queued, never accepted): Linux drops their SYNs. TCP_SYNCNT 127
                     keeps them retrying for hours.
    SYN_RECV = 7     clients connect to :20005 and send nothing; with TCP_DEFER_ACCEPT the
                     server keeps a request socket in SYN_RECV (client side: ESTABLISHED).
    FIN_WAIT1 = 3    the client fills the (non-reading) server's window and its own send
                     buffer, then shutdown(SHUT_WR): its FIN waits behind unsendable data.
    FIN_WAIT2 = 8    5 CLOSE_WAIT peers + 2 LAST_ACK peers + 1 CLOSING peer: all shut down
                     with shutdown(SHUT_WR) and never closed, so no FIN_WAIT2 timeout applies.
    TIME_WAIT = 9    5 IPv4 (to :20001) + 4 IPv6 (to :20002): the client closes first, the
                     server closes after it saw EOF, the client ends in TIME_WAIT (60 s; see
                     `refresh_time_wait`).
    CLOSE = 0        (unhashed sockets are not listed by /proc/net/tcp nor ss -tan)
    CLOSE_WAIT = 5   3 IPv4 + 2 IPv6: client shutdown(SHUT_WR), server reads EOF, never closes.
    LAST_ACK = 2     the client (small receive buffer, never reads) shuts down writing; the
                     server, in CLOSE_WAIT, fills the client's window, then shutdown(SHUT_WR):
                     its FIN waits behind unsendable data.
    LISTEN = 6       the listeners above.
    CLOSING = 1      like FIN_WAIT1, then the server shuts down writing too: the client gets
                     the server's FIN while its own FIN is still queued (simultaneous close).

The counts above are documentation; the code derives `expected` from the sockets it actually
creates, and `verify()` is what proves them.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import socket
import subprocess
import time
from typing import Callable, Collection, Iterable, Sequence

# Kernel state names, in /proc/net/tcp `st` order (01..0B).
KERNEL_STATES = (
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
)

# `ss` state column -> kernel state name.
SS_TO_KERNEL = {
    "ESTAB": "ESTABLISHED",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}

KERNEL_TO_SS = {kernel: ss for ss, kernel in SS_TO_KERNEL.items()}

# /proc/net/tcp `st` (hex) -> kernel state name.
PROC_ST_TO_KERNEL = {f"{i + 1:02X}": name for i, name in enumerate(KERNEL_STATES)}

PORT_V4 = 20001
PORT_V6ONLY = 20002
PORT_DUAL = 20003
PORT_BACKLOG0 = 20004
PORT_DEFER = 20005
PORT_SMALLBUF = 20006
SCENARIO_PORTS = (PORT_V4, PORT_V6ONLY, PORT_DUAL, PORT_BACKLOG0, PORT_DEFER, PORT_SMALLBUF)

# How many of each construct the scenario makes.
ESTAB_V4_PAIRS = 2
ESTAB_V6_PAIRS = 2
ESTAB_DUAL_V4_PAIRS = 3
ESTAB_DUAL_V6_PAIRS = 1
SYN_SENT_CLIENTS = 4
SYN_RECV_CLIENTS = 7
FIN_WAIT1_CLIENTS = 3
LAST_ACK_SERVERS = 2
CLOSING_CLIENTS = 1
CLOSE_WAIT_V4 = 3
CLOSE_WAIT_V6 = 2
TIME_WAIT_V4 = 5
TIME_WAIT_V6 = 4

TIME_WAIT_LIFETIME = 60.0  # Linux TCP_TIMEWAIT_LEN, not tunable
SMALL_BUF = 4096
DEFER_ACCEPT_SECONDS = 3600
SETTLE_TIMEOUT = 10.0
IO_TIMEOUT = 5.0

# IPPROTO_TCP options not exported by every Python build.
TCP_SYNCNT = getattr(socket, "TCP_SYNCNT", 7)
TCP_DEFER_ACCEPT = getattr(socket, "TCP_DEFER_ACCEPT", 9)


@dataclasses.dataclass(frozen=True)
class SsSocket:
    """One line of `ss -Htan`."""

    state: str  # kernel name
    recv_q: int
    send_q: int
    local: str
    peer: str

    @property
    def local_port(self) -> int:
        return _port_of(self.local)

    @property
    def peer_port(self) -> int | None:
        tail = self.peer.rsplit(":", 1)[1]
        return None if tail == "*" else int(tail)

    @property
    def ident(self) -> tuple[str, str, str]:
        """What identifies this socket and its state (queue sizes left out)."""
        return (self.state, self.local, self.peer)

    def touches_port(self, port: int) -> bool:
        return self.local_port == port or self.peer_port == port


def _port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def output_fields(argv: Sequence[str], timeout: float = 30) -> list[tuple[str, list[str]]]:
    """(line, its whitespace-separated fields) for every non-blank line `argv` prints."""
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout).stdout
    return [(line, line.split()) for line in out.splitlines() if line.split()]


def ss_sockets() -> list[SsSocket]:
    """All TCP sockets of this namespace, as `ss -Htan` lists them."""
    sockets = []
    for line, fields in output_fields(["ss", "-Htan"], timeout=10):
        assert len(fields) >= 5, f"unexpected ss line: {line!r}"
        assert fields[0] in SS_TO_KERNEL, f"unknown ss state {fields[0]!r} in {line!r}"
        sockets.append(
            SsSocket(SS_TO_KERNEL[fields[0]], int(fields[1]), int(fields[2]), fields[3], fields[4])
        )
    return sockets


def count_states(
    sockets: Iterable[SsSocket], exclude_ports: Collection[int] = ()
) -> dict[str, int]:
    """Count per kernel state (every state present, zeros included)."""
    counts = dict.fromkeys(KERNEL_STATES, 0)
    for s in sockets:
        if any(s.touches_port(port) for port in exclude_ports):
            continue
        counts[s.state] += 1
    return counts


def proc_net_tcp_counts(exclude_ports: Collection[int] = ()) -> dict[str, int]:
    """Count per kernel state straight from /proc/net/tcp and /proc/net/tcp6 (a second
    opinion next to ss, which asks the kernel over netlink)."""
    counts = dict.fromkeys(KERNEL_STATES, 0)
    for fields in proc_net_rows("tcp"):
        ports = {int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)}
        if ports & set(exclude_ports):
            continue
        counts[PROC_ST_TO_KERNEL[fields[3]]] += 1
    return counts


def proc_net_rows(table: str):
    """The split lines (header skipped) of /proc/net/<table> then <table>6; a missing table
    (IPv6 disabled) has none."""
    for path in (f"/proc/net/{table}", f"/proc/net/{table}6"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            yield line.split()


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    interval=0.02,
    detail: Callable[[], str] = lambda: "",
):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds,
    with `detail()` (e.g. a log tail) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            extra = detail()
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{extra}" if extra else "")
            )
        time.sleep(interval)


def _listener(family, addr, port, backlog=16, v6only=None, before_listen=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
    if before_listen:
        before_listen(s)
    s.bind((addr, port))
    s.listen(backlog)
    s.settimeout(IO_TIMEOUT)
    return s


def _fill_send_buffer(sock: socket.socket) -> int:
    """Write to a peer that does not read until the kernel refuses more; returns bytes sent."""
    sock.setblocking(False)
    chunk = b"x" * 65536
    total = 0
    idle_deadline = time.monotonic() + 0.3
    hard_deadline = time.monotonic() + IO_TIMEOUT
    # Keep writing until EAGAIN has persisted for a short while (the window may open a bit
    # more as the receiver's queue is collapsed), bounded by a hard deadline.
    while time.monotonic() < hard_deadline:
        try:
            n = sock.send(chunk)
            total += n
            idle_deadline = time.monotonic() + 0.3
        except BlockingIOError:
            if time.monotonic() >= idle_deadline:
                break
            time.sleep(0.01)
    sock.settimeout(IO_TIMEOUT)
    assert total > 0, "could not write anything to fill the peer's window"
    return total


class Scenario:
    """Builds, holds and verifies the known socket table described in the module docstring."""

    def __init__(self) -> None:
        self.expected: collections.Counter[str] = collections.Counter()
        self._held: list[socket.socket] = []
        self._listeners: dict[int, socket.socket] = {}
        self.time_wait_created = 0.0
        self.built = False

    # -- helpers -------------------------------------------------------------------------

    def _hold(self, *socks: socket.socket) -> None:
        self._held.extend(socks)

    def _pair(self, port: int, client_family, client_addr: str, client_setup=None):
        """Connect a client to a scenario listener, accept it; both ends stay ESTABLISHED."""
        c = socket.socket(client_family, socket.SOCK_STREAM)
        c.settimeout(IO_TIMEOUT)
        if client_setup:
            client_setup(c)
        c.connect((client_addr, port))
        s, _ = self._listeners[port].accept()
        s.settimeout(IO_TIMEOUT)
        return c, s

    # -- construction ----------------------------------------------------------------------

    def build(self) -> "Scenario":
        assert not self.built
        v4, v6 = socket.AF_INET, socket.AF_INET6
        smallrcv = lambda s: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUF)
        smallsnd = lambda s: s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
        defer = lambda s: s.setsockopt(
            socket.IPPROTO_TCP, TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECONDS
        )

        for port, ls in (
            (PORT_V4, _listener(v4, "127.0.0.1", PORT_V4)),
            (PORT_V6ONLY, _listener(v6, "::1", PORT_V6ONLY, v6only=True)),
            (PORT_DUAL, _listener(v6, "::", PORT_DUAL, v6only=False)),
            (PORT_BACKLOG0, _listener(v4, "127.0.0.1", PORT_BACKLOG0, backlog=0)),
            (PORT_DEFER, _listener(v6, "::1", PORT_DEFER, backlog=64, v6only=True,
                                   before_listen=defer)),
            (PORT_SMALLBUF, _listener(v4, "127.0.0.1", PORT_SMALLBUF, before_listen=smallrcv)),
        ):
            self._listeners[port] = ls
            self._hold(ls)
            self.expected["LISTEN"] += 1

        # ESTABLISHED pairs over IPv4, IPv6, and both families into the dual-stack listener.
        for n, port, fam, addr in (
            (ESTAB_V4_PAIRS, PORT_V4, v4, "127.0.0.1"),
            (ESTAB_V6_PAIRS, PORT_V6ONLY, v6, "::1"),
            (ESTAB_DUAL_V4_PAIRS, PORT_DUAL, v4, "127.0.0.1"),
            (ESTAB_DUAL_V6_PAIRS, PORT_DUAL, v6, "::1"),
        ):
            for _ in range(n):
                self._hold(*self._pair(port, fam, addr))
                self.expected["ESTABLISHED"] += 2

        # CLOSE_WAIT (server) + FIN_WAIT2 (client): client shuts down writing, never closes.
        for n, port, fam, addr in (
            (CLOSE_WAIT_V4, PORT_V4, v4, "127.0.0.1"),
            (CLOSE_WAIT_V6, PORT_V6ONLY, v6, "::1"),
        ):
            for _ in range(n):
                c, s = self._pair(port, fam, addr)
                c.shutdown(socket.SHUT_WR)
                assert s.recv(1) == b"", "server did not see the client's FIN"
                self._hold(c, s)
                self.expected["CLOSE_WAIT"] += 1
                self.expected["FIN_WAIT2"] += 1

        # SYN_SENT: fill the backlog-0 listener's accept queue with one connection, then
        # further SYNs are dropped and non-blocking connects stay in SYN_SENT.
        c = socket.socket(v4, socket.SOCK_STREAM)
        c.settimeout(IO_TIMEOUT)
        c.connect(("127.0.0.1", PORT_BACKLOG0))
        self._hold(c)
        self.expected["ESTABLISHED"] += 2  # client + the queued, never accepted, server end
        wait_until(
            lambda: any(
                s.state == "LISTEN" and s.local_port == PORT_BACKLOG0 and s.recv_q == 1
                for s in ss_sockets()
            ),
            SETTLE_TIMEOUT,
            "the backlog-0 listener's accept queue to hold one connection",
        )
        for _ in range(SYN_SENT_CLIENTS):
            c = socket.socket(v4, socket.SOCK_STREAM)
            c.setsockopt(socket.IPPROTO_TCP, TCP_SYNCNT, 127)
            c.setblocking(False)
            err = c.connect_ex(("127.0.0.1", PORT_BACKLOG0))
            assert err == errno.EINPROGRESS, f"non-blocking connect gave {errno.errorcode.get(err, err)}"
            self._hold(c)
            self.expected["SYN_SENT"] += 1

        # SYN_RECV: the client completes the handshake and sends nothing; TCP_DEFER_ACCEPT
        # keeps the server's request socket in SYN_RECV. The client end is ESTABLISHED.
        for _ in range(SYN_RECV_CLIENTS):
            c = socket.socket(v6, socket.SOCK_STREAM)
            c.settimeout(IO_TIMEOUT)
            c.connect(("::1", PORT_DEFER))
            self._hold(c)
            self.expected["SYN_RECV"] += 1
            self.expected["ESTABLISHED"] += 1

        # FIN_WAIT1: the client's FIN is queued behind data the server never reads.
        for _ in range(FIN_WAIT1_CLIENTS):
            c, s = self._pair(PORT_SMALLBUF, v4, "127.0.0.1", client_setup=smallsnd)
            _fill_send_buffer(c)
            c.shutdown(socket.SHUT_WR)
            self._hold(c, s)
            self.expected["FIN_WAIT1"] += 1
            self.expected["ESTABLISHED"] += 1

        # LAST_ACK: client shuts down writing (FIN_WAIT2), never reads; the server, in
        # CLOSE_WAIT, fills the client's window, then shuts down: FIN stuck behind data.
        for _ in range(LAST_ACK_SERVERS):
            c, s = self._pair(PORT_SMALLBUF, v4, "127.0.0.1", client_setup=smallrcv)
            c.shutdown(socket.SHUT_WR)
            assert s.recv(1) == b"", "server did not see the client's FIN"
            smallsnd(s)
            _fill_send_buffer(s)
            s.shutdown(socket.SHUT_WR)
            self._hold(c, s)
            self.expected["LAST_ACK"] += 1
            self.expected["FIN_WAIT2"] += 1

        # CLOSING: as FIN_WAIT1, then the server shuts down writing; the client receives the
        # server's FIN while its own is still queued, the server's FIN is acknowledged.
        for _ in range(CLOSING_CLIENTS):
            c, s = self._pair(PORT_SMALLBUF, v4, "127.0.0.1", client_setup=smallsnd)
            _fill_send_buffer(c)
            c.shutdown(socket.SHUT_WR)
            s.shutdown(socket.SHUT_WR)
            self._hold(c, s)
            self.expected["CLOSING"] += 1
            self.expected["FIN_WAIT2"] += 1

        self._make_time_wait()
        self.built = True
        return self

    def _make_time_wait(self) -> None:
        """Client closes first, server closes after it saw EOF: the client ends in TIME_WAIT."""
        self.expected["TIME_WAIT"] = 0
        for n, port, fam, addr in (
            (TIME_WAIT_V4, PORT_V4, socket.AF_INET, "127.0.0.1"),
            (TIME_WAIT_V6, PORT_V6ONLY, socket.AF_INET6, "::1"),
        ):
            for _ in range(n):
                c, s = self._pair(port, fam, addr)
                c.close()
                assert s.recv(1) == b"", "server did not see the client's FIN"
                s.close()
                self.expected["TIME_WAIT"] += 1
        self.time_wait_created = time.monotonic()

    # -- inspection --------------------------------------------------------------------------

    @property
    def counts(self) -> dict[str, int]:
        """The known count for every kernel state (zeros included)."""
        return {state: self.expected[state] for state in KERNEL_STATES}

    def scenario_sockets(self, sockets: Iterable[SsSocket]) -> list[SsSocket]:
        """The sockets of `sockets` that belong to this scenario (a scenario port at an end)."""
        return [s for s in sockets if any(s.touches_port(p) for p in SCENARIO_PORTS)]

    def verify(
        self, timeout: float = SETTLE_TIMEOUT, exclude_ports: Collection[int] = ()
    ) -> None:
        """Wait (bounded) until `ss -Htan` shows exactly the expected table."""
        want = self.counts
        nonzero = [v for v in want.values() if v]
        assert len(set(nonzero)) == len(nonzero), f"scenario counts are not distinct: {want}"
        last: dict = {}

        def settled():
            socks = ss_sockets()
            last["socks"] = socks
            last["counts"] = count_states(socks, exclude_ports)
            return last["counts"] == want

        try:
            wait_until(settled, timeout, "the scenario's sockets to settle")
        except AssertionError:
            lines = "\n".join(map(str, last.get("socks", [])))
            raise AssertionError(
                f"ss -Htan does not match the scenario after {timeout} s:\n"
                f"  expected {want}\n  ss gives {last.get('counts')}\n{lines}"
            ) from None
        socks = last["socks"]
        # Shape checks: the families are really what the docstring claims.
        listen = {s.local for s in socks if s.state == "LISTEN"}
        assert f"127.0.0.1:{PORT_V4}" in listen, listen
        assert f"[::1]:{PORT_V6ONLY}" in listen, listen
        assert f"*:{PORT_DUAL}" in listen or f"[::]:{PORT_DUAL}" in listen, listen
        mapped = [
            s for s in socks
            if s.state == "ESTABLISHED" and s.local == f"[::ffff:127.0.0.1]:{PORT_DUAL}"
        ]
        assert len(mapped) == ESTAB_DUAL_V4_PAIRS, (
            f"expected {ESTAB_DUAL_V4_PAIRS} IPv4-mapped accepted sockets on the dual-stack "
            f"listener, ss shows {mapped}"
        )
        syn_recv = [s for s in socks if s.state == "SYN_RECV"]
        assert all(s.local_port == PORT_DEFER for s in syn_recv), syn_recv

    def time_wait_age(self) -> float:
        return time.monotonic() - self.time_wait_created

    def refresh_time_wait(self, max_age: float) -> bool:
        """TIME_WAIT sockets vanish after 60 s: if ours are older than `max_age`, wait for them
        to expire and make new ones (same count). Returns True when it refreshed."""
        if self.time_wait_age() <= max_age:
            return False
        wait_until(
            lambda: not any(
                s.state == "TIME_WAIT" and s.peer_port in (PORT_V4, PORT_V6ONLY)
                for s in ss_sockets()
            ),
            TIME_WAIT_LIFETIME + 15,
            "the scenario's old TIME_WAIT sockets to expire",
            interval=0.2,
        )
        self._make_time_wait()
        return True

    def close(self) -> None:
        for s in self._held:
            try:
                s.close()
            except OSError:
                pass
        self._held.clear()
