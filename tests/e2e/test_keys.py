"""The keys beyond the classic per-state count, on every agent line, against ss -tan.

- `tcp_summary` equals the per-state table of ss (and the scenario's known counts);
- `tcp_status` / `tcp_summary` filters (addresses, CIDR, IPv4-mapped sockets, ports, service
  names) equal the same filter applied in Python to ss's socket list;
- `listen_discovery` lists exactly the ports ss shows listening; `listen_stats` gives, per
  port, the LISTEN sockets, their accept queues (ss Recv-Q) and the sockets per state with
  that local port; its kernel counters and `tcp_ext` lie between two reads of
  /proc/net/netstat.

Everything runs through `zabbix_agentd -t`, which opens no socket, so ss taken just before is
exact; a query is repeated when the table changed around it (an old TIME_WAIT expiring).
"""

from __future__ import annotations

import ipaddress
import json
import socket

import pytest

from lib import agent as ag
from lib import scenario as sc

ATTEMPTS = 5


def settled(query):
    """Runs `query` between two ss snapshots until none of the first vanished or changed."""
    for _ in range(ATTEMPTS):
        before = sc.ss_sockets()
        result = query()
        after = sc.ss_sockets()
        if {s.ident for s in before} == {s.ident for s in after}:
            return before, result
    pytest.fail("the socket table kept changing around the query")


def split(endpoint: str) -> tuple[ipaddress._BaseAddress, int]:
    host, port = endpoint.rsplit(":", 1)
    host = host.strip("[]")
    if host == "*":
        host = "::"
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address, int(port) if port != "*" else 0


def address_matches(spec: str, address) -> bool:
    """net.tcp.socket.count's rule: a filter written as ::ffff:a.b.c.d/p with p > 0 compares
    IPv4 addresses in their mapped form (so /96 and up is the IPv4 network, and /64 also
    covers ::/64); any other IPv6 filter (::ffff:.../0 included) sees real IPv6 only."""
    if not spec:
        return True
    written = ipaddress.ip_interface(spec)
    network = written.network
    if (isinstance(written, ipaddress.IPv6Interface) and written.ip.ipv4_mapped is not None
            and network.prefixlen > 0):
        if address.version == 4:
            address = ipaddress.IPv6Address(f"::ffff:{address}")
        return address in network
    return address.version == network.version and address in network


def port_matches(spec: str, port: int) -> bool:
    """Empty or 0 means any port (as in net.tcp.socket.count)."""
    return not spec or int(spec) == 0 or int(spec) == port


def oracle(sockets, laddr="", lport="", raddr="", rport="") -> dict[str, int]:
    """ss's sockets through the filter, counted per state (the independent answer)."""
    counts = dict.fromkeys(sc.KERNEL_STATES, 0)
    for s in sockets:
        (la, lp), (ra, rp) = split(s.local), split(s.peer)
        if (
            address_matches(laddr, la)
            and port_matches(lport, lp)
            and address_matches(raddr, ra)
            and port_matches(rport, rp)
        ):
            counts[s.state] += 1
    return counts


def summary(agentd, cfg, key) -> dict[str, int]:
    result = ag.test_key(agentd, cfg, key)
    assert result.supported and result.type == "t", result.raw
    return json.loads(result.value)


def test_tcp_summary_is_the_whole_table(scenario, agentd, agent_config, agent_ports):
    before, got = settled(lambda: summary(agentd, agent_config, "linux_status[tcp_summary]"))
    expected = sc.count_states(before)
    assert list(got) == [*sc.KERNEL_STATES, "TOTAL", "ports", "ListenOverflows", "ListenDrops"], (
        "member order: kernel states, TOTAL, then the listening ports and counters"
    )
    assert {k: got[k] for k in sc.KERNEL_STATES} == expected
    assert got["TOTAL"] == len(before)
    assert sc.count_states(before, exclude_ports=agent_ports) == scenario.counts


FILTERS = [
    # (laddr, lport, raddr, rport)
    ("", "20001", "", ""),
    ("", "20003", "", ""),  # dual-stack: IPv4-mapped and IPv6 connections
    ("127.0.0.1", "20003", "", ""),  # IPv4 filter sees the IPv4-mapped accepted sockets
    ("::ffff:127.0.0.1", "", "", ""),  # written as mapped: still the IPv4 address
    ("::1", "", "", ""),
    ("::/0", "", "", ""),  # real IPv6 only
    ("0.0.0.0/0", "", "", ""),  # every IPv4 socket, mapped ones included
    ("127.0.0.0/8", "", "127.0.0.1/32", "20001"),
    ("", "", "", "20002"),
    ("", "", "::1/128", ""),
    ("", "0", "", ""),  # port 0 means any, as in net.tcp.socket.count
    ("10.0.0.0/8", "", "", ""),  # nothing there
    # Written as IPv4-mapped, every prefix 0-128 as net.tcp.socket.count takes it.
    ("::ffff:127.0.0.1/120", "", "", ""),
    ("::ffff:127.0.0.1/96", "", "", ""),
    ("::ffff:127.0.0.1/88", "", "", ""),  # the ::ffff:0:0/88 block: IPv4 only
    ("::ffff:127.0.0.1/64", "", "", ""),  # ::/64: every IPv4 address and ::1
    ("", "", "::ffff:10.0.0.1/80", ""),
    ("::ffff:127.0.0.1/0", "", "", ""),  # /0: real IPv6 only
]


@pytest.mark.parametrize("laddr,lport,raddr,rport", FILTERS)
def test_filters_match_ss(laddr, lport, raddr, rport, scenario, agentd, agent_config):
    params = f"{laddr},{lport},{raddr},{rport}"
    before, got = settled(
        lambda: summary(agentd, agent_config, f"linux_status[tcp_summary,{params}]")
    )
    expected = oracle(before, laddr, lport, raddr, rport)
    assert {k: got[k] for k in sc.KERNEL_STATES} == expected, params
    for state in ("ESTABLISHED", "LISTEN", "TIME_WAIT"):
        before, one = settled(
            lambda: ag.test_key(agentd, agent_config, f"linux_status[tcp_status,{state},{params}]")
        )
        assert one.uint() == oracle(before, laddr, lport, raddr, rport)[state], (state, params)


@pytest.mark.parametrize("laddr,lport,raddr,rport", FILTERS)
def test_filters_agree_with_the_builtin_net_tcp_socket_count(
    laddr, lport, raddr, rport, scenario, agentd, agent_config
):
    """The semantics are the agent's own: net.tcp.socket.count[<filters>,<state>] on the same
    agent gives the same number for every filter and state (both read the same tables, and
    -t opens no socket, so only a change of the table between the two runs can differ)."""
    params = f"{laddr},{lport},{raddr},{rport}"
    for state in sc.KERNEL_STATES:
        if state == "CLOSE":
            continue  # not a state net.tcp.socket.count accepts
        for _ in range(ATTEMPTS):
            before = {s.ident for s in sc.ss_sockets()}
            ours = ag.test_key(agentd, agent_config, f"linux_status[tcp_status,{state},{params}]")
            builtin = ag.test_key(
                agentd, agent_config, f"net.tcp.socket.count[{params},{state.lower()}]"
            )
            if before == {s.ident for s in sc.ss_sockets()}:
                break
        assert builtin.supported, f"built-in refused {params},{state.lower()}: {builtin.raw}"
        assert ours.uint() == int(builtin.value), (state, params, ours.raw, builtin.raw)


def test_service_names_are_ports(scenario, agentd, agent_config):
    """`zabbix-agent` is 10050/tcp in /etc/services: a listener there is found by name."""
    services = open("/etc/services").read()
    assert "zabbix-agent\t10050/tcp" in services.replace("  ", "\t") or "10050/tcp" in services
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 10050))
        listener.listen(1)
        by_name = ag.test_key(agentd, agent_config, "linux_status[tcp_status,LISTEN,,zabbix-agent]")
        by_number = ag.test_key(agentd, agent_config, "linux_status[tcp_status,LISTEN,,10050]")
        assert by_name.uint() == by_number.uint() == 1
    finally:
        listener.close()
    bad = ag.test_key(agentd, agent_config, "linux_status[tcp_status,LISTEN,,no-such-service]")
    assert not bad.supported and "unknown service name" in bad.message, bad.raw


def listening_ports(sockets) -> list[int]:
    return sorted({s.local_port for s in sockets if s.state == "LISTEN"})


def test_listen_discovery_lists_every_listening_port(scenario, agentd, agent_config):
    before, result = settled(
        lambda: ag.test_key(agentd, agent_config, "linux_status[listen_discovery]")
    )
    rows = json.loads(result.value)
    assert rows == [{"{#PORT}": str(port)} for port in listening_ports(before)], result.raw
    assert {int(r["{#PORT}"]) for r in rows} >= set(sc.SCENARIO_PORTS)


def netstat_counter(name: str) -> int:
    lines = [ln.split() for ln in open("/proc/net/netstat") if ln.startswith("TcpExt:")]
    return int(lines[1][lines[0].index(name)])


def test_listen_stats_per_port(scenario, agentd, agent_config):
    overflows_before = netstat_counter("ListenOverflows")
    drops_before = netstat_counter("ListenDrops")
    before, result = settled(
        lambda: ag.test_key(agentd, agent_config, "linux_status[listen_stats]")
    )
    stats = json.loads(result.value)
    overflows_after = netstat_counter("ListenOverflows")
    drops_after = netstat_counter("ListenDrops")

    ports = stats["ports"]
    assert [p["port"] for p in ports] == listening_ports(before)
    for entry in ports:
        port = entry["port"]
        listeners = [s for s in before if s.state == "LISTEN" and s.local_port == port]
        assert entry["listeners"] == len(listeners), entry
        assert entry["accept_queue"] == sum(s.recv_q for s in listeners), entry
        local = [s for s in before if s.local_port == port]
        assert {k: entry[k] for k in sc.KERNEL_STATES} == sc.count_states(local), entry
        assert entry["TOTAL"] == len(local), entry
    by_port = {p["port"]: p for p in ports}
    # The backlog-0 listener holds one connection in its accept queue (scenario.py).
    assert by_port[sc.PORT_BACKLOG0]["accept_queue"] >= 1
    assert overflows_before <= stats["ListenOverflows"] <= overflows_after
    assert drops_before <= stats["ListenDrops"] <= drops_after


def test_tcp_ext_counters(agentd, agent_config):
    before = netstat_counter("ListenDrops")
    result = ag.test_key(agentd, agent_config, "linux_status[tcp_ext,ListenDrops]")
    assert before <= result.uint() <= netstat_counter("ListenDrops")
    bad = ag.test_key(agentd, agent_config, "linux_status[tcp_ext,NoSuchCounter]")
    assert not bad.supported and 'No TcpExt counter "NoSuchCounter"' in bad.message, bad.raw
