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
