"""The arm64 agent 2 plugin (from the arm64 .deb) in Debian's arm64 zabbix_agent2 6.0.14, both
emulated by qemu-user, in the private namespace with the known socket table.

Plugins.LinuxStatus.System.Path names a wrapper that runs the plugin under qemu (see
conftest.plugin): the emulated agent's execve of an aarch64 file would fail (exec format
error) without a binfmt handler, and registering one would change the whole machine.

As with the module, qemu-user refuses NETLINK_SOCK_DIAG, so under the default Backend=auto
the plugin answers from /proc, and says so from its very first answer: it probes netlink
when the agent configures it, before any request, as the module probes at init.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

import pytest

from lib import agent as ag
from lib import oracle
from lib import agent2 as a2
from lib import fixtures
from lib import hostile_keys
from lib import scenario as sc
from lib import zbxd

QUERY_OWN = oracle.QUERY_OWN_SOCKETS
QEMU_NETLINK_REFUSAL = "Protocol not supported"
PR_SET_CHILD_SUBREAPER = 36
HOSTILE_KEYS = 200


def plugin_processes(agent: a2.Agent2) -> list[int]:
    """The agent's children running the plugin (their host command line is qemu's, naming
    the plugin file)."""
    pids = []
    for pid in ag.child_pids(agent.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if a2.PLUGIN_NAME.encode() in cmdline and ag.pid_alive(pid):
            pids.append(pid)
    return pids


@pytest.fixture(scope="module")
def agent2(env, agent2_binary, plugin, scenario_session, tmp_path_factory):
    """A running emulated agent 2 with the emulated plugin, Backend left at its default
    (auto) and SnapshotLifetime=0 for exact answers. Nothing is asked before the tests: the
    first request for the key starts the plugin (6.0 starts it on demand)."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())
    line = a2.Line("6.0", agent2_binary)
    version = a2.version_of(line, plugin, tmp_path_factory.mktemp("version"))
    assert version == "6.0.14", version
    cfg = a2.write_config(line, plugin, tmp_path_factory.mktemp("agent2"), fixtures.new_port(),
                          timeout=10)
    agent = a2.Agent2(cfg, env.get)
    # Emulated start-up takes longer than a native one.
    agent.start_timeout = max(agent.start_timeout, 60.0)
    agent.start()
    try:
        yield agent
    finally:
        plugins = plugin_processes(agent)
        crash = agent.crash_lines()
        status = agent.stop()
        sc.wait_until(lambda: not [p for p in plugins if a2.reap(p) or ag.pid_alive(p)], 15.0,
                      "the plugin processes to exit after the agent")
        assert not crash, "agent 2 output has crash lines:\n" + "\n".join(crash)
        assert status == 0, f"agent 2 exited {status} on SIGTERM\n{agent.describe()}"


def get(agent: a2.Agent2, key: str) -> ag.ItemResult:
    return ag.zabbix_get(agent.get_bin, agent.cfg.port, key)


def test_first_answer_already_names_the_fallback(agent2):
    """The first request of all is linux_status[info]: the plugin has just been configured
    (Backend=auto) and must already answer from /proc, naming why, as the module does."""
    result = get(agent2, "linux_status[info]")
    assert result.supported, f"{result.raw!r}\n{agent2.describe()}"
    info = json.loads(result.value)
    assert (info["backend_configured"], info["backend_in_use"]) == ("auto", "proc"), info
    assert QEMU_NETLINK_REFUSAL in (info["fallback_reason"] or ""), info
    assert plugin_processes(agent2), f"no plugin process under the agent\n{agent2.describe()}"


@pytest.mark.parametrize("state", sc.KERNEL_STATES)
def test_every_state_exact(state, agent2, scenario, agent_ports):
    key = f"linux_status[tcp_status,{state}]"
    before, _, result = oracle.bracketed(lambda: get(agent2, key))
    oracle.check_count(key, state, result.uint(), before, scenario, agent_ports,
                           own=QUERY_OWN.get(state, 0))


def test_summary_exact(agent2, scenario):
    before, _, result = oracle.bracketed(lambda: get(agent2, "linux_status[tcp_summary]"))
    summary = json.loads(result.value)
    expected = sc.count_states(before)
    for state, own in QUERY_OWN.items():
        expected[state] += own
    assert {k: summary[k] for k in sc.KERNEL_STATES} == expected, summary


def test_hostile_keys_leave_agent_and_plugin_alive(agent2, scenario):
    pids = (agent2.pid, plugin_processes(agent2))
    for key, phrases in oracle.ERROR_CASES.items():
        oracle.unsupported(get(agent2, key), phrases)
    generated = list(hostile_keys.generate(HOSTILE_KEYS, seed=20261208))
    replies = zbxd.run_requests(agent2.cfg.port, [k for _, k in generated],
                                     concurrency=2, timeout=60.0)
    problems = [f"{c}: {r.kind} {r.error} for {k[:80]!r}" for (c, k), r in zip(generated, replies)
                if r.kind not in ("value", "notsupported")]
    assert not problems, "\n".join(problems[:20])
    assert agent2.alive(), agent2.describe()
    assert (agent2.pid, plugin_processes(agent2)) == pids, agent2.describe()
    assert not agent2.crash_lines(), agent2.describe()
    listen = sc.count_states(sc.ss_sockets())["LISTEN"]
    assert get(agent2, "linux_status[tcp_status,LISTEN]").uint() == listen
