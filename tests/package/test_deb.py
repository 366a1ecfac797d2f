"""The .deb on pristine Debian systems, beside Debian's own agents.

Debian 12 (the whole life cycle, one system): a debootstrap minbase chroot (no Rust, no
compiler) with Debian's zabbix-agent 6.0 and zabbix-agent2 6.0 installed by apt; `dpkg -i` the
package; both agents started as their units start them, on Debian's configuration files
(untouched: checked); zabbix_agentd answers every state as `ss` does; an admin edits the
module configuration and the agent snippet; `dpkg -i` again (over itself) and an upgrade to a
newer revision keep both edits; `dpkg -r`; both agents start and no agent include names a
deleted file; `dpkg -i` again restores the module with the edits; `dpkg -r` + `dpkg --purge`
remove every trace.

Debian 11 (agent 5.0) and Debian 13 (agents 7.0): the same .deb installs, the same .so (same
bytes) loads and answers as `ss`, purge leaves the agents starting.

Agent 2 (Debian 12's 6.0, Debian 13's 7.0) is started at every step too: it must start with
the package installed, removed and purged. When Cargo.toml ships the agent 2 plugin, agent 2
must also use it (its log) and answer every state as `ss` while the package is installed, and
know no linux_status key once it is removed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import answers
from lib import system as sysmod
from lib import zbxd
from conftest import PLUGIN_PATH, PLUGIN_SNIPPET

SO = "/usr/lib/zabbix/modules/liblinux_status.so"
AGENTD_SNIPPET = "/etc/zabbix/zabbix_agentd.conf.d/linux_status.conf"
MODULE_CONF = "/etc/zabbix/linux_status.conf"
AGENTD_LOG = "/var/log/zabbix-agent/zabbix_agentd.log"
AGENT2_LOG = "/var/log/zabbix/zabbix_agent2.log"
DEBIAN_CONFIGS = ("/etc/zabbix/zabbix_agentd.conf", "/etc/zabbix/zabbix_agent2.conf")
# Snippets whose LoadModule=/plugin path would stop an agent if left naming a deleted file.
AGENT_SNIPPETS = (AGENTD_SNIPPET, PLUGIN_SNIPPET)
ADMIN_MODULE_CONF = "# edited by the admin\nBackend=netlink\nSnapshotLifetime=1000\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dpkg_status(system: sysmod.System) -> str:
    r = system.run("dpkg-query", "-W", "-f=${Status} ${Version}", "linux-status", check=False)
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def conffiles(system: sysmod.System) -> set[str]:
    out = system.run("dpkg-query", "-W", "-f=${Conffiles}", "linux-status").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def includes_naming(system: sysmod.System, needle: str) -> list[str]:
    """Files an agent includes (`*.conf` in its include folders) that mention `needle`."""
    hits = []
    for folder in ("/etc/zabbix/zabbix_agentd.conf.d", "/etc/zabbix/zabbix_agentd.d",
                   "/etc/zabbix/zabbix_agent2.d", "/etc/zabbix/zabbix_agent2.d/plugins.d"):
        d = system.path(folder)
        if d.is_dir():
            for conf in sorted(d.glob("*.conf")):
                if needle in conf.read_text():
                    hits.append(f"{folder}/{conf.name}")
    return hits


def fresh_start(system: sysmod.System, unit: str, log_file: str) -> tuple[sysmod.Service, str]:
    """Starts `unit` with its log emptied first: (the running service, this start's log lines
    once it answers agent.ping)."""
    log = system.path(log_file)
    if log.exists():
        log.write_text("")
    agent = sysmod.Service(system, unit).start()
    return agent, log.read_text(errors="replace")


def start_agentd(system: sysmod.System, with_module: bool) -> sysmod.Service:
    agent, text = fresh_start(system, "zabbix-agent", AGENTD_LOG)
    reply = zbxd.check(sysmod.AGENT_PORT, "linux_status[version]")
    if with_module:
        assert f"loaded modules: {SO}" in text, agent.describe()
        assert agent.argv[0] == "/usr/sbin/zabbix_agentd", agent.argv
    else:
        assert "liblinux_status" not in text, agent.describe()
        assert reply[0] == "notsupported", f"module still answering after removal: {reply}"
    return agent


def stop(agent: sysmod.Service) -> None:
    status = agent.stop()
    assert status == 0, f"{agent.unit} exited {status} on SIGTERM\n{agent.describe()}"


@functools.cache
def packaged_so_sha(deb: Path) -> str:
    """The module's bytes as the .deb carries them."""
    data = subprocess.run(
        ["sh", "-c", f"dpkg-deb --fsys-tarfile '{deb}' | tar -xO .{SO}"],
        check=True, capture_output=True,
    ).stdout
    assert data[:4] == b"\x7fELF", "no module in the .deb"
    return hashlib.sha256(data).hexdigest()


def check_agentd_answers(system: sysmod.System, label: str, version: str) -> None:
    """The installed module is the .deb's (same bytes on every release) and answers as ss."""
    assert sha256(system.path(SO)) == packaged_so_sha(Path(os.environ["LINUX_STATUS_DEB"]))
    agent = start_agentd(system, with_module=True)
    try:
        assert zbxd.check(sysmod.AGENT_PORT, "linux_status[version]") == ("value", version)
        answers.assert_match_ss(label)
    finally:
        stop(agent)


def check_agent2(system: sysmod.System, meta, installed: bool) -> None:
    """Agent 2 starts on Debian's configuration, whatever the package's state. With the
    package installed and the plugin shipped (Cargo.toml), it uses the plugin and answers as
    `ss`; otherwise it knows no linux_status key."""
    agent, text = fresh_start(system, "zabbix-agent2", AGENT2_LOG)
    try:
        version = zbxd.check(sysmod.AGENT_PORT, "linux_status[version]")
        if installed and meta.plugin:
            assert system.exists(PLUGIN_PATH)
            assert f"using plugin 'LinuxStatus' ({PLUGIN_PATH})" in text, agent.describe()
            assert version == ("value", meta.version), version
            answers.assert_match_ss(f"{system.name} agent 2 with the plugin")
        else:
            assert "LinuxStatus" not in text, agent.describe()
            assert version[0] == "notsupported", version
    finally:
        stop(agent)


def newer_revision(deb: Path, tmp: Path) -> Path:
    """The same package as revision -2 (what an upgrade installs), repacked with dpkg-deb."""
    tree = tmp / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    lines = []
    for line in control.read_text().splitlines():
        if line.startswith("Version: "):
            line = line.rsplit("-", 1)[0] + "-2"
        lines.append(line)
    control.write_text("\n".join(lines) + "\n")
    out = tmp / "linux-status-rev2.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)], check=True,
                   capture_output=True)
    return out


def test_bookworm_life_cycle(env, meta, scenario, tmp_path):
    with sysmod.System(env.bookworm, "debian12") as system:
        # Pristine: Debian's agents, no toolchain.
        for tool in ("cargo", "rustc", "gcc", "cc"):
            assert system.run("sh", "-c", f"command -v {tool}", check=False).returncode != 0, tool
        assert dpkg_status(system) == "unknown"
        pristine = {c: sha256(system.path(c)) for c in DEBIAN_CONFIGS}
        stop(start_agentd(system, with_module=False))
        check_agent2(system, meta, installed=False)

        system.copy_in(env.deb, "/tmp/linux-status.deb")
        system.run("dpkg", "-i", "/tmp/linux-status.deb")
        assert dpkg_status(system) == f"install ok installed {meta.version}-1"
        for dest in meta.deb_assets:
            assert system.exists(dest), f"{dest} not installed"
        etc = {d for d in meta.deb_assets if d.startswith("/etc/")}
        assert conffiles(system) == etc
        assert {c: sha256(system.path(c)) for c in DEBIAN_CONFIGS} == pristine, (
            "installing the package changed Debian's own agent configuration"
        )
        assert system.read(AGENTD_SNIPPET).strip().endswith(f"LoadModule={SO}")
        so_sha = sha256(system.path(SO))

        check_agentd_answers(system, "debian12 agent 6.0", meta.version)
        check_agent2(system, meta, installed=True)

        # The admin edits both configuration files; reinstalling and upgrading keep them.
        system.path(MODULE_CONF).write_text(ADMIN_MODULE_CONF)
        edited_snippet = "# the admin's note\n" + system.read(AGENTD_SNIPPET)
        system.path(AGENTD_SNIPPET).write_text(edited_snippet)
        system.run("dpkg", "-i", "/tmp/linux-status.deb")
        assert dpkg_status(system) == f"install ok installed {meta.version}-1"
        system.copy_in(newer_revision(env.deb, tmp_path), "/tmp/linux-status-rev2.deb")
        system.run("dpkg", "-i", "/tmp/linux-status-rev2.deb")
        assert dpkg_status(system) == f"install ok installed {meta.version}-2"
        assert system.read(MODULE_CONF) == ADMIN_MODULE_CONF
        assert system.read(AGENTD_SNIPPET) == edited_snippet
        # The admin's Backend=netlink is read (a bad file would stop the agent) and answers.
        check_agentd_answers(system, "debian12 agent 6.0 after upgrade, Backend=netlink", meta.version)

        # Removal: the module goes, both agents still start, no include names a deleted file.
        system.run("dpkg", "-r", "linux-status")
        assert dpkg_status(system).startswith("deinstall ok config-files")
        assert not system.exists(SO)
        assert includes_naming(system, "linux_status") == []
        assert includes_naming(system, "LoadModule") == []
        assert system.exists(MODULE_CONF), "dpkg -r must keep the admin's configuration"
        stop(start_agentd(system, with_module=False))
        check_agent2(system, meta, installed=False)
        assert {c: sha256(system.path(c)) for c in DEBIAN_CONFIGS} == pristine

        # Reinstall after removal: the module is back, with the admin's edits.
        system.run("dpkg", "-i", "/tmp/linux-status.deb")
        assert system.read(AGENTD_SNIPPET) == edited_snippet
        assert system.read(MODULE_CONF) == ADMIN_MODULE_CONF
        assert sha256(system.path(SO)) == so_sha
        check_agentd_answers(system, "debian12 agent 6.0 reinstalled", meta.version)
        check_agent2(system, meta, installed=True)

        # Remove, then purge: nothing of the package is left.
        system.run("dpkg", "-r", "linux-status")
        system.run("dpkg", "--purge", "linux-status")
        assert dpkg_status(system) == "unknown"
        for dest in meta.deb_assets:
            assert not system.exists(dest), f"{dest} left after purge"
        leftovers = system.run(
            "sh", "-c", "ls -d /etc/zabbix/*linux_status* /etc/zabbix/*/*linux_status* "
            "/etc/zabbix/*/*/*linux_status* /usr/share/linux-status /usr/share/doc/linux-status "
            "/var/lib/linux-status 2>/dev/null || true").stdout.split()
        assert leftovers == [], leftovers
        stop(start_agentd(system, with_module=False))
        check_agent2(system, meta, installed=False)
        assert {c: sha256(system.path(c)) for c in DEBIAN_CONFIGS} == pristine


@pytest.mark.parametrize("release", ["bullseye", "trixie"])
def test_other_releases(env, meta, scenario, release):
    """The same .deb (the same .so bytes) on Debian 11's agent 5.0 and Debian 13's 7.0."""
    base = {"bullseye": env.bullseye, "trixie": env.trixie}[release]
    line = {"bullseye": "5.0", "trixie": "7.0"}[release]
    with sysmod.System(base, release) as system:
        version = system.run("zabbix_agentd", "-V").stdout.splitlines()[0]
        assert f"(Zabbix) {line}." in version, version
        system.copy_in(env.deb, "/tmp/linux-status.deb")
        system.run("dpkg", "-i", "/tmp/linux-status.deb")
        check_agentd_answers(system, f"{release} agent {line}", meta.version)
        if system.exists("/usr/sbin/zabbix_agent2"):
            check_agent2(system, meta, installed=True)
        system.run("dpkg", "--purge", "linux-status")
        assert includes_naming(system, "linux_status") == []
        stop(start_agentd(system, with_module=False))
        if system.exists("/usr/sbin/zabbix_agent2"):
            check_agent2(system, meta, installed=False)
