"""Per-cgroup counts (`cgroup_summary`, `cgroup_discovery`, `cgroup_status`) on every agent
line, against `ss -tan --cgroup`, with cgroups the test creates.

Two cgroups under the cgroup2 root (lib/cgroups.py), each with a process that moved itself
in and built a known table: A (`...-a.service`) a listener, ESTABLISHED pairs, CLOSE_WAIT /
FIN_WAIT2 pairs and TIME_WAIT sockets; B (`...-b.scope`) the same with other counts, plus
connections to A's listener. The kernel gives an accepted socket its listener's cgroup, so
A also holds the accepted halves of B's connections; TIME_WAIT sockets and pending
SYN_RECV requests (a TCP_DEFER_ACCEPT listener of A's) carry no cgroup id and are the
`no_cgroup` bucket. Checked:

- through `zabbix_agentd -t` run as `nobody` (no capability; it opens no socket, so ss taken
  around it is exact), in a nested network namespace holding only A's and B's sockets: the whole `cgroup_summary` equals ss's table path by path, the
  `no_cgroup` bucket included, and ss agrees with what the holders built;
- through the running agent (`zabbix_get`): the test cgroups' counts in `cgroup_summary`,
  every state of `cgroup_status` for both, `cgroup_discovery`'s rows (path, id = the
  directory's inode, unit);
- real containers of each runtime lib/containers.py starts here (podman, systemd-nspawn):
  a host-network container's sockets are its cgroup's; a private-network one's are absent;
- sockets whose cgroup was removed (the process moved out first) are `unresolved`;
- a cgroup that does not exist, or was removed, is ZBX_NOTSUPPORTED naming it; the /proc
  backend is ZBX_NOTSUPPORTED saying per-cgroup counts need netlink.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lib import agent as ag
from lib import cgroups as cg
from lib import containers as ct
from lib import scenario as sc


@pytest.fixture()
def two(agent, agent_ports):
    """In the suite's namespace, after the scenario and the agent: A and B without TIME_WAIT
    (they reset their sockets when stopped, so nothing is left for later tests)."""
    with cg.two_cgroups() as two:
        yield two


def staged_config(env, module_settings):
    """An agent configuration and module copy `nobody` can read (the agent's user)."""
    directory = Path(tempfile.mkdtemp(prefix="linux-status-cgroup-"))
    directory.chmod(0o755)
    module = ag.staged_for_nobody(env.so, directory / "module")
    cfg = ag.write_config(directory, module,
                          ag.free_port(avoid=(*sc.SCENARIO_PORTS, cg.PORT_A, cg.PORT_B)),
                          module_settings=module_settings)
    for path in (cfg.path, cfg.module_config):
        if path is not None:
            path.chmod(0o644)
    return directory, cfg


@pytest.fixture(scope="module")
def as_nobody(env):
    directory, cfg = staged_config(env, ag.EXACT_MODULE_SETTINGS)
    yield cfg
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def shipped_defaults(env):
    """As `as_nobody`, with no module configuration at all: the shipped defaults."""
    directory, cfg = staged_config(env, None)
    yield cfg
    shutil.rmtree(directory, ignore_errors=True)


def nobody_key(agentd, cfg, key: str) -> ag.ItemResult:
    proc = subprocess.run([*ag.AS_NOBODY, agentd, "-c", str(cfg.path), "-t", key],
                          capture_output=True, text=True, timeout=30, env=ag.agent_env(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ag.parse_item_line(proc.stdout.strip().splitlines()[0])


def test_the_whole_summary_equals_ss_for_an_unprivileged_agent(nested_two, agentd, as_nobody):
    def query() -> str:
        result = nobody_key(agentd, as_nobody, "linux_status[cgroup_summary]")
        assert result.supported and result.type == "t", result.raw
        return result.value

    got, table = cg.settled_summary(query)
    cg.check_whole_summary(got, table, nested_two, str(cg.mount()))
    result = nobody_key(agentd, as_nobody, "linux_status[cgroup_discovery]")
    cg.check_discovery(json.loads(result.value), nested_two)


def test_the_shipped_defaults_answer_the_same(nested_two, agentd, shipped_defaults):
    def query() -> str:
        result = nobody_key(agentd, shipped_defaults, "linux_status[cgroup_summary]")
        assert result.supported and result.type == "t", result.raw
        return result.value

    got, table = cg.settled_summary(query)
    cg.check_whole_summary(got, table, nested_two, str(cg.mount()))


def test_the_running_agent_answers_the_test_cgroups(two, agent, env):
    expected = two.expected()
    for _ in range(5):
        before = cg.ss_by_cgroup()
        result = ag.zabbix_get(env.get, agent.cfg.port, "linux_status[cgroup_summary]")
        assert result.supported, result.raw
        got = json.loads(result.value)
        if cg.ss_by_cgroup() == before:
            break
    for group in (two.a, two.b):
        assert cg.states_of(got["cgroups"][group.path]) == before[group.path] == expected[group.path]
        for state in sc.KERNEL_STATES:
            key = f"linux_status[cgroup_status,{group.path},{sc.KERNEL_TO_SS[state]}]"
            result = ag.zabbix_get(env.get, agent.cfg.port, key)
            assert result.supported, (key, result.raw)
            assert result.uint() == expected[group.path][state], key
    result = ag.zabbix_get(env.get, agent.cfg.port, "linux_status[cgroup_discovery]")
    assert result.supported, result.raw
    cg.check_discovery(json.loads(result.value), two)


def test_missing_and_removed_cgroups_are_errors(agent, env):
    with cg.Cgroup("kept"):  # the hierarchy has a child cgroup: cgroup v2 is in use
        key = "linux_status[cgroup_status,/ls-test-no-such-cgroup,LISTEN]"
        result = ag.zabbix_get(env.get, agent.cfg.port, key)
        assert not result.supported
        assert result.message.startswith(
            "No cgroup /ls-test-no-such-cgroup under the cgroup2 mount"), result.raw
        with cg.Cgroup("gone") as gone:
            key = f"linux_status[cgroup_status,{gone.path},LISTEN]"
            assert ag.zabbix_get(env.get, agent.cfg.port, key).uint() == 0
        result = ag.zabbix_get(env.get, agent.cfg.port, key)
        assert not result.supported and f"No cgroup {gone.path} " in result.message, result.raw
    bad = ag.zabbix_get(env.get, agent.cfg.port, "linux_status[cgroup_status,/a/../b,LISTEN]")
    assert not bad.supported and bad.message.startswith('Invalid cgroup "/a/../b"'), bad.raw


def test_without_a_cgroup2_mount_the_keys_say_cgroup_v1(agentd, as_nobody):
    """A cgroup v1 host, as the agent sees it: its mount namespace has no cgroup2 mount (the
    test unmounts it in a private mount namespace, then runs the agent as nobody)."""
    mounted = cg.mount()
    assert mounted is not None
    for key in ("cgroup_summary", "cgroup_discovery", "cgroup_status,/,LISTEN"):
        script = 'umount -l "$1"; shift; exec "$@"'
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
             str(mounted), *ag.AS_NOBODY, agentd, "-c", str(as_nobody.path), "-t",
             f"linux_status[{key}]"],
            capture_output=True, text=True, timeout=30, env=ag.agent_env(as_nobody))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = ag.parse_item_line(proc.stdout.strip().splitlines()[0])
        assert not result.supported, result.raw
        assert result.message == (
            "Cgroup v1: not available: no cgroup2 file system is mounted (/proc/self/mountinfo "
            "lists none); per-cgroup counts need cgroup v2 (a unified or hybrid hierarchy) and "
            "Linux 5.8 or later."), result.raw


def test_the_proc_backend_says_cgroups_need_netlink(agentd, env, tmp_path):
    cfg = ag.write_config(tmp_path, env.so, ag.free_port(avoid=sc.SCENARIO_PORTS),
                          module_settings="Backend=proc\nSnapshotLifetime=0\n")
    for key in ("cgroup_summary", "cgroup_discovery", "cgroup_status,/,LISTEN"):
        result = ag.test_key(agentd, cfg, f"linux_status[{key}]")
        assert not result.supported, result.raw
        assert result.message.startswith(
            "Per-cgroup counts need netlink sock_diag (INET_DIAG_CGROUP_ID): /proc/net/tcp has "
            "no cgroup column, and this agent reads /proc (Backend=proc)."), result.raw


@pytest.fixture(params=ct.RUNTIMES)
def runtime(request) -> str:
    return request.param


def test_a_host_network_containers_sockets_are_its_cgroups(runtime, agentd, as_nobody):
    """A real container (lib/containers.py: podman with runc, or systemd-nspawn, over the
    cached Debian chroot) sharing the agent's network namespace: the sockets it creates are
    attributed to the cgroup its runtime gave it; one with a network namespace of its own is
    not in the agent's answer at all (its table is another namespace's). In a nested
    namespace, so the TIME_WAIT sockets of the stopped containers stay out of the suite's."""
    if cg.private_mount() is not None:
        pytest.skip("cgroup v1 host: the runtimes put containers in cgroup v1 only; the "
                    "per-cgroup keys answer 'Cgroup v1: not available' there (tested above)")
    command, counts = ct.perl_table(cg.PORT_A, pairs=3, half_closed=2)
    private_command, private_counts = ct.perl_table(cg.PORT_B, pairs=1, half_closed=1)
    with cg.nested_netns():
        shared = ct.start(runtime, command, host_network=True)
        private = None
        try:
            private = ct.start(runtime, private_command, host_network=False)
            assert shared.netns_inode == os.stat("/proc/self/ns/net").st_ino
            assert private.netns_inode != shared.netns_inode
            sc.wait_until(lambda: cg.ss_by_cgroup().get(shared.cgroup) == counts, 30,
                          f"{runtime}'s container to build its table in {shared.cgroup}",
                          detail=lambda: str(cg.ss_by_cgroup()))
            sc.wait_until(lambda: cg.ss_by_cgroup(private.leader_pid).get(private.cgroup)
                          == private_counts, 30, "the private container's table (nsenter ss)",
                          detail=lambda: str(cg.ss_by_cgroup(private.leader_pid)))

            def query() -> str:
                result = nobody_key(agentd, as_nobody, "linux_status[cgroup_summary]")
                assert result.supported, result.raw
                return result.value

            got, table = cg.settled_summary(query)
            assert cg.states_of(got["cgroups"][shared.cgroup]) == table[shared.cgroup] == counts
            assert private.cgroup not in got["cgroups"], got
            discovery = nobody_key(agentd, as_nobody, "linux_status[cgroup_discovery]")
            rows = {row["{#CGROUP}"]: row for row in json.loads(discovery.value)}
            assert rows[shared.cgroup]["{#CGROUP.ID}"] == str(
                (cg.mount() / shared.cgroup.lstrip("/")).stat().st_ino)
            for state in ("ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT2", "LISTEN"):
                key = f"linux_status[cgroup_status,{shared.cgroup},{state}]"
                assert nobody_key(agentd, as_nobody, key).uint() == counts[state], key
        finally:
            shared.stop()
            if private is not None:
                private.stop()


def test_sockets_of_a_removed_cgroup_are_unresolved_never_another_cgroups(agentd, as_nobody):
    """A process leaves its cgroup, which is then removed while the sockets it created live
    on (they keep the dead cgroup's id): they are counted in `unresolved`, no path is made
    up for them, and ss cannot name it either."""
    with cg.nested_netns(), cg.Cgroup("kept"):  # cgroup v2 stays in use on this host
        group = cg.Cgroup("removed")
        holder = cg.SocketHolder(group, cg.PORT_A, estab=2, close_wait=1)
        try:
            (group.root / "cgroup.procs").write_text(str(holder.proc.pid))
            group.remove()
            def query() -> str:
                result = nobody_key(agentd, as_nobody, "linux_status[cgroup_summary]")
                assert result.supported, result.raw
                return result.value

            got, table = cg.settled_summary(query)
            assert group.path not in got["cgroups"]
            expected = dict.fromkeys(sc.KERNEL_STATES, 0)
            expected.update(holder.counts)
            assert got["unresolved_ids"] == 1, got
            assert cg.states_of(got["unresolved"]) == expected
            named = [path for path in table if path is not None]
            assert len(named) == 1 and not named[0].startswith("/"), table
            assert table[named[0]] == expected
        finally:
            holder.stop()
            group.remove()
