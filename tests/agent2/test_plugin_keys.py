"""Every key of the plugin through real agent 2 binaries, against ss and agent 2's own
built-in net.tcp.socket.count, on both agent lines.

Paths: `zabbix_get` against the running agent (during the query the client and the agent's
accepted socket are both ESTABLISHED: 2 more than ss just before) and `zabbix_agent2 -t KEY`
(starts the plugin, opens no network socket: exactly ss). A query is bracketed by two ss
snapshots and repeated while the table changed around it. The expectations and the key
lists are the module's end-to-end suite's (tests/e2e), imported, so the plugin is held to
exactly the module's contract: same values, same messages.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from lib import agent as ag
from lib import cgroups
from lib import keys
from lib import oracle
from lib import agent2 as a2
from lib import scenario as sc
from lib import zbxd

STATE_KEYS = oracle.STATE_KEYS
# One spelling per state for the slower -t path (every spelling goes through zabbix_get).
BASE_STATE_KEYS = [
    (state, f"linux_status[tcp_status,{oracle.CONTRACT_SPELLINGS[state][-1].lower()}]")
    for state in sc.KERNEL_STATES
]
QUERY_OWN = oracle.QUERY_OWN_SOCKETS


def get(agent: a2.Agent2, key: str) -> ag.ItemResult:
    return ag.zabbix_get(agent.get_bin, agent.cfg.port, key)


def test_scenario_matches_ss(scenario, agent_ports):
    counts = sc.count_states(sc.ss_sockets(), exclude_ports=agent_ports)
    assert counts == scenario.counts, f"ss {counts} != scenario {scenario.counts}"


@pytest.mark.parametrize("state,key", STATE_KEYS, ids=[k for _, k in STATE_KEYS])
def test_state_count_zabbix_get(state, key, scenario, agent2, agent_ports):
    before, _, result = oracle.bracketed(lambda: get(agent2, key))
    oracle.check_count(
        key, state, result.uint(), before, scenario, agent_ports, own=QUERY_OWN.get(state, 0)
    )


@pytest.mark.parametrize("state,key", BASE_STATE_KEYS, ids=[k for _, k in BASE_STATE_KEYS])
def test_state_count_test_mode(state, key, scenario, exact_config, agent_ports):
    before, after, result = oracle.bracketed(lambda: a2.test_key(exact_config, key))
    appeared = {s.ident for s in after} - {s.ident for s in before}
    assert not appeared, f"-t {key}: sockets appeared during the check: {sorted(appeared)}"
    # Through agent 2 every value is text: `s`, not the module's `u`.
    assert result.type == "s", result.raw
    check_value = ag.ItemResult(result.key, "get", result.value, None, result.raw).uint()
    oracle.check_count(key, state, check_value, before, scenario, agent_ports, own=0)


@pytest.mark.parametrize("state", [s for s in sc.KERNEL_STATES if s != "CLOSE"])
def test_states_agree_with_the_builtin_count(state, scenario, agent2):
    """linux_status[tcp_status,S] and agent 2's net.tcp.socket.count[,,,,s] on one agent:
    the same number (each query's own connection counts the same in both)."""
    ours_key = f"linux_status[tcp_status,{state}]"
    builtin_key = f"net.tcp.socket.count[,,,,{state.lower()}]"
    for _ in range(oracle.ATTEMPTS):
        before = {s.ident for s in sc.ss_sockets()}
        ours = zbxd.one(agent2.cfg.port, ours_key)
        builtin = zbxd.one(agent2.cfg.port, builtin_key)
        if before == {s.ident for s in sc.ss_sockets()}:
            break
    assert builtin.kind == "value", f"{builtin_key}: {builtin}"
    assert ours.kind == "value" and ours.payload.isdigit(), f"{ours_key}: {ours}"
    assert int(ours.payload) == int(builtin.payload), (state, ours.payload, builtin.payload)


@pytest.mark.parametrize("laddr,lport,raddr,rport", oracle.FILTERS)
def test_filters_match_ss_and_the_builtin_count(laddr, lport, raddr, rport, scenario, agent2,
                                                exact_config):
    params = f"{laddr},{lport},{raddr},{rport}"
    before, summary = oracle.settled(
        lambda: json.loads(a2.test_key(exact_config, f"linux_status[tcp_summary,{params}]").value)
    )
    assert {k: summary[k] for k in sc.KERNEL_STATES} == oracle.oracle(
        before, laddr, lport, raddr, rport
    ), params
    builtin_differs = agent2_builtin_differs(laddr) or agent2_builtin_differs(raddr)
    for state in sc.KERNEL_STATES:
        if state == "CLOSE":
            continue  # not a state net.tcp.socket.count accepts
        for _ in range(oracle.ATTEMPTS):
            snapshot = sc.ss_sockets()
            ours = zbxd.one(agent2.cfg.port, f"linux_status[tcp_status,{state},{params}]")
            builtin = zbxd.one(
                agent2.cfg.port, f"net.tcp.socket.count[{params},{state.lower()}]"
            )
            if {s.ident for s in snapshot} == {s.ident for s in sc.ss_sockets()}:
                break
        assert builtin.kind == "value", (params, state, builtin)
        assert ours.kind == "value", (params, state, ours)
        if builtin_differs:
            # Agent 2's own net.tcp.socket.count (Go) reads ::ffff:a.b.c.d/p with p < 96
            # unlike zabbix_agentd's (C), whose rule the module and the plugin follow
            # (tests/e2e/test_keys.py proves it against zabbix_agentd 6.0 and 7.0): here the
            # plugin must give the ss oracle's count, the query's own connection included.
            expected = oracle.oracle(snapshot, laddr, lport, raddr, rport)[state]
            own = sum(1 for side in ("127.0.0.1",) if state == "ESTABLISHED"
                      and oracle.address_matches(laddr, ipaddress.ip_address(side))
                      and oracle.address_matches(raddr, ipaddress.ip_address(side))
                      and not lport and not rport) * 2
            assert int(ours.payload) == expected + own, (state, params, ours, expected, own)
            continue
        assert int(ours.payload) == int(builtin.payload), (state, params, ours, builtin)


def agent2_builtin_differs(spec: str) -> bool:
    """A filter written as ::ffff:a.b.c.d/p with p below 96 (see the test above)."""
    if "/" not in spec:
        return False
    written = ipaddress.ip_interface(spec)
    return (isinstance(written, ipaddress.IPv6Interface) and written.ip.ipv4_mapped is not None
            and written.network.prefixlen < 96)


@pytest.mark.parametrize("trap", oracle.SUBSTRING_TRAPS)
def test_substring_traps(trap, agent2):
    result = get(agent2, f'linux_status[tcp_status,"{trap}"]')
    oracle.unsupported(result, ("Unknown TCP state", "Valid states:", "ESTAB", "TIME-WAIT"))


@pytest.mark.parametrize("key", list(oracle.ERROR_CASES))
def test_errors_zabbix_get(key, agent2):
    oracle.unsupported(get(agent2, key), oracle.ERROR_CASES[key])
    agent2.assert_unchanged(f"after {key}")


@pytest.mark.parametrize("key", list(oracle.ERROR_CASES))
def test_errors_test_mode(key, exact_config):
    oracle.unsupported(a2.test_key(exact_config, key), oracle.ERROR_CASES[key])


def test_tcp_summary_is_the_whole_table(scenario, exact_config, agent_ports):
    before, got = oracle.settled(
        lambda: json.loads(a2.test_key(exact_config, "linux_status[tcp_summary]").value)
    )
    assert list(got) == [*sc.KERNEL_STATES, "TOTAL", "ports", "ListenOverflows", "ListenDrops"]
    assert {k: got[k] for k in sc.KERNEL_STATES} == sc.count_states(before)
    assert got["TOTAL"] == len(before)


def test_listen_discovery_lists_every_listening_port(scenario, exact_config, agent2):
    before, result = oracle.settled(
        lambda: a2.test_key(exact_config, "linux_status[listen_discovery]")
    )
    rows = json.loads(result.value)
    assert rows == [{"{#PORT}": str(p)} for p in oracle.listening_ports(before)], result.raw
    # Through zabbix_get: the same list (the running agent's port is listening in both;
    # each query leaves a TIME_WAIT behind, so only vanished sockets repeat it).
    before, _, answer = oracle.bracketed(lambda: get(agent2, "linux_status[listen_discovery]"))
    assert json.loads(answer.value) == [
        {"{#PORT}": str(p)} for p in oracle.listening_ports(before)
    ]


def test_listen_stats_per_port(scenario, exact_config):
    overflows = oracle.netstat_counter("ListenOverflows")
    before, result = oracle.settled(
        lambda: a2.test_key(exact_config, "linux_status[listen_stats]")
    )
    stats = json.loads(result.value)
    ports = stats["ports"]
    assert [p["port"] for p in ports] == oracle.listening_ports(before)
    for entry in ports:
        listeners = [s for s in before if s.state == "LISTEN" and s.local_port == entry["port"]]
        assert entry["listeners"] == len(listeners), entry
        assert entry["accept_queue"] == sum(s.recv_q for s in listeners), entry
        local = [s for s in before if s.local_port == entry["port"]]
        assert {k: entry[k] for k in sc.KERNEL_STATES} == sc.count_states(local), entry
    assert overflows <= stats["ListenOverflows"] <= oracle.netstat_counter("ListenOverflows")


def test_tcp_ext_and_version(exact_config, agent2):
    before = oracle.netstat_counter("ListenDrops")
    for result in (
        a2.test_key(exact_config, "linux_status[tcp_ext,ListenDrops]"),
        get(agent2, "linux_status[tcp_ext,ListenDrops]"),
    ):
        assert result.value.isdigit(), result.raw
        assert before <= int(result.value) <= oracle.netstat_counter("ListenDrops")
    bad = get(agent2, "linux_status[tcp_ext,NoSuchCounter]")
    assert not bad.supported and 'No TcpExt counter "NoSuchCounter"' in bad.message, bad.raw
    version = get(agent2, "linux_status[version]")
    assert version.value == a2.test_key(exact_config, "linux_status[version]").value
    assert version.value.count(".") == 2, version.raw


def test_every_json_key_through_zabbix_get(agent2):
    for key in ("tcp_summary", "tcp_summary,127.0.0.0/8,,,", "listen_discovery", "listen_stats"):
        result = get(agent2, f"linux_status[{key}]")
        assert result.supported, result.raw
        json.loads(result.value)


@pytest.mark.parametrize("entry", keys.KEYS, ids=[entry["metric"] for entry in keys.KEYS])
def test_every_registry_key_answers_its_sample(entry, agent2):
    """Each key of lib/keys.json (the Rust registry) is answered by the plugin: a key added to
    the registry is asked here without editing this suite."""
    assert keys.metric_of(entry["sample"]) == entry["metric"], entry
    result = get(agent2, entry["sample"])
    if entry["metric"].startswith("cgroup_") and not cgroups.host_usable():
        # No cgroup2 mount, or one with no cgroup but its root (this test host without
        # test_cgroups' cgroups): the documented error, never a number.
        assert not result.supported, result.raw
        assert result.message.startswith("Cgroup v1: not available: "), result.raw
        return
    assert result.supported, result.raw


def test_concurrent_requests_are_all_answered_right(scenario, agent2, agent_ports):
    """Agent 2 sends concurrent export requests on the plugin's one connection: 600 LISTEN
    queries from 16 connections at once all give the LISTEN count."""
    listen = sc.count_states(sc.ss_sockets())["LISTEN"]
    replies = zbxd.run_requests(
        agent2.cfg.port, [b"linux_status[tcp_status,LISTEN]"] * 600, concurrency=16, timeout=30.0
    )
    kinds = {r.kind for r in replies}
    assert kinds == {"value"}, [r for r in replies if r.kind != "value"][:3]
    assert {int(r.payload) for r in replies} == {listen}
    agent2.assert_unchanged("after 600 concurrent requests")


def test_the_agent_survived_everything(agent2):
    agent2.assert_unchanged("at the end")
    assert get(agent2, "agent.ping").value == "1"
