"""The independent answers the agent-facing suites check the agents against (tests/e2e,
tests/agent2, tests/arm64): ss -tan in the same namespace, bracketed so a table that changed
around a query is asked again, plus the contract's spellings, traps and error cases.

- State keys: the README's state table (`CONTRACT_SPELLINGS`), every spelling of each state
  (`STATE_KEYS`), near-miss spellings the old grep-based UserParameter matched as substrings
  (`SUBSTRING_TRAPS`), the contract's error cases and the phrases their messages carry
  (`ERROR_CASES`); `bracketed()`/`check_count()` compare an answer with ss taken around it.
- Filters: `oracle()` applies net.tcp.socket.count's address and port rules to ss's sockets;
  `FILTERS` the cases; `settled()` runs a query between two unchanged ss snapshots.
- `listening_ports()`, `netstat_counter()`: the listen table and TcpExt counters as ss and
  /proc/net/netstat give them.
"""

from __future__ import annotations

import ipaddress

import pytest

from lib import agent as ag
from lib import scenario as sc


# The README's state table: the accepted spellings per kernel state.
CONTRACT_SPELLINGS = {
    "ESTABLISHED": ("ESTABLISHED", "ESTAB"),
    "SYN_SENT": ("SYN_SENT", "SYN-SENT"),
    "SYN_RECV": ("SYN_RECV", "SYN-RECV", "SYN_RCVD"),
    "FIN_WAIT1": ("FIN_WAIT1", "FIN-WAIT-1", "FIN_WAIT_1"),
    "FIN_WAIT2": ("FIN_WAIT2", "FIN-WAIT-2", "FIN_WAIT_2"),
    "TIME_WAIT": ("TIME_WAIT", "TIME-WAIT"),
    "CLOSE": ("CLOSE", "UNCONN", "CLOSED"),
    "CLOSE_WAIT": ("CLOSE_WAIT", "CLOSE-WAIT"),
    "LAST_ACK": ("LAST_ACK", "LAST-ACK"),
    "LISTEN": ("LISTEN",),
    "CLOSING": ("CLOSING",),
}
assert set(CONTRACT_SPELLINGS) == set(sc.KERNEL_STATES)

# The passive query's own connection, as seen while the agent runs the item.
QUERY_OWN_SOCKETS = {"ESTABLISHED": 2}

QUERY_ATTEMPTS = 5


def spellings(state: str) -> list[str]:
    """The contract's spellings plus their '-'/'_' swapped forms (the two are equivalent)."""
    out: list[str] = []
    for s in CONTRACT_SPELLINGS[state]:
        for form in (s, s.replace("-", "_"), s.replace("_", "-")):
            if form not in out:
                out.append(form)
    return out


def mixed_case(s: str) -> str:
    return "".join(c.lower() if i % 2 else c.upper() for i, c in enumerate(s))


def state_keys() -> list[tuple[str, str]]:
    cases: list[tuple[str, str]] = []
    for state in sc.KERNEL_STATES:
        for sp in spellings(state):
            cases += [
                (state, f"linux_status[tcp_status,{sp}]"),
                (state, f"linux_status[tcp_status,{sp.lower()}]"),
                (state, f"linux_status[tcp_status,{mixed_case(sp)}]"),
                (state, f'linux_status[tcp_status," {sp} "]'),
            ]
        base = CONTRACT_SPELLINGS[state][0]
        cases += [
            (state, f'linux_status["tcp_status","{base}"]'),
            # Unquoted: the agent skips leading spaces but keeps trailing ones.
            (state, f"linux_status[tcp_status,   {base.lower()}]"),
            (state, f"linux_status[tcp_status,{base}  ]"),
        ]
    seen: set[str] = set()
    unique = []
    for state, key in cases:
        if key not in seen:
            seen.add(key)
            unique.append((state, key))
    return unique


STATE_KEYS = state_keys()

# Near misses: substrings and neighbours of real names. All must be unknown states.
SUBSTRING_TRAPS = (
    "WAIT", "ESTA", "ESTABLISH", "SYN", "TIME", "FIN_WAIT", "FIN-WAIT", "FIN_WAIT3", "CLOSE_",
    "LISTE", "LISTENING", "XLISTEN", "TIME_WAITS", "TIME__WAIT", "TIME WAIT", "SYN_REC",
    "SYN_RCV", "LIS TEN", "ESTABLISHEDX", "ACK", "0A", "1", "*",
)

# The README's "Errors" table: key -> phrases the message must contain.
ERROR_CASES = {
    "linux_status": ("Missing first parameter", "tcp_status"),
    "linux_status[]": ("Missing first parameter", "tcp_status"),
    "linux_status[,LISTEN]": ("Missing first parameter", "tcp_status"),
    "linux_status[foo,LISTEN]": ("Unknown first parameter", "tcp_status"),
    "linux_status[tcp_status]": ("Missing TCP state", "Valid states:"),
    "linux_status[tcp_status,]": ("Missing TCP state", "Valid states:"),
    'linux_status[tcp_status,""]': ("Missing TCP state", "Valid states:"),
    # Only spaces: empty once trimmed ("missing" or "unknown" are both fair readings).
    'linux_status[tcp_status,"   "]': ("TCP state", "Valid states:"),
    "linux_status[tcp_status,BOGUS]": ("Unknown TCP state", "Valid states:", "ESTAB", "TIME-WAIT"),
    "linux_status[tcp_status,LISTEN,x]": ("Invalid local address", '"x"'),
    "linux_status[tcp_status,LISTEN,,,,70000]": ("Invalid remote port", "70000"),
    "linux_status[tcp_status,LISTEN,x,y,z,w,v]": ("Too many parameters",),
    "linux_status[tcp_summary,,,,,]": ("Too many parameters",),
}


# -- helpers -------------------------------------------------------------------------------


def bracketed(query):
    """Run `query` between two ss snapshots, repeating it (bounded) until no socket of the
    first snapshot vanished or changed state by the second. Returns (before, after, result)."""
    changes = []
    for _ in range(QUERY_ATTEMPTS):
        before = sc.ss_sockets()
        result = query()
        after = sc.ss_sockets()
        gone = {s.ident for s in before} - {s.ident for s in after}
        if not gone:
            return before, after, result
        changes.append(sorted(gone))
    pytest.fail(f"the socket table kept changing around the query: {changes}")


def check_count(key, state, value, before, scenario, agent_ports, own):
    """The module's value vs ss just before the query and vs the scenario's known count."""
    ss_all = sc.count_states(before)[state]
    ss_scenario = sc.count_states(before, exclude_ports=agent_ports)[state]
    known = scenario.counts[state]
    on_agent_port = [
        s for s in before if s.state == state and any(s.touches_port(p) for p in agent_ports)
    ]
    detail = (
        f"{key}: module {value}, ss {ss_all} (+{own} own query sockets), "
        f"ss without agent port {ss_scenario}, scenario {known}; "
        f"agent-port sockets in {state}: {on_agent_port}"
    )
    assert ss_scenario == known, "ss disagrees with the scenario: " + detail
    assert value == ss_all + own, "module disagrees with ss: " + detail
    assert value - own - len(on_agent_port) == known, "module disagrees with scenario: " + detail


def assert_agent_unharmed(agent) -> None:
    assert agent.alive(), f"zabbix_agentd main process is gone\n{agent.describe()}"
    assert agent.pids() == agent.initial_pids, (
        f"agent pids changed: at start {agent.initial_pids}, now {agent.pids()}\n"
        f"{agent.describe()}"
    )
    crash = agent.crash_lines()
    assert not crash, "agent log has crash lines:\n" + "\n".join(crash)


def unsupported(result: ag.ItemResult, phrases) -> None:
    assert not result.supported, f"{result.key}: expected ZBX_NOTSUPPORTED, got {result.raw!r}"
    assert result.message, f"{result.key}: ZBX_NOTSUPPORTED without a message: {result.raw!r}"
    missing = [p for p in phrases if p not in result.message]
    assert not missing, f"{result.key}: message lacks {missing}: {result.message!r}"


# -- filters, the listen table, counters ------------------------------------------------


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


def listening_ports(sockets) -> list[int]:
    return sorted({s.local_port for s in sockets if s.state == "LISTEN"})


def netstat_counter(name: str) -> int:
    lines = [ln.split() for ln in open("/proc/net/netstat") if ln.startswith("TcpExt:")]
    return int(lines[1][lines[0].index(name)])
