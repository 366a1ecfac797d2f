"""Agent 2's plugin socket out of other users' reach, from the package (issue 16, finding 5).

Without PluginSocket agent 2 listens on /tmp/agent.plugin.sock, and any local user who binds
that path first stops agent 2 from starting (tests/agent2/test_plugin_bounds.py reproduces
it with the binaries). The package's linux-status-agent-includes therefore writes a generated
PluginSocket=/run/zabbix/agent.plugin.sock file beside the agent 2 snippet, but only where
that is safe: /run/zabbix a directory of the zabbix user that no one else may write, declared
by a tmpfiles.d line (so it is there again after a reboot), and agent 2's own files setting no
PluginSocket. Everywhere else agent 2 keeps its default and the install says why.

Checked on the pristine chroots with Debian's real agent 2 (6.0 on Debian 12, 7.0 on 13), run
as its unit runs it (user zabbix): where the conditions hold, agent 2 listens in /run/zabbix,
a squatter of another user on /tmp/agent.plugin.sock changes nothing, and the answers equal
`ss`; each refused condition leaves no file and names itself; removal and purge leave no file.
"""

from __future__ import annotations

import contextlib
import os
import socket

import pytest

import answers
from lib import system as sysmod
from lib import zbxd
from conftest import PLUGIN_SNIPPET
from test_deb import stop

TOOL = "/usr/sbin/linux-status-agent-includes"
AGENT2_CONF = "/etc/zabbix/zabbix_agent2.conf"
GENERATED = os.path.join(os.path.dirname(PLUGIN_SNIPPET), "linux_status_socket.conf")
RUN_SOCKET = "/run/zabbix/agent.plugin.sock"
TMP_SOCKET = "/tmp/agent.plugin.sock"
SQUATTER_UID = 65533  # no user of the chroot: "another local user"


def install(system: sysmod.System, env) -> str:
    system.copy_in(env.deb, "/tmp/linux-status.deb")
    r = system.run("dpkg", "-i", "/tmp/linux-status.deb")
    return r.stdout + r.stderr


def booted(system: sysmod.System) -> None:
    """/run as after a boot: what systemd-tmpfiles (and zabbix-agent2's postinst) creates."""
    sysmod.apply_tmpfiles(system)


def squat(system: sysmod.System) -> socket.socket:
    """Another user listening on agent 2's default plugin socket path first."""
    path = system.path(TMP_SOCKET)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    os.chown(path, SQUATTER_UID, SQUATTER_UID)
    return s


@contextlib.contextmanager
def agent2_running(system: sysmod.System):
    """Agent 2 started as its unit starts it; afterwards it must exit 0 on SIGTERM."""
    agent = sysmod.Service(system, "zabbix-agent2").start()
    try:
        yield agent
    finally:
        stop(agent)


def version_answers() -> bool:
    return zbxd.check(sysmod.AGENT_PORT, "linux_status[version]")[0] == "value"


def run_agent2(system: sysmod.System, label: str) -> None:
    """Agent 2 starts, uses the plugin on /run/zabbix's socket and answers as `ss`."""
    with agent2_running(system) as agent:
        assert system.path(RUN_SOCKET).is_socket(), (
            f"[{label}] no {RUN_SOCKET}\n{agent.describe()}")
        assert version_answers(), label
        answers.assert_match_ss(label)


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_socket_moves_to_run_zabbix(env, meta, scenario, release):
    """Where /run/zabbix is the agent user's, the package moves the socket there."""
    if not meta.plugin:
        pytest.fail("the package ships no agent 2 plugin (Cargo.toml): nothing to test")
    with sysmod.System(getattr(env, release), f"{release}-plugin-socket") as system:
        booted(system)
        out = install(system, env)
        assert f"plugin socket: {RUN_SOCKET}" in out, out
        text = system.read(GENERATED)
        assert f"PluginSocket={RUN_SOCKET}\n" in text, text
        check = system.run(TOOL, "check")
        assert (f"zabbix_agent2: plugin socket {RUN_SOCKET} ({GENERATED})"
                in check.stdout), check.stdout

        squatter = squat(system)
        try:
            run_agent2(system, f"{release} agent 2, {TMP_SOCKET} squatted by another user")
        finally:
            squatter.close()
            system.path(TMP_SOCKET).unlink()

        # Placing again (a trigger, the admin) changes nothing; removal takes the file away
        # and agent 2 starts (with no loadable plugin it opens no plugin socket at all).
        before = system.read(GENERATED)
        system.run(TOOL, "place")
        assert system.read(GENERATED) == before
        system.run("dpkg", "-r", "linux-status")
        assert not system.exists(GENERATED)
        with agent2_running(system) as agent:
            assert not system.exists(RUN_SOCKET), agent.describe()
        install(system, env)
        assert system.exists(GENERATED)
        system.run("dpkg", "--purge", "linux-status")
        assert not system.exists(GENERATED)


def test_default_kept_without_run_zabbix(env, meta, scenario):
    """No /run/zabbix at install (a chroot or container image: no systemd-tmpfiles ran):
    the default stays, the install says why, and agent 2 works; once /run/zabbix exists the
    next placing (a trigger, or the admin) moves the socket."""
    with sysmod.System(env.bookworm, "plugin-socket-no-run") as system:
        assert not system.exists("/run/zabbix")
        out = install(system, env)
        assert ("keeps its default plugin socket /tmp/agent.plugin.sock, which another local "
                "user can take: /run/zabbix is not a directory") in out, out
        assert not system.exists(GENERATED)
        check = system.run(TOOL, "check")
        assert "plugin socket /tmp/agent.plugin.sock (agent 2 default" in check.stdout
        with agent2_running(system) as agent:  # creates /run/zabbix
            assert system.path(TMP_SOCKET).is_socket(), agent.describe()
            assert version_answers()
        system.run(TOOL, "place")
        assert system.exists(GENERATED)
        run_agent2(system, "bookworm agent 2 after a later place")


def _refused(system: sysmod.System, env, reason: str) -> None:
    out = install(system, env)
    assert reason in out, out
    assert not system.exists(GENERATED)
    with agent2_running(system):
        assert version_answers()


def test_unsafe_run_zabbix_is_refused(env, meta, scenario):
    """A /run/zabbix others may write, or that is not the agent user's, is not used."""
    with sysmod.System(env.bookworm, "plugin-socket-unsafe") as system:
        booted(system)
        os.chmod(system.path("/run/zabbix"), 0o1777)
        _refused(system, env, "/run/zabbix has mode 1777: others may write in it")
        system.run("dpkg", "--purge", "linux-status")
        os.chmod(system.path("/run/zabbix"), 0o755)
        os.chown(system.path("/run/zabbix"), 0, 0)
        _refused(system, env, "/run/zabbix belongs to uid 0, not to zabbix")


def test_no_tmpfiles_line_is_refused(env, meta, scenario):
    """/run/zabbix right now, but nothing recreates it at boot: not used (agent 2 would not
    start after a reboot)."""
    with sysmod.System(env.bookworm, "plugin-socket-no-tmpfiles") as system:
        booted(system)
        for folder in ("/usr/lib/tmpfiles.d", "/etc/tmpfiles.d"):
            d = system.path(folder)
            for conf in d.glob("zabbix*.conf") if d.is_dir() else []:
                conf.unlink()
        _refused(system, env, "no tmpfiles.d line creates /run/zabbix at boot")


def test_admin_plugin_socket_wins(env, meta, scenario):
    """An admin's own PluginSocket: no generated file, no warning, `check` names theirs."""
    with sysmod.System(env.bookworm, "plugin-socket-admin") as system:
        booted(system)
        conf = system.path(AGENT2_CONF)
        conf.write_text(conf.read_text() + "PluginSocket=/run/zabbix/admin.sock\n")
        out = install(system, env)
        assert not system.exists(GENERATED)
        assert "plugin socket" not in out, out
        check = system.run(TOOL, "check")
        assert (f"plugin socket /run/zabbix/admin.sock ({AGENT2_CONF})"
                in check.stdout), check.stdout
        with agent2_running(system) as agent:
            assert system.path("/run/zabbix/admin.sock").is_socket(), agent.describe()
        # `check` prints the admin's value escaped and bounded: a terminal escape or a huge
        # value in their file is shown, never played or flooded.
        conf.write_text(conf.read_text() + "PluginSocket=/run/zabbix/\x1b[31mred" + "x" * 5000
                        + "\n")
        check = system.run(TOOL, "check")
        assert "\x1b" not in check.stdout and "/run/zabbix/^[[31mred" in check.stdout, check.stdout
        assert max(map(len, check.stdout.splitlines())) <= 600, check.stdout[:2000]
