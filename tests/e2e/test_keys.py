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

import json
import socket

import pytest

from lib import agent as ag
from lib import cgroups
from lib import keys
from lib import scenario as sc
from lib.oracle import (
    ATTEMPTS, FILTERS, listening_ports, netstat_counter, oracle, settled,
)


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


def test_listen_discovery_lists_every_listening_port(scenario, agentd, agent_config):
    before, result = settled(
        lambda: ag.test_key(agentd, agent_config, "linux_status[listen_discovery]")
    )
    rows = json.loads(result.value)
    assert rows == [{"{#PORT}": str(port)} for port in listening_ports(before)], result.raw
    assert {int(r["{#PORT}"]) for r in rows} >= set(sc.SCENARIO_PORTS)


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


@pytest.mark.parametrize("entry", keys.KEYS, ids=[entry["metric"] for entry in keys.KEYS])
def test_every_registry_key_answers_its_sample(entry, agent, env):
    """Each key of lib/keys.json (the Rust registry) is answered, through the running agent:
    a key added to the registry is asked here without editing this suite."""
    assert keys.metric_of(entry["sample"]) == entry["metric"], entry
    result = ag.zabbix_get(env.get, agent.cfg.port, entry["sample"])
    if entry["metric"].startswith("cgroup_") and not cgroups.host_usable():
        # No cgroup2 mount, or one with no cgroup but its root (this test host without
        # test_cgroups' cgroups): the documented error, never a number.
        assert not result.supported, result.raw
        assert result.message.startswith("Cgroup v1: not available: "), result.raw
        return
    assert result.supported, result.raw
