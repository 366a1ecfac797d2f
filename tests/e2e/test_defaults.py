"""The exact-count scenario once more with the shipped defaults, on every agent line.

No module configuration at all: LINUX_STATUS_CONFIG unset, and /etc/zabbix hidden behind an
empty tmpfs in the suite's private mount namespace (conftest), so whatever the host has, the
module runs as installed: Backend=auto (netlink sock_diag, dumping only the state asked
for), SnapshotLifetime=1000 shared by the workers.

- `zabbix_agentd -t`: a fresh process per key, so every state and tcp_summary are exact;
- a running agent, through zabbix_get: each state is asked once, more than the lifetime after
  the previous one (so the answer is a fresh walk), exact as with SnapshotLifetime=0;
- linux_status[info] and the init line in the agent log say what is in force.
"""

from __future__ import annotations

import json
import time

import pytest

from lib import agent as ag
from lib import keys
from lib import scenario as sc
from lib.oracle import QUERY_OWN_SOCKETS, bracketed, check_count

DEFAULT_CONFIG = "/etc/zabbix/linux_status.conf"


@pytest.fixture(scope="module")
def defaults_config(env, netns, agentd, tmp_path_factory, agent_ports) -> ag.AgentConfig:
    port = ag.free_port(avoid=(*sc.SCENARIO_PORTS, *agent_ports))
    agent_ports.append(port)
    return ag.write_config(tmp_path_factory.mktemp("defaults"), env.so, port, module_settings=None)


@pytest.fixture(scope="module")
def defaults_agent(env, agentd, scenario_session, defaults_config):
    with ag.running_agent(agentd, env.get, defaults_config) as a:
        yield a


def test_no_configuration_anywhere(defaults_config):
    assert defaults_config.module_config is None
    assert "LINUX_STATUS_CONFIG" not in ag.agent_env(defaults_config)
    with pytest.raises(FileNotFoundError):
        open(DEFAULT_CONFIG)


@pytest.mark.parametrize("state", sc.KERNEL_STATES)
def test_every_state_exact_in_test_mode(state, scenario, defaults_config, agentd, agent_ports):
    key = f"linux_status[tcp_status,{state}]"
    before, after, result = bracketed(lambda: ag.test_key(agentd, defaults_config, key))
    check_count(key, state, result.uint(), before, scenario, agent_ports, own=0)


def test_summary_exact_in_test_mode(scenario, defaults_config, agentd, agent_ports):
    before, _, result = bracketed(
        lambda: ag.test_key(agentd, defaults_config, "linux_status[tcp_summary]")
    )
    summary = json.loads(result.value)
    assert {k: summary[k] for k in sc.KERNEL_STATES} == sc.count_states(before)
    assert summary["TOTAL"] == len(before)


def test_every_state_exact_through_a_running_agent(scenario, defaults_agent, env, agent_ports):
    for state in sc.KERNEL_STATES:
        # Past the default lifetime since the previous query: items polled together share a
        # snapshot (up to 1 s old by design), a poll a second later gets a fresh walk.
        time.sleep(1.1)
        key = f"linux_status[tcp_status,{state}]"
        before, _, result = bracketed(lambda: ag.zabbix_get(env.get, defaults_agent.cfg.port, key))
        own = QUERY_OWN_SOCKETS.get(state, 0)
        check_count(key, state, result.uint(), before, scenario, agent_ports, own=own)


def test_a_filter_exact_through_a_running_agent(scenario, defaults_agent, env):
    key = "linux_status[tcp_status,ESTABLISHED,127.0.0.1,20003]"
    before, _, result = bracketed(lambda: ag.zabbix_get(env.get, defaults_agent.cfg.port, key))
    expected = sum(
        1 for s in before
        if s.state == "ESTABLISHED" and s.local.endswith(":20003") and "127.0.0.1" in s.local
    )
    assert result.uint() == expected, (result.raw, expected)
    assert expected > 0, "the scenario has IPv4 connections accepted on 20003"


def test_info_and_the_log_say_what_is_in_force(defaults_agent, env):
    info = json.loads(ag.zabbix_get(env.get, defaults_agent.cfg.port, "linux_status[info]").value)
    assert info["backend_configured"] == "auto", info
    assert info["backend_in_use"] == "netlink", info
    assert info["fallback_reason"] is None, info
    assert info["snapshot_lifetime_ms"] == 1000, info
    assert info["config_file"] == DEFAULT_CONFIG, info
    assert info["config_file_present"] is False, info
    assert info["api_version"] == 2, info
    assert tuple(info["keys"]) == keys.METRICS, info  # the registry, through the module
    assert info["process_id"] in defaults_agent.pids()[1], info
    log = defaults_agent.log_text() + defaults_agent.stdout_path.read_text(errors="replace")
    line = f"backend auto, answering from netlink sock_diag; snapshot lifetime 1000 ms; configuration {DEFAULT_CONFIG} (absent: defaults)"
    assert log.count(line) == 1, log[-3000:]
