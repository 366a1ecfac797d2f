"""The arm64 module (from the arm64 .deb) in Debian's arm64 zabbix_agentd 6.0.14, emulated by
qemu-user, in the private namespace with the known socket table.

What emulation can prove and what it cannot: qemu-user runs the aarch64 code (the module's
parsing, counting, the agent's fork and shared snapshot page) on this kernel's real /proc
tables; it does not translate the NETLINK_SOCK_DIAG family (`socket()` fails with
EPROTONOSUPPORT), so the netlink path of the arm64 build is not run here. These tests assert
that refusal instead of hiding it: under `auto` (the shipped default) the module falls back
to /proc at start and answers exactly, and under `Backend=netlink` every count is
ZBX_NOTSUPPORTED naming the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from lib import agent as ag
from lib import oracle
import conftest
from lib import fixtures
from lib import hostile_keys
from lib import scenario as sc

QUERY_OWN = oracle.QUERY_OWN_SOCKETS
# What qemu-user answers socket(AF_NETLINK, ..., NETLINK_SOCK_DIAG) with.
QEMU_NETLINK_REFUSAL = "Protocol not supported"
# Hostile keys through the emulated agent (each one is a passive check; emulation is slow).
HOSTILE_KEYS = 300

# Backend setting -> the module configuration the agent gets (None: no file at all, the
# shipped defaults; the suite hides the host's /etc/zabbix).
BACKENDS = {
    "proc": "Backend=proc\nSnapshotLifetime=0\n",
    "auto": "Backend=auto\nSnapshotLifetime=0\n",
    "shipped-defaults": None,
}
# The shipped SnapshotLifetime (1000 ms) lets one walk answer the requests of the next
# second; an exact comparison with ss waits that out first.
SHIPPED_SNAPSHOT_LIFETIME = 1.0


def fresh(agent) -> None:
    """Under the shipped defaults, waits until the next request walks the table anew."""
    if agent.backend == "shipped-defaults":
        time.sleep(SHIPPED_SNAPSHOT_LIFETIME + 0.1)


def test_the_binaries_are_aarch64_with_glibc_2_17_at_most(module, deb_root, env):
    """The packaged module and plugin are aarch64 code, need no GLIBC_ version above 2.17
    (readelf -V, the version needs), and the agent really is Debian's arm64 6.0.14."""
    for binary in (module, deb_root / conftest.DEB_PLUGIN):
        header = subprocess.run(["readelf", "-h", str(binary)], check=True, capture_output=True,
                                text=True, timeout=30).stdout
        assert "AArch64" in header, f"{binary} is not aarch64:\n{header}"
        versions = subprocess.run(["readelf", "-V", "-W", str(binary)], check=True,
                                  capture_output=True, text=True, timeout=30).stdout
        needed = sorted({tuple(int(p) for p in w.split("_", 1)[1].split("."))
                         for w in versions.split() if w.startswith("GLIBC_2")})
        assert needed, f"{binary}: no GLIBC_ version needs found:\n{versions}"
        assert max(needed) <= (2, 17), f"{binary} needs GLIBC_{'.'.join(map(str, max(needed)))}"
    agentd = env.sysroot / "usr/sbin/zabbix_agentd"
    header = subprocess.run(["readelf", "-h", str(agentd)], check=True, capture_output=True,
                            text=True, timeout=30).stdout
    assert "AArch64" in header, header


def start(agentd: str, module, tmp_path, settings):
    cfg = ag.write_config(tmp_path, module, fixtures.new_port(), module_settings=settings)
    return cfg, ag.running_agent(agentd, os.environ["ZABBIX_GET"], cfg)


@pytest.fixture(scope="module", params=list(BACKENDS))
def running(request, agentd, module, scenario_session, tmp_path_factory):
    """One emulated agent per backend setting, running while that setting's tests run."""
    cfg, context = start(agentd, module, tmp_path_factory.mktemp(f"agent-{request.param}"),
                         BACKENDS[request.param])
    with context as agent:
        agent.backend = request.param
        yield agent


def test_version_and_start_line(running):
    """The agent says 6.0.14 and logs the module's start line with the source in use."""
    version = subprocess.run([running.agentd, "-V"], check=True, capture_output=True, text=True,
                             timeout=60).stdout
    assert "(Zabbix) 6.0.14" in version, version
    log = running.log_text()
    assert "liblinux_status.so" in log, log
    if running.backend == "proc":
        assert "backend proc, answering from /proc/net/tcp and /proc/net/tcp6" in log, log
    else:
        assert "backend auto, answering from /proc/net/tcp and /proc/net/tcp6: netlink sock_diag unavailable" in log, log
        assert QEMU_NETLINK_REFUSAL in log, log


@pytest.mark.parametrize("state", sc.KERNEL_STATES)
def test_every_state_exact(state, running, scenario, agent_ports):
    key = f"linux_status[tcp_status,{state}]"
    fresh(running)
    before, _, result = oracle.bracketed(
        lambda: ag.zabbix_get(running.get_bin, running.cfg.port, key))
    oracle.check_count(key, state, result.uint(), before, scenario, agent_ports,
                           own=QUERY_OWN.get(state, 0))


def test_summary_exact(running, scenario, agent_ports):
    fresh(running)
    before, _, result = oracle.bracketed(
        lambda: ag.zabbix_get(running.get_bin, running.cfg.port, "linux_status[tcp_summary]"))
    summary = json.loads(result.value)
    expected = sc.count_states(before)
    for state, own in QUERY_OWN.items():
        expected[state] += own
    assert {k: summary[k] for k in sc.KERNEL_STATES} == expected, summary


def test_info_names_the_source_in_use(running):
    info = json.loads(ag.zabbix_get(running.get_bin, running.cfg.port, "linux_status[info]").value)
    configured = "proc" if running.backend == "proc" else "auto"
    assert (info["backend_configured"], info["backend_in_use"]) == (configured, "proc"), info
    if configured == "auto":
        assert QEMU_NETLINK_REFUSAL in info["fallback_reason"], info
    else:
        assert info["fallback_reason"] is None, info


def test_errors_and_traps_leave_the_agent_alive(running):
    for key, phrases in oracle.ERROR_CASES.items():
        oracle.unsupported(ag.zabbix_get(running.get_bin, running.cfg.port, key), phrases)
    for trap in oracle.SUBSTRING_TRAPS[:8]:
        oracle.unsupported(
            ag.zabbix_get(running.get_bin, running.cfg.port, f'linux_status[tcp_status,"{trap}"]'),
            ("Unknown TCP state", "Valid states:"))
    oracle.assert_agent_unharmed(running)


def test_hostile_keys_leave_the_agent_alive(running, scenario):
    """Generated hostile keys (tests/lib/hostile_keys.py) through the emulated agent:
    each gets a value or a bounded message; same pids afterwards; LISTEN still exact."""
    from lib import zbxd

    generated = list(hostile_keys.generate(HOSTILE_KEYS, seed=20261207))
    replies = zbxd.run_requests(running.cfg.port, [k for _, k in generated],
                                     concurrency=2, timeout=60.0)
    problems = []
    for (category, key), reply in zip(generated, replies):
        if reply.kind == "notsupported":
            if not reply.message or len(reply.message) > 4096:
                problems.append(f"{category}: bad message {reply.message[:80]!r} for {key[:80]!r}")
        elif reply.kind != "value":
            problems.append(f"{category}: {reply.kind} {reply.error} for {key[:80]!r}")
    assert not problems, "\n".join(problems[:20])
    oracle.assert_agent_unharmed(running)
    fresh(running)
    listen = sc.count_states(sc.ss_sockets())["LISTEN"]
    after = ag.zabbix_get(running.get_bin, running.cfg.port, "linux_status[tcp_status,LISTEN]")
    assert after.uint() == listen, after


def test_backend_netlink_is_unsupported_naming_the_reason(agentd, module, tmp_path, scenario):
    """Backend=netlink: qemu-user refuses the socket, so every count is an error naming it,
    never a number; the agent logs the same reason at start and keeps running."""
    cfg, context = start(agentd, module, tmp_path, "Backend=netlink\nSnapshotLifetime=0\n")
    with context as agent:
        assert "netlink sock_diag unavailable" in agent.log_text(), agent.log_text()
        for key in ("linux_status[tcp_status,LISTEN]", "linux_status[tcp_summary]"):
            result = ag.zabbix_get(agent.get_bin, cfg.port, key)
            assert not result.supported, f"{key}: a number under Backend=netlink: {result.raw!r}"
            assert QEMU_NETLINK_REFUSAL in (result.message or ""), result.raw
        info = json.loads(ag.zabbix_get(agent.get_bin, cfg.port, "linux_status[info]").value)
        assert (info["backend_configured"], info["backend_in_use"]) == ("netlink", "netlink"), info
        oracle.assert_agent_unharmed(agent)
