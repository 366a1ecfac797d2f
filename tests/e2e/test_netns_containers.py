"""The network-namespace keys against REAL containers (issue 18, item 7): for each runtime
lib/containers.py starts here (podman with runc, systemd-nspawn, LXC, over the cached Debian
chroot), a container with a network namespace of its own builds a known table
(`containers.perl_table`: a listener, ESTABLISHED pairs, CLOSE_WAIT / FIN_WAIT2 pairs), and a
real zabbix_agentd (6.0 and 7.0) running as `nobody` is checked:

- `netns_discovery` has a row for it: `{#NETNS}` = the inode of the leader's
  /proc/<pid>/net/tcp, the runtime and container id parsed from the cgroup path the runtime
  really gave it (podman `/libpod_parent/libpod-<id>`, lxc `/lxc.payload.<name>`, nspawn
  `<cgroup>/payload`), that cgroup path;
- `netns_status` for every state and `netns_summary`, selected by the container id (prefix)
  and by `{#NETNS}`, exact against `nsenter -n -t <leader> ss -tan` taken before and after;
- once the container is stopped, both selectors are ZBX_NOTSUPPORTED saying it is gone.

A runtime that cannot start a container here is skipped with its exact error (probed once);
`test_some_runtime_starts_here` fails if none can, so an all-skipped run is never a pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lib import agent as ag
from lib import cgroups as cg
from lib import containers as ct
from lib import namespaces as nsl
from lib import scenario as sc

EXACT = "SnapshotLifetime=0\nNetnsTableInterval=0\n"
PORT = 30601
RUNTIME_NAME = {"podman": "podman", "nspawn": "systemd-nspawn", "lxc": "lxc"}


@pytest.fixture(scope="module")
def startable() -> dict[str, str | None]:
    """Per runtime: None if it starts a container here, else why not (its exact error)."""
    if cg.private_mount() is not None:
        reason = "cgroup v1 host: the runtimes put containers in cgroup v1 only"
        return dict.fromkeys(ct.RUNTIMES, reason)
    return {runtime: ct.probe(runtime) for runtime in ct.RUNTIMES}


def test_some_runtime_starts_here(startable):
    assert any(reason is None for reason in startable.values()), startable


@pytest.fixture(scope="module")
def agent(agentd, env, scenario_session):
    """After the suite's own scenario (`scenario_session`), which checks when built that its
    namespace holds nothing else: this agent's queries leave TIME_WAIT sockets there."""
    with nsl.nobody_agent(agentd, env, EXACT, "linux-status-netns-ct-") as running:
        yield running


def expected_container_id(container: ct.Container) -> str:
    """The id the pattern table gives for the cgroup path this runtime really produced."""
    if container.runtime == "podman":
        head, _, hex_id = container.cgroup.rpartition("/libpod-")
        assert head.endswith("/libpod_parent") or head == "/libpod_parent", container.cgroup
        return hex_id
    if container.runtime == "lxc":
        assert container.cgroup == f"/lxc.payload.{container.name}", container.cgroup
        return container.name
    parent, _, leaf = container.cgroup.rpartition("/")
    assert leaf == "payload", container.cgroup
    return parent.rpartition("/")[2]


@pytest.mark.parametrize("runtime", ct.RUNTIMES)
def test_a_real_containers_namespace_is_discovered_counted_and_gone(runtime, startable, agent):
    if startable[runtime] is not None:
        pytest.skip(f"{runtime} cannot start a container here: {startable[runtime]}")
    ask = lambda key: agent_get(agent, key)  # noqa: E731
    command, counts = ct.perl_table(PORT, pairs=3, half_closed=2)
    container = ct.start(runtime, command, host_network=False)
    try:
        seen = nsl.SeenNamespace(runtime, container.leader_pid, container.netns_id)
        assert container.netns_id != os.stat("/proc/self/net/tcp").st_ino
        sc.wait_until(lambda: seen.ss_counts() == counts, 30,
                      f"{runtime}'s container to build its table (nsenter ss)",
                      detail=lambda: str(seen.ss_counts()))
        # (a) discovery
        rows = json.loads(nsl.value(ask, "linux_status[netns_discovery]"))
        row = next((r for r in rows if r["{#NETNS}"] == str(container.netns_id)), None)
        assert row is not None, (container, rows)
        container_id = expected_container_id(container)
        assert row["{#NETNS.RUNTIME}"] == RUNTIME_NAME[runtime], row
        assert row["{#NETNS.CONTAINER}"] == container_id, row
        assert row["{#NETNS.CGROUP}"] == container.cgroup, row
        assert row["{#NETNS.HOST}"] == "0" and row["{#NETNS.AGENT}"] == "0", row
        assert os.stat(f"/proc/{row['{#NETNS.PID}']}/net/tcp").st_ino == container.netns_id
        # (b) exact counts, by container id (a prefix for podman's hex) and by {#NETNS}
        selectors = (container_id[:12] if runtime == "podman" else container_id,
                     str(container.netns_id))
        for selector in selectors:
            nsl.exact(seen, lambda: nsl.states_of(json.loads(
                nsl.value(ask, f"linux_status[netns_summary,{selector}]"))))
            nsl.exact(seen, lambda: {
                state: int(nsl.value(ask, f"linux_status[netns_status,{selector},{state}]"))
                for state in sc.KERNEL_STATES})
        assert seen.ss_counts() == counts
    finally:
        container.stop()
    # (c) gone: never a number
    assert not Path(f"/proc/{container.leader_pid}").exists() or \
        os.stat(f"/proc/{container.leader_pid}/net/tcp").st_ino != container.netns_id
    for selector in selectors:
        for key in (f"linux_status[netns_summary,{selector}]",
                    f"linux_status[netns_status,{selector},ESTABLISHED]"):
            result = ask(key)
            if result.supported and selector == str(container.netns_id):
                # Only if the kernel already reused the inode for a new namespace: then it is
                # that namespace's answer, whose process is not the container's.
                rows = json.loads(nsl.value(ask, "linux_status[netns_discovery]"))
                reused = next(r for r in rows if r["{#NETNS}"] == selector)
                assert reused["{#NETNS.CGROUP}"] != container.cgroup, reused
                continue
            assert not result.supported, (key, result.raw)
            assert "gone" in result.message, (key, result.raw)


def agent_get(agent, key: str) -> ag.ItemResult:
    return ag.zabbix_get(agent.get_bin, agent.cfg.port, key)
