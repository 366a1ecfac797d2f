"""UDP keys on every agent line and both backends, against `ss -uanm` and /proc.

In the session's private namespace lib/udp.py's scenario holds a 4 KiB-buffer receiver that
never reads, flooded until it drops, its auto-bound sender, a dual-stack [::]:53, 0.0.0.0:5060
beside an IPv6-only [::]:5060, and IPv4, IPv6 and IPv4-mapped connected sockets. Checked:
`udp_status` in every state spelling and through net.udp.socket.count's filters equals ss
through the same filters; `udp_summary` equals what ss says per port (queues, buffers with
netlink, null with /proc, fill, drops) and the Udp/Udp6 counters equal /proc/net/snmp{,6};
drops grow by exactly the datagrams sent to the full receiver, as in ss, /proc and
RcvbufErrors; `udp_discovery` lists the bound ports; bad states are errors naming the valid
ones; a running agent answers the same through zabbix_get under the shipped backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib import agent as ag
from lib import oracle as orc
from lib import scenario as sc
from lib import udp

BACKENDS = ("netlink", "proc")

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


def backend_config(tmp_path: Path, env, backend: str) -> ag.AgentConfig:
    port = ag.free_port(avoid=sc.SCENARIO_PORTS)
    return ag.write_config(tmp_path / backend, env.so, port,
                           module_settings=f"Backend={backend}\nSnapshotLifetime=0\n")


def count(sockets, state, *filters) -> int:
    counts = orc.oracle(sockets, *filters)
    return sum(counts.values()) if state is None else counts[state]


def test_the_oracles_agree_on_the_scenario(udp_scenario):
    """ss and /proc/net/udp{,6} list the same sockets, queues and drops; the flood dropped."""
    sockets, proc = udp.settled_udp(udp.proc_udp)
    from_ss = sorted((s.state, s.local_port, s.recv_q, s.drops) for s in sockets)
    assert from_ss == proc
    flooded = [s for s in sockets if s.local_port == udp.FLOODED_PORT and s.state == "CLOSE"]
    assert len(flooded) == 1 and flooded[0].drops > 0, flooded
    assert flooded[0].rcvbuf == 2 * udp.SMALL_RCVBUF
    assert udp.udp_counters()["RcvbufErrors"] >= flooded[0].drops
    assert {s.state for s in sockets} == {"CLOSE", "ESTABLISHED"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_status_equals_ss(backend, udp_scenario, agentd, env, tmp_path):
    cfg = backend_config(tmp_path, env, backend)
    cases = [(state, f"linux_status[udp_status,{spelling}]", ())
             for state, spellings in STATE_SPELLINGS.items() for spelling in spellings]
    for filters in UDP_FILTERS:
        for state in STATE_SPELLINGS:
            name = {"CLOSE": "UNCONN", "ESTABLISHED": "ESTAB", None: ""}[state]
            cases.append((state, f"linux_status[udp_status,{name},{','.join(filters)}]", filters))
    for state, key, filters in cases:
        sockets, result = udp.settled_udp(lambda: ag.test_key(agentd, cfg, key))
        assert result.supported, result.raw
        assert result.uint() == count(sockets, state, *filters), (key, sockets)


def comparable_summary(value: str):
    summary = json.loads(value)
    counters = {k: v for k, v in summary.items()
                if k not in ("UNCONN", "ESTAB", "TOTAL", "drops", "ports")}
    rest = {k: v for k, v in summary.items() if k not in counters}
    return rest, counters


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_summary_equals_ss_and_the_kernel_counters(backend, udp_scenario, agentd, env,
                                                      tmp_path):
    cfg = backend_config(tmp_path, env, backend)

    def query():
        before = udp.udp_counters()
        result = ag.test_key(agentd, cfg, "linux_status[udp_summary]")
        return before, result, udp.udp_counters()

    sockets, (before, result, after) = udp.settled_udp(query)
    assert result.supported, result.raw
    summary, counters = comparable_summary(result.value)
    assert summary == udp.expected_summary(sockets, buffers=backend == "netlink")
    assert before == after, "the UDP counters moved during the query"
    assert counters == before
    for name in ("InErrors", "RcvbufErrors", "SndbufErrors", "NoPorts", "InCsumErrors",
                 "IgnoredMulti", "MemErrors", "Udp6RcvbufErrors"):
        assert name in counters, (name, counters)


@pytest.mark.parametrize("backend", BACKENDS)
def test_drops_grow_by_the_datagrams_the_full_receiver_lost(backend, udp_scenario, agentd, env,
                                                           tmp_path):
    cfg = backend_config(tmp_path, env, backend)

    def flooded_port(value: str) -> dict:
        (row,) = [r for r in json.loads(value)["ports"] if r["port"] == udp.FLOODED_PORT]
        return row

    def snapshot():
        result = ag.test_key(agentd, cfg, "linux_status[udp_summary]")
        assert result.supported, result.raw
        return result.value, udp.udp_counters()

    sockets1, (value1, counters1) = udp.settled_udp(snapshot)
    udp_scenario.flood(500)
    sockets2, (value2, counters2) = udp.settled_udp(snapshot)
    ss_drops = [sum(s.drops for s in sk if s.local_port == udp.FLOODED_PORT)
                for sk in (sockets1, sockets2)]
    grown = flooded_port(value2)["drops"] - flooded_port(value1)["drops"]
    assert grown == ss_drops[1] - ss_drops[0] == 500, (grown, ss_drops)
    assert counters2["RcvbufErrors"] - counters1["RcvbufErrors"] == 500
    assert json.loads(value2)["RcvbufErrors"] == counters2["RcvbufErrors"]
    assert json.loads(value2)["drops"] - json.loads(value1)["drops"] == 500
    if backend == "netlink":
        row = flooded_port(value2)
        (receiver,) = [s for s in sockets2
                       if s.local_port == udp.FLOODED_PORT and s.state == "CLOSE"]
        assert row["fill_percent"] == round(receiver.recv_q * 10000 // receiver.rcvbuf / 100, 2)
        assert row["fill_percent"] > 80, row


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_discovery_lists_the_bound_ports(backend, udp_scenario, agentd, env, tmp_path):
    cfg = backend_config(tmp_path, env, backend)
    sockets, result = udp.settled_udp(
        lambda: ag.test_key(agentd, cfg, "linux_status[udp_discovery]"))
    assert result.supported, result.raw
    rows = json.loads(result.value)
    assert rows == [{"{#PORT}": str(port)} for port in udp.bound_ports(sockets)]
    assert {int(r["{#PORT}"]) for r in rows} >= {udp.FLOODED_PORT, udp.DNS_PORT, udp.SIP_PORT}


@pytest.mark.parametrize("key,phrases", [
    ("linux_status[udp_status,LISTEN]", ("Unknown UDP state", "UNCONN", "ESTAB")),
    ("linux_status[udp_status,TIME_WAIT]", ("Unknown UDP state",)),
    ("linux_status[udp_status,UNCONN,x]", ("Invalid local address",)),
    ("linux_status[udp_status,UNCONN,,70000]", ("Invalid local port", "70000")),
    ("linux_status[udp_summary,x]", ("Too many parameters",)),
    ("linux_status[udp_discovery,x]", ("Too many parameters",)),
])
def test_bad_udp_keys_are_errors(key, phrases, agentd, agent_config):
    orc.unsupported(ag.test_key(agentd, agent_config, key), phrases)


def test_a_running_agent_answers_udp_through_zabbix_get(udp_scenario, agent, env):
    """The session's agent (the suite's pinned settings) over the passive protocol: its own
    TCP connection is no UDP socket, so the answers equal ss exactly."""
    for key, check in [
        ("linux_status[udp_status,UNCONN]", lambda s, r: r.uint() == count(s, "CLOSE")),
        ("linux_status[udp_status,ESTAB,,,::1]",
         lambda s, r: r.uint() == count(s, "ESTABLISHED", "", "", "::1")),
        ("linux_status[udp_discovery]", lambda s, r: json.loads(r.value) == [
            {"{#PORT}": str(p)} for p in udp.bound_ports(s)]),
        ("linux_status[udp_summary]", lambda s, r: comparable_summary(r.value)[0]
         == udp.expected_summary(s, buffers=True)),
    ]:
        sockets, result = udp.settled_udp(lambda: ag.zabbix_get(env.get, agent.cfg.port, key))
        assert result.supported, result.raw
        assert check(sockets, result), (key, result.value, sockets)
