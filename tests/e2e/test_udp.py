"""UDP keys on every agent line and both backends, against `ss -uanm` and /proc.

In the session's private namespace lib/udp.py's scenario holds a 4 KiB-buffer receiver that
never reads, flooded until it drops, its auto-bound sender, a dual-stack [::]:53, 0.0.0.0:5060
beside an IPv6-only [::]:5060, and IPv4, IPv6 and IPv4-mapped connected sockets. Checked (the
checks are lib/udp.py's, shared with tests/agent2): `udp_status` in every state spelling and
through net.udp.socket.count's filters equals ss through the same filters; `udp_summary`
equals what ss says per port (queues, buffers with netlink, null with /proc, fill, drops) and
the Udp/Udp6 counters equal /proc/net/snmp{,6}; drops grow by exactly the datagrams sent to
the full receiver, as in ss, /proc and RcvbufErrors; `udp_discovery` lists the bound ports;
past 1,024 bound ports both report the services first, then the lowest ephemeral ports;
bad keys are errors naming what is valid; a running agent answers the same through
zabbix_get under the suite's pinned settings (backend: the default, auto).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lib import agent as ag
from lib import oracle as orc
from lib import scenario as sc
from lib import udp

BACKENDS = ("netlink", "proc")


def backend_config(tmp_path: Path, env, backend: str) -> ag.AgentConfig:
    port = ag.free_port(avoid=sc.SCENARIO_PORTS)
    return ag.write_config(tmp_path / backend, env.so, port,
                           module_settings=f"Backend={backend}\nSnapshotLifetime=0\n")


def test_the_oracles_agree_on_the_scenario(udp_scenario):
    """ss and /proc/net/udp{,6} list the same sockets, queues and drops; the flood dropped."""
    sockets, proc = udp.settled_udp(udp.proc_udp)
    assert sorted((s.state, s.local_port, s.recv_q, s.drops) for s in sockets) == proc
    flooded = [s for s in sockets if s.local_port == udp.FLOODED_PORT and s.state == "CLOSE"]
    assert len(flooded) == 1 and flooded[0].drops > 0, flooded
    assert flooded[0].rcvbuf == 2 * udp.SMALL_RCVBUF
    assert udp.udp_counters()["RcvbufErrors"] >= flooded[0].drops
    assert {s.state for s in sockets} == {"CLOSE", "ESTABLISHED"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_status_equals_ss(backend, udp_scenario, agentd, env, tmp_path):
    cfg = backend_config(tmp_path, env, backend)
    udp.check_status(lambda key: ag.test_key(agentd, cfg, key))


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_summary_equals_ss_and_the_kernel_counters(backend, udp_scenario, agentd, env,
                                                      tmp_path):
    cfg = backend_config(tmp_path, env, backend)
    udp.check_summary(lambda key: ag.test_key(agentd, cfg, key), buffers=backend == "netlink")


@pytest.mark.parametrize("backend", BACKENDS)
def test_drops_grow_by_the_datagrams_the_full_receiver_lost(backend, udp_scenario, agentd, env,
                                                           tmp_path):
    cfg = backend_config(tmp_path, env, backend)
    udp.check_drops_grow(lambda key: ag.test_key(agentd, cfg, key), udp_scenario,
                         buffers=backend == "netlink")


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_discovery_lists_the_bound_ports(backend, udp_scenario, agentd, env, tmp_path):
    cfg = backend_config(tmp_path, env, backend)
    udp.check_discovery(lambda key: ag.test_key(agentd, cfg, key))


@pytest.mark.parametrize("backend", BACKENDS)
def test_past_the_port_cap_services_come_first(backend, udp_scenario, agentd, env, tmp_path):
    cfg = backend_config(tmp_path, env, backend)
    udp.check_cap(lambda key: ag.test_key(agentd, cfg, key))


@pytest.mark.parametrize("key", udp.ERROR_CASES)
def test_bad_udp_keys_are_errors(key, agentd, agent_config):
    orc.unsupported(ag.test_key(agentd, agent_config, key), udp.ERROR_CASES[key])


def test_a_running_agent_answers_udp_through_zabbix_get(udp_scenario, agent, env):
    """The session's agent over the passive protocol: its own TCP connection is no UDP
    socket, so the answers equal ss exactly."""
    def ask(key):
        return ag.zabbix_get(env.get, agent.cfg.port, key)

    udp.check_status(ask, all_spellings=False)
    udp.check_summary(ask, buffers=True)
    udp.check_discovery(ask)
