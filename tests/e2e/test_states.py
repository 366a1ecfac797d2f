"""linux_status[tcp_status,<STATE>] against a known socket table, through the real agent.

Every state and every spelling that the README accepts (the state table) (with '-' and '_' swapped, in
lowercase, in mixed case, padded with spaces) must give the number of sockets in that state:
the scenario's known count, and the count `ss -Htan` gives in this namespace at that moment.

Two paths:
- `zabbix_agentd -t KEY`: the item runs in a short-lived process that opens no socket, so the
  answer equals the ss count taken just before (which, besides the scenario, may hold the
  running agent's LISTEN socket and TIME_WAIT sockets of earlier passive checks on its port).
- `zabbix_get` against the running agent: during the query, the client and the agent's
  accepted socket are both ESTABLISHED, so ESTABLISHED reads 2 more than ss just before.
In both, ss minus the sockets on the agent's port must equal the scenario's known count.

A query is bracketed by two ss snapshots; if any socket of the first vanished or changed state
by the second (an old TIME_WAIT on the agent port expiring), the query is repeated (bounded).

Also: near-miss spellings that the old grep-based UserParameter matched as substrings must be
rejected, the error cases of the contract give their phrases, and none of it disturbs the
agent (same main and worker pids, no crash in its log).
"""

from __future__ import annotations

import pytest

from lib import agent as ag
from lib import scenario as sc
from lib.oracle import (
    ERROR_CASES, QUERY_OWN_SOCKETS, STATE_KEYS, SUBSTRING_TRAPS, assert_agent_unharmed,
    bracketed, check_count, unsupported,
)

# -- the oracle itself ---------------------------------------------------------------------


def test_scenario_matches_ss_and_proc(scenario, agent_ports):
    """ss and a plain read of /proc/net/tcp{,6} agree with the scenario's known table."""
    socks = sc.ss_sockets()
    from_ss = sc.count_states(socks, exclude_ports=agent_ports)
    from_proc = sc.proc_net_tcp_counts(exclude_ports=agent_ports)
    assert from_ss == scenario.counts, f"ss {from_ss} != scenario {scenario.counts}"
    assert from_proc == scenario.counts, f"/proc {from_proc} != scenario {scenario.counts}"
    assert sum(1 for v in scenario.counts.values() if v) >= 10, scenario.counts


# -- zabbix_agentd -t ----------------------------------------------------------------------


@pytest.mark.parametrize("state,key", STATE_KEYS, ids=[k for _, k in STATE_KEYS])
def test_state_count_test_mode(state, key, scenario, agent_config, agentd, agent_ports):
    before, after, result = bracketed(lambda: ag.test_key(agentd, agent_config, key))
    appeared = {s.ident for s in after} - {s.ident for s in before}
    assert not appeared, f"-t {key}: sockets appeared during the check: {sorted(appeared)}"
    check_count(key, state, result.uint(), before, scenario, agent_ports, own=0)


# -- zabbix_get against the running agent -----------------------------------------------------


@pytest.mark.parametrize("state,key", STATE_KEYS, ids=[k for _, k in STATE_KEYS])
def test_state_count_zabbix_get(state, key, scenario, agent, env, agent_ports):
    before, _, result = bracketed(lambda: ag.zabbix_get(env.get, agent.cfg.port, key))
    own = QUERY_OWN_SOCKETS.get(state, 0)
    check_count(key, state, result.uint(), before, scenario, agent_ports, own=own)


def test_print_all_has_listen_count(scenario, agent_config, agentd, agent_ports):
    """`zabbix_agentd -p` runs the module's test_param and prints a real LISTEN count."""
    before, _, results = bracketed(lambda: ag.print_all(agentd, agent_config))
    ours = {k: r for k, r in results.items() if k.startswith("linux_status")}
    key = "linux_status[tcp_status,LISTEN]"
    assert list(ours) == [key], f"-p lists {sorted(ours)} for the module, expected [{key}]"
    assert "agent.ping" in results, f"-p output looks truncated: {sorted(results)}"
    check_count(key, "LISTEN", ours[key].uint(), before, scenario, agent_ports, own=0)


# -- near misses and errors -------------------------------------------------------------------


@pytest.mark.parametrize("trap", SUBSTRING_TRAPS)
def test_substring_trap_test_mode(trap, agent_config, agentd):
    result = ag.test_key(agentd, agent_config, f'linux_status[tcp_status,"{trap}"]')
    unsupported(result, ("Unknown TCP state", "Valid states:", "ESTAB", "TIME-WAIT"))


@pytest.mark.parametrize("trap", SUBSTRING_TRAPS)
def test_substring_trap_zabbix_get(trap, agent, env):
    result = ag.zabbix_get(env.get, agent.cfg.port, f'linux_status[tcp_status,"{trap}"]')
    unsupported(result, ("Unknown TCP state", "Valid states:", "ESTAB", "TIME-WAIT"))
    assert_agent_unharmed(agent)


@pytest.mark.parametrize("key", list(ERROR_CASES))
def test_error_test_mode(key, agent_config, agentd):
    unsupported(ag.test_key(agentd, agent_config, key), ERROR_CASES[key])


@pytest.mark.parametrize("key", list(ERROR_CASES))
def test_error_zabbix_get(key, agent, env):
    assert_agent_unharmed(agent)
    unsupported(ag.zabbix_get(env.get, agent.cfg.port, key), ERROR_CASES[key])
    assert_agent_unharmed(agent)
    ping = ag.zabbix_get(env.get, agent.cfg.port, "agent.ping")
    assert ping.value == "1", f"agent.ping after {key}: {ping.raw!r}"


def test_agent_survived_everything(agent, env):
    """After every query above: same main and worker pids, module loaded, no crash logged."""
    assert_agent_unharmed(agent)
    log = agent.log_text()
    assert "liblinux_status.so" in log, f"the agent log does not mention the module:\n{log}"
    ping = ag.zabbix_get(env.get, agent.cfg.port, "agent.ping")
    assert ping.value == "1", f"agent.ping: {ping.raw!r}"
