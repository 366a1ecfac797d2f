"""UDP sockets the agent-facing suites create, and the independent answers for them.

- `UdpScenario`: in the test's private namespace, a receiver with a 4 KiB SO_RCVBUF that never
  reads (`flood()` sends it datagrams until its queue is full, so its drops and the kernel's
  RcvbufErrors really grow), its auto-bound sender, a dual-stack [::] socket, an IPv4 and an
  IPv6-only socket sharing one port, IPv4, IPv6 and IPv4-mapped connected (ESTAB) sockets.
- `ss_udp()`: `ss -Huanm` (state, queues, addresses, skmem r/rb/d); `proc_udp()`: the
  /proc/net/udp{,6} columns; `udp_counters()`: the Udp and Udp6 counters of /proc/net/snmp{,6}.
- `settled_udp(query)`: the query between two identical `ss -uanm` tables (drops and queues
  included), repeated until they are; `expected_summary()`: what udp_summary must say for
  such a table; `oracle.oracle()` applies net.udp.socket.count's filters to these sockets
  (their states are the kernel names CLOSE and ESTABLISHED).
- `reported_ports()`: which bound ports an answer reports, by the documented rule (at most
  MAX_REPORTED_PORTS; past it the ports outside ip_local_port_range first, then the lowest
  inside it); `many_bound_sockets()` opens more bound ports than that for `check_cap`.
- `check_*(ask, ...)`: the checks both agents' suites make, `ask(key)` returning the agent's
  ItemResult (tests/e2e with zabbix_agentd, tests/agent2 with the plugin).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import resource
import socket
import time
from pathlib import Path

import pytest

from lib import oracle as orc
from lib import scenario as sc

FLOODED_PORT = 5399
DNS_PORT = 53
SIP_PORT = 5060
CLIENT_PORT = 5353
SMALL_RCVBUF = 4096
DATAGRAM = b"x" * 512

SS_STATES = {"UNCONN": "CLOSE", "ESTAB": "ESTABLISHED"}

# The most ports udp_summary and udp_discovery report (README, UDP).
MAX_REPORTED_PORTS = 1024
# The members of udp_summary that are not kernel counters.
SOCKET_MEMBERS = ("UNCONN", "ESTAB", "TOTAL", "drops", "ports", "ports_bound", "ports_omitted")


def ephemeral_range() -> tuple[int, int]:
    """The test namespace's net.ipv4.ip_local_port_range."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def reported_ports(bound: list[int]) -> list[int]:
    """The ports an answer reports of the ascending `bound` ports."""
    if len(bound) <= MAX_REPORTED_PORTS:
        return bound
    low, high = ephemeral_range()
    services = [p for p in bound if not low <= p <= high]
    ephemeral = [p for p in bound if low <= p <= high]
    kept = services[:MAX_REPORTED_PORTS] + ephemeral[:max(0, MAX_REPORTED_PORTS - len(services))]
    return sorted(kept)


@dataclasses.dataclass(frozen=True)
class UdpSocket:
    """One socket of `ss -Huanm`."""

    state: str  # kernel name: CLOSE (UNCONN) or ESTABLISHED (ESTAB)
    recv_q: int
    local: str
    peer: str
    rmem: int
    rcvbuf: int
    drops: int

    @property
    def local_port(self) -> int:
        return int(self.local.rsplit(":", 1)[1])


SKMEM = re.compile(r"skmem:\(r(\d+),rb(\d+),.*,d(\d+)\)")


def ss_udp() -> list[UdpSocket]:
    """Every UDP socket of this namespace with its memory, as `ss -Huanm` lists them."""
    lines = [(line, fields) for line, fields in sc.output_fields(["ss", "-Huanm"], timeout=10)]
    sockets = []
    pending = None
    for line, fields in lines:
        if fields[0].startswith("skmem:"):
            match = SKMEM.search(line)
            assert pending is not None and match, f"unexpected ss line: {line!r}"
            state, recv_q, local, peer = pending
            sockets.append(UdpSocket(SS_STATES[state], recv_q, local, peer,
                                     *(int(group) for group in match.groups())))
            pending = None
            continue
        assert pending is None and fields[0] in SS_STATES, f"unexpected ss line: {line!r}"
        pending = (fields[0], int(fields[1]), fields[3], fields[4])
    assert pending is None, "ss ended without the skmem line of its last socket"
    return sockets


def proc_udp() -> list[tuple[str, int, int, int]]:
    """(state, local port, rx_queue, drops) of every line of /proc/net/udp and udp6."""
    out = []
    for fields in sc.proc_net_rows("udp"):
        state = {"07": "CLOSE", "01": "ESTABLISHED"}[fields[3]]
        out.append((state, int(fields[1].rsplit(":", 1)[1], 16),
                    int(fields[4].split(":")[1], 16), int(fields[12])))
    return sorted(out)


def udp_counters() -> dict[str, int]:
    """The `Udp:` counters of /proc/net/snmp and the `Udp6*` lines of /proc/net/snmp6."""
    lines = [ln.split() for ln in open("/proc/net/snmp") if ln.startswith("Udp:")]
    counters = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:])))
    try:
        for ln in open("/proc/net/snmp6"):
            name, value = ln.split()
            if name.startswith("Udp6"):
                counters[name] = int(value)
    except FileNotFoundError:
        pass
    return counters


def settled_udp(query, attempts: int = 5):
    """Runs `query` between two `ss -uanm` tables until they are equal (states, queues, drops):
    returns (that table, the query's result)."""
    for _ in range(attempts):
        before = sorted(ss_udp(), key=repr)
        result = query()
        if before == sorted(ss_udp(), key=repr):
            return before, result
    pytest.fail("the UDP socket table kept changing around the query")


def expected_summary(sockets: list[UdpSocket], buffers: bool) -> dict:
    """udp_summary without its kernel counters, for `sockets`; `buffers`: the source reports
    receive buffers (netlink), else buffer_bytes and fill_percent are null (/proc)."""
    ports = {}
    for s in sockets:
        ports.setdefault(s.local_port, []).append(s)
    rows = []
    bound = bound_ports(sockets)
    for port in reported_ports(bound):
        group = ports[port]
        fill = max(s.recv_q * 10000 // s.rcvbuf if s.rcvbuf else 0 for s in group)
        rows.append({
            "port": port,
            "sockets": len(group),
            "UNCONN": sum(s.state == "CLOSE" for s in group),
            "ESTAB": sum(s.state == "ESTABLISHED" for s in group),
            "queue_bytes": sum(s.recv_q for s in group),
            "buffer_bytes": sum(s.rcvbuf for s in group) if buffers else None,
            "fill_percent": round(fill / 100, 2) if buffers else None,
            "drops": sum(s.drops for s in group),
        })
    return {
        "UNCONN": sum(s.state == "CLOSE" for s in sockets),
        "ESTAB": sum(s.state == "ESTABLISHED" for s in sockets),
        "TOTAL": len(sockets),
        "drops": sum(s.drops for s in sockets),
        "ports": rows,
        "ports_bound": len(bound),
        "ports_omitted": len(bound) - len(rows),
    }


def bound_ports(sockets: list[UdpSocket]) -> list[int]:
    return sorted({s.local_port for s in sockets if s.state == "CLOSE"})


class UdpScenario:
    """The UDP sockets of one test module; `close()` removes them."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.sent = 0

    def _socket(self, family) -> socket.socket:
        s = socket.socket(family, socket.SOCK_DGRAM)
        self.sockets.append(s)
        return s

    def build(self) -> "UdpScenario":
        self.receiver = self._socket(socket.AF_INET)
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        self.receiver.bind(("127.0.0.1", FLOODED_PORT))
        self.sender = self._socket(socket.AF_INET)  # auto-bound by its first datagram
        dns = self._socket(socket.AF_INET6)  # dual-stack [::]:53
        dns.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        dns.bind(("::", DNS_PORT))
        sip4 = self._socket(socket.AF_INET)
        sip4.bind(("0.0.0.0", SIP_PORT))
        sip6 = self._socket(socket.AF_INET6)
        sip6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sip6.bind(("::", SIP_PORT))
        client6 = self._socket(socket.AF_INET6)  # ESTAB on IPv6
        client6.bind(("::1", CLIENT_PORT))
        client6.connect(("::1", DNS_PORT))
        client4 = self._socket(socket.AF_INET)  # ESTAB on IPv4, ephemeral port
        client4.connect(("127.0.0.1", DNS_PORT))
        mapped = self._socket(socket.AF_INET6)  # ESTAB, IPv4-mapped, ephemeral port
        mapped.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        mapped.connect(("::ffff:127.0.0.1", FLOODED_PORT))
        self.flood(3000)
        return self

    def flood(self, count: int) -> None:
        """Sends `count` datagrams to the receiver, which never reads: once its 4 KiB buffer
        (8 KiB as the kernel doubles it) is full, each one more is a drop."""
        for _ in range(count):
            self.sender.sendto(DATAGRAM, ("127.0.0.1", FLOODED_PORT))
        self.sent += count
        # Loopback delivery is synchronous; give softirq a moment anyway.
        time.sleep(0.05)

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets.clear()


UDP_FILTERS = [
    # (laddr, lport, raddr, rport)
    ("", "53", "", ""),  # the dual-stack [::]:53
    ("", "5060", "", ""),  # an IPv4 and an IPv6-only socket on one port
    ("127.0.0.1", "", "", ""),  # IPv4, and the IPv4-mapped connected socket
    ("::ffff:127.0.0.1", "", "", ""),
    ("::1", "", "", ""),
    ("::/0", "", "", ""),
    ("0.0.0.0/0", "", "", ""),
    ("", "", "127.0.0.1", "5399"),
    ("", "", "::1/128", "53"),
    ("", "", "", "53"),
    ("", "0", "", ""),
    ("10.0.0.0/8", "", "", ""),
]

STATE_SPELLINGS = {
    "CLOSE": ("UNCONN", "unconn", "CLOSE", "closed", " Unconn "),
    "ESTABLISHED": ("ESTAB", "established", "ESTABLISHED", "eStAb"),
    None: ("",),
}

ERROR_CASES = {
    "linux_status[udp_status,LISTEN]": ("Unknown UDP state", "UNCONN", "ESTAB"),
    "linux_status[udp_status,TIME_WAIT]": ("Unknown UDP state",),
    "linux_status[udp_status,UNCONN,x]": ("Invalid local address",),
    "linux_status[udp_status,UNCONN,,70000]": ("Invalid local port", "70000"),
    "linux_status[udp_summary,x]": ("Too many parameters",),
    "linux_status[udp_discovery,x]": ("Too many parameters",),
}


def count(sockets, state, *filters) -> int:
    """net.udp.socket.count's answer for ss's sockets (state None: every state)."""
    counts = orc.oracle(sockets, *filters)
    return sum(counts.values()) if state is None else counts[state]


def status_cases(all_spellings: bool = True) -> list[tuple[str | None, str, tuple]]:
    """(state, key, filters): every spelling (or one per state), then each filter per state."""
    cases = [(state, f"linux_status[udp_status,{spelling}]", ())
             for state, spellings in STATE_SPELLINGS.items()
             for spelling in (spellings if all_spellings else spellings[:1])]
    for filters in UDP_FILTERS:
        for state in STATE_SPELLINGS:
            name = {"CLOSE": "UNCONN", "ESTABLISHED": "ESTAB", None: ""}[state]
            cases.append((state, f"linux_status[udp_status,{name},{','.join(filters)}]", filters))
    return cases


def check_status(ask, all_spellings: bool = True) -> None:
    for state, key, filters in status_cases(all_spellings):
        sockets, result = settled_udp(lambda: ask(key))
        assert result.supported, result.raw
        # A number (zabbix_agent2 -t prints every plugin value as a string: [s|5]).
        assert result.value.isdigit(), result.raw
        assert int(result.value) == count(sockets, state, *filters), (key, result.raw, sockets)


def split_summary(value: str) -> tuple[dict, dict]:
    """udp_summary as (its socket part, its kernel counters)."""
    summary = json.loads(value)
    counters = {k: v for k, v in summary.items() if k not in SOCKET_MEMBERS}
    return {k: v for k, v in summary.items() if k not in counters}, counters


def check_summary(ask, buffers: bool) -> None:
    """udp_summary equals ss per port, and its counters equal /proc/net/snmp{,6}."""
    def query():
        before = udp_counters()
        result = ask("linux_status[udp_summary]")
        return before, result, udp_counters()

    sockets, (before, result, after) = settled_udp(query)
    assert result.supported, result.raw
    summary, counters = split_summary(result.value)
    assert summary == expected_summary(sockets, buffers=buffers)
    assert before == after, "the UDP counters moved during the query"
    assert counters == before
    for name in ("InErrors", "RcvbufErrors", "SndbufErrors", "NoPorts", "InCsumErrors",
                 "IgnoredMulti", "MemErrors", "Udp6RcvbufErrors"):
        assert name in counters, (name, counters)


def check_drops_grow(ask, scenario: UdpScenario, buffers: bool, datagrams: int = 500) -> None:
    """`datagrams` more sent to the full receiver: its port's drops, the total and RcvbufErrors
    grow by exactly that, as in ss; with buffers, the fill is ss's r/rb."""
    def flooded_port(value: str) -> dict:
        (row,) = [r for r in json.loads(value)["ports"] if r["port"] == FLOODED_PORT]
        return row

    def snapshot():
        result = ask("linux_status[udp_summary]")
        assert result.supported, result.raw
        return result.value, udp_counters()

    sockets1, (value1, counters1) = settled_udp(snapshot)
    scenario.flood(datagrams)
    sockets2, (value2, counters2) = settled_udp(snapshot)
    ss_drops = [sum(s.drops for s in sk if s.local_port == FLOODED_PORT)
                for sk in (sockets1, sockets2)]
    grown = flooded_port(value2)["drops"] - flooded_port(value1)["drops"]
    assert grown == ss_drops[1] - ss_drops[0] == datagrams, (grown, ss_drops)
    assert counters2["RcvbufErrors"] - counters1["RcvbufErrors"] == datagrams
    assert json.loads(value2)["RcvbufErrors"] == counters2["RcvbufErrors"]
    assert json.loads(value2)["drops"] - json.loads(value1)["drops"] == datagrams
    row = flooded_port(value2)
    if buffers:
        (receiver,) = [s for s in sockets2 if s.local_port == FLOODED_PORT and s.state == "CLOSE"]
        assert row["fill_percent"] == round(receiver.recv_q * 10000 // receiver.rcvbuf / 100, 2)
        assert row["fill_percent"] > 80, row
    else:
        assert row["fill_percent"] is None and row["buffer_bytes"] is None, row


def check_discovery(ask) -> None:
    sockets, result = settled_udp(lambda: ask("linux_status[udp_discovery]"))
    assert result.supported, result.raw
    rows = json.loads(result.value)
    low, high = ephemeral_range()
    assert rows == [{"{#PORT}": str(port), "{#PORT.EPHEMERAL}": "1" if low <= port <= high else "0"}
                    for port in reported_ports(bound_ports(sockets))]
    assert {int(r["{#PORT}"]) for r in rows} >= {FLOODED_PORT, DNS_PORT, SIP_PORT}
    return rows


@contextlib.contextmanager
def many_bound_sockets(services: int = 40, ephemeral: int = MAX_REPORTED_PORTS + 60):
    """`services` bound ports below the ephemeral range and `ephemeral` inside it, on
    127.0.0.3 (no scenario socket uses it), so the answers go past MAX_REPORTED_PORTS."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    low, high = ephemeral_range()
    assert high - low > ephemeral and low > services + 1024, (low, high)
    opened: list[socket.socket] = []
    try:
        for port in [*range(low - services, low), *range(low, low + ephemeral)]:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(("127.0.0.3", port))
            except OSError:
                s.close()  # an auto-bound scenario socket holds it on every address
                continue
            opened.append(s)
        yield opened
    finally:
        for s in opened:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def check_cap(ask) -> None:
    """Past MAX_REPORTED_PORTS bound ports, udp_summary reports the services first, then the
    lowest ephemeral ports, says how many it left out, and discovery lists the same ports."""
    with many_bound_sockets():
        sockets, result = settled_udp(lambda: ask("linux_status[udp_summary]"))
        assert result.supported, result.raw
        summary = json.loads(result.value)
        assert len(summary["ports"]) == MAX_REPORTED_PORTS, len(summary["ports"])
        assert summary["ports_bound"] == len(bound_ports(sockets)) > MAX_REPORTED_PORTS
        assert summary["ports_omitted"] == summary["ports_bound"] - MAX_REPORTED_PORTS
        assert [row["port"] for row in summary["ports"]] == reported_ports(bound_ports(sockets))
        assert {FLOODED_PORT, DNS_PORT, SIP_PORT} <= {row["port"] for row in summary["ports"]}
        rows = check_discovery(ask)
        assert [int(row["{#PORT}"]) for row in rows] == [row["port"] for row in summary["ports"]]
