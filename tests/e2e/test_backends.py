"""Backends, snapshots and the module configuration file, on every agent line.

- `Backend=netlink` gives the same answers as `/proc` for every key (sock_diag filtered by
  state for single-state keys, full dumps otherwise);
- when netlink is refused (here: an LD_PRELOAD shim that makes socket(AF_NETLINK,
  NETLINK_SOCK_DIAG) fail with EACCES, as SELinux does without netlink_tcpdiag_socket), the
  module says so once and answers from /proc, exactly;
- `SnapshotLifetime` makes every worker reuse one scan for that long (a snapshot shared
  through memory mapped before the fork), and 0 disables reuse;
- a bad configuration file makes the agent refuse to start, naming the file, line and
  problem.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import agent as ag
import scenario as sc

SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <linux/netlink.h>

/* Refuses sock_diag sockets the way an LSM does; every other socket is untouched. */
int socket(int domain, int type, int protocol)
{
	static int (*real_socket)(int, int, int);
	if (real_socket == NULL)
		real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
	if (domain == AF_NETLINK && protocol == NETLINK_SOCK_DIAG) {
		errno = EACCES;
		return -1;
	}
	return real_socket(domain, type, protocol);
}
"""

FALLBACK_MESSAGE = "linux_status: netlink sock_diag unavailable"

KEYS = [
    "linux_status[tcp_summary]",
    *[f"linux_status[tcp_status,{state}]" for state in sc.KERNEL_STATES],
    "linux_status[tcp_status,ESTABLISHED,127.0.0.1,20003]",
    "linux_status[tcp_summary,,,::1]",
    "linux_status[tcp_summary,,20006]",
    "linux_status[listen_discovery]",
    "linux_status[listen_stats]",
]


def config(tmp_path: Path, env, name: str, settings: str, **kwargs) -> ag.AgentConfig:
    port = ag.free_port(avoid=sc.SCENARIO_PORTS)
    return ag.write_config(tmp_path / name, env.so, port, module_settings=settings, **kwargs)


def comparable(result: ag.ItemResult):
    """The value with the parts that move on their own (kernel counters) taken out."""
    assert result.supported, result.raw
    if result.value.startswith("{"):
        value = json.loads(result.value)
        value.pop("ListenOverflows", None)
        value.pop("ListenDrops", None)
        return value
    return result.value


@pytest.mark.parametrize("key", KEYS)
def test_netlink_answers_like_proc(key, scenario, agentd, env, tmp_path):
    proc = config(tmp_path, env, "proc", "Backend=proc\nSnapshotLifetime=0\n")
    netlink = config(tmp_path, env, "netlink", "Backend=netlink\nSnapshotLifetime=0\n")
    for _ in range(5):
        before = {s.ident for s in sc.ss_sockets()}
        from_proc = ag.test_key(agentd, proc, key)
        from_netlink = ag.test_key(agentd, netlink, key)
        if before == {s.ident for s in sc.ss_sockets()}:
            break
    assert comparable(from_netlink) == comparable(from_proc), key


@pytest.fixture(scope="module")
def refusing_shim(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("shim")
    source = directory / "refuse_sock_diag.c"
    source.write_text(SHIM_SOURCE)
    library = directory / "refuse_sock_diag.so"
    built = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(library), str(source),
         "-ldl"],
        capture_output=True, text=True, timeout=60,
    )
    assert built.returncode == 0, built.stderr
    return library


def test_refused_netlink_falls_back_to_proc_and_says_so_once(
    scenario, agentd, env, tmp_path, refusing_shim, agent_ports
):
    cfg = config(tmp_path, env, "refused", "Backend=netlink\nSnapshotLifetime=0\n")
    environment = {**ag.agent_env(cfg), "LD_PRELOAD": str(refusing_shim)}

    # -t: one process, one message, the right answer.
    proc = subprocess.run(
        [agentd, "-c", str(cfg.path), "-t", "linux_status[tcp_summary]"],
        capture_output=True, text=True, timeout=30, env=environment,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert output.count(FALLBACK_MESSAGE) == 1, output
    assert "Permission denied" in output, output
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("linux_status"))
    summary = json.loads(ag.parse_item_line(line).value)
    ss_counts = sc.count_states(sc.ss_sockets())
    assert {k: summary[k] for k in sc.KERNEL_STATES} == ss_counts

    # A running agent: the probe in the main process decides before the fork, so the log
    # holds the message once however many workers answer.
    agent = ag.Agent(agentd, env.get, cfg)
    agent_ports.append(cfg.port)
    start_with_env(agent, environment)
    try:
        for _ in range(6):
            result = ag.zabbix_get(env.get, cfg.port, "linux_status[tcp_status,LISTEN]")
            assert result.value == str(sc.count_states(sc.ss_sockets())["LISTEN"]), result.raw
        text = agent.log_text() + agent.stdout_path.read_text(errors="replace")
        assert text.count(FALLBACK_MESSAGE) == 1, text[-3000:]
    finally:
        agent.stop()


def start_with_env(agent: ag.Agent, environment: dict[str, str]) -> None:
    """Agent.start with an extra environment (the LD_PRELOAD shim)."""
    original = ag.agent_env
    ag.agent_env = lambda cfg: environment
    try:
        agent.start()
    finally:
        ag.agent_env = original


def test_snapshot_lifetime_one_scan_shared_by_every_worker_then_expires(
    scenario, agentd, env, tmp_path, agent_ports
):
    """SnapshotLifetime=4000 on an agent with 3 listener workers: each passive check leaves a
    TIME_WAIT on the agent port, yet six checks within the lifetime all give the first one's
    count — the accepts spread over the workers, and a per-worker cache would have rescanned
    and seen the new TIME_WAITs — and one after the lifetime scans again."""
    cfg = config(tmp_path, env, "snapshot", "SnapshotLifetime=4000\n", start_agents=3)
    agent = ag.Agent(agentd, env.get, cfg)
    agent_ports.append(cfg.port)
    agent.start()
    key = "linux_status[tcp_status,TIME_WAIT]"
    try:
        time.sleep(4.5)  # let the start-up pings' scan (if any) expire
        started = time.monotonic()
        answers = [int(ag.zabbix_get(env.get, cfg.port, key).value) for _ in range(6)]
        reused_within = time.monotonic() - started
        ss_now = sc.count_states(sc.ss_sockets())["TIME_WAIT"]
        assert reused_within < 3.0, "the queries came too late to test reuse"
        assert len(set(answers)) == 1, f"one scan serves every worker: {answers}"
        assert ss_now >= answers[0] + 5, "the queries' TIME_WAITs exist but were not rescanned"
        time.sleep(4.5)
        before = sc.count_states(sc.ss_sockets())["TIME_WAIT"]
        fresh = int(ag.zabbix_get(env.get, cfg.port, key).value)
        assert fresh == before, "after the lifetime a worker scans again"
    finally:
        agent.stop()


@pytest.mark.parametrize(
    "settings,line,problem",
    [
        ("Backend=ebpf\n", 1, 'Backend must be proc or netlink, got "ebpf"'),
        ("# fine\nSnapshotLifetime=soon\n", 2, "SnapshotLifetime must be milliseconds"),
        ("Backend=proc\n\nTimeout=3\n", 3, 'unknown parameter "Timeout"'),
    ],
)
def test_bad_configuration_stops_the_agent_with_a_clear_message(
    settings, line, problem, agentd, env, tmp_path
):
    cfg = config(tmp_path, env, "bad", settings)
    expected = f"linux_status: {cfg.module_config} line {line}: {problem}"
    test_mode = subprocess.run(
        [agentd, "-c", str(cfg.path), "-t", "linux_status[version]"],
        capture_output=True, text=True, timeout=30, env=ag.agent_env(cfg),
    )
    assert test_mode.returncode != 0, test_mode.stdout
    assert expected in test_mode.stdout + test_mode.stderr
    daemon = subprocess.run(
        [agentd, "-c", str(cfg.path), "-f"],
        capture_output=True, text=True, timeout=30, env=ag.agent_env(cfg),
    )
    assert daemon.returncode != 0, "the agent must refuse to start"
    log = cfg.log_file.read_text(errors="replace") if cfg.log_file.exists() else ""
    assert expected in daemon.stdout + daemon.stderr + log, log[-2000:]
