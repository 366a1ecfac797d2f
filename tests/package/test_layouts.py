"""The .deb on both configuration layouts: Debian's and Zabbix's own packages'.

Debian's zabbix-agent reads /etc/zabbix/zabbix_agentd.conf.d/*.conf; the agent from Zabbix's
own repository reads /etc/zabbix/zabbix_agentd.d/*.conf (its packaging appends
`Include=/etc/zabbix/zabbix_agentd.d/*.conf` after the stock file's `# Include=` line, and ships
no zabbix_agentd.conf.d). Agent 2 reads zabbix_agent2.d/*.conf and zabbix_agent2.d/plugins.d/*.conf
in both. Zabbix's layout is reproduced here on the pristine chroots: Debian's own agent binary,
its zabbix_agentd.conf rewritten the way Zabbix's packages write theirs.

What is checked, independently of the package's own linux-status-agent-includes: the files the
agent reads (its configuration and what its Include= lines match, parsed here in Python) hold
exactly one line loading linux_status, in every state; the agent logs the module as loaded and
answers, agent 2 uses the plugin; removal leaves no line loading it, purge leaves nothing of the
package. Also: a dpkg trigger places the snippet when the agent's package changes its
configuration file after linux-status was installed, and upgrades from 0.2.0's package (its
maintainer scripts in fixtures/deb-0.2.0, its file layout) in both layouts.

0.2.0's package fails test_zabbix_layout (the module is not loaded: the snippet sits in a
folder that agent never reads).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lib import system as sysmod
from lib import zbxd
from conftest import PLUGIN_PATH, PLUGIN_SNIPPET, ROOT
from test_deb import (fresh_start, AGENTD_LOG, AGENTD_SNIPPET, SO, check_agent2, check_agentd_answers,
                      dpkg_status, stop)

AGENTD_CONF = "/etc/zabbix/zabbix_agentd.conf"
AGENT2_CONF = "/etc/zabbix/zabbix_agent2.conf"
ZABBIX_DIR = "/etc/zabbix/zabbix_agentd.d"
DEBIAN_DIR = "/etc/zabbix/zabbix_agentd.conf.d"
LINK = f"{ZABBIX_DIR}/linux_status.conf"
TOOL = "/usr/sbin/linux-status-agent-includes"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# --- what an agent reads, parsed here ---------------------------------------------------------

def _resolve(system: sysmod.System, inside: str) -> str:
    """`inside` with symlinks resolved within the system (absolute targets stay in it)."""
    for _ in range(40):
        p = system.path(inside)
        if not p.is_symlink():
            return os.path.normpath(inside)
        target = os.readlink(p)
        inside = target if target.startswith("/") else os.path.join(os.path.dirname(inside), target)
    raise AssertionError(f"symlink loop at {inside}")


def read_files(system: sysmod.System, config: str) -> list[str]:
    """The files the agent reads: `config`, then what each Include= matches (a folder: every
    regular file in it; a pattern: the matching names; relative values against the
    configuration's folder), symlinks resolved, dangling ones skipped."""
    out = [config]
    base = os.path.dirname(config)
    for raw in system.read(config).splitlines():
        m = re.match(r"\s*Include\s*=\s*(.*?)\s*$", raw)
        if not m or not m.group(1):
            continue
        value = m.group(1)
        if not value.startswith("/"):
            value = os.path.normpath(os.path.join(base, value))
        if value.endswith("/") or system.path(value).is_dir():
            folder, pattern = value.rstrip("/"), "*"
        else:
            folder, pattern = os.path.dirname(value), os.path.basename(value)
        d = system.path(folder)
        if not d.is_dir():
            continue
        for name in sorted(os.listdir(d)):
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            real = _resolve(system, f"{folder}/{name}")
            if system.path(real).is_file():
                out.append(real)
    return out


def loading_lines(system: sysmod.System, config: str, key: str) -> list[str]:
    """Every `key=` line naming linux_status in the files the agent reads ("file: value")."""
    hits = []
    for f in read_files(system, config):
        for raw in system.read(f).splitlines():
            m = re.match(rf"\s*{re.escape(key)}\s*=\s*(.*?)\s*$", raw)
            if m and re.search(r"linux[-_]status", m.group(1)):
                hits.append(f"{f}: {m.group(1)}")
    return hits


def assert_loaded_once(system: sysmod.System, so: str = SO) -> None:
    lines = loading_lines(system, AGENTD_CONF, "LoadModule")
    assert [ln.split(": ", 1)[1] for ln in lines] == [so], (
        f"[{system.name}] zabbix_agentd must read exactly one LoadModule={so}: {lines}")
    if system.exists(AGENT2_CONF) and system.exists(PLUGIN_SNIPPET):
        lines = loading_lines(system, AGENT2_CONF, "Plugins.LinuxStatus.System.Path")
        assert [ln.split(": ", 1)[1] for ln in lines] == [PLUGIN_PATH], (
            f"[{system.name}] agent 2 must read exactly one plugin path: {lines}")


def assert_not_loaded(system: sysmod.System) -> None:
    assert loading_lines(system, AGENTD_CONF, "LoadModule") == []
    if system.exists(AGENT2_CONF):
        assert loading_lines(system, AGENT2_CONF, "Plugins.LinuxStatus.System.Path") == []


# --- Zabbix's layout ---------------------------------------------------------------------------

def zabbix_agentd_conf(debian_conf: str) -> str:
    """Debian's zabbix_agentd.conf as Zabbix's packages write theirs: Debian's active Include=
    lines gone, `Include=/etc/zabbix/zabbix_agentd.d/*.conf` appended after the stock
    `# Include=` line (Zabbix's spec: sed -e '/^# Include=$/a \\nInclude=...')."""
    out, done = [], False
    for line in debian_conf.splitlines():
        if re.match(r"\s*Include\s*=", line):
            continue
        out.append(line)
        if line == "# Include=" and not done:
            out += ["", f"Include={ZABBIX_DIR}/*.conf"]
            done = True
    assert done, "no '# Include=' line in Debian's zabbix_agentd.conf"
    return "\n".join(out) + "\n"


def to_zabbix_layout(system: sysmod.System) -> None:
    conf = system.path(AGENTD_CONF)
    conf.write_text(zabbix_agentd_conf(conf.read_text()))
    system.path(ZABBIX_DIR).mkdir(exist_ok=True)
    shutil.rmtree(system.path(DEBIAN_DIR))  # Zabbix's package has none (empty in the chroot)
    assert loading_lines(system, AGENTD_CONF, "LoadModule") == []


def start_agentd_once(system: sysmod.System, so: str = SO) -> None:
    """zabbix_agentd starts, logs the module loaded and answers linux_status[version]."""
    agent, text = fresh_start(system, "zabbix-agent", AGENTD_LOG)
    try:
        assert f"loaded modules: {so}" in text, agent.describe()
        reply = zbxd.check(sysmod.AGENT_PORT, "linux_status[version]")
        assert reply[0] == "value", reply
    finally:
        stop(agent)


def start_agentd_without(system: sysmod.System) -> None:
    agent, text = fresh_start(system, "zabbix-agent", AGENTD_LOG)
    try:
        assert "liblinux_status" not in text, agent.describe()
        reply = zbxd.check(sysmod.AGENT_PORT, "linux_status[version]")
        assert reply[0] == "notsupported", reply
    finally:
        stop(agent)


def leftovers(system: sysmod.System) -> list[str]:
    return system.run(
        "sh", "-c", "ls -d /etc/zabbix/*linux_status* /etc/zabbix/*/*linux_status* "
        "/etc/zabbix/*/*/*linux_status* /usr/share/linux-status /usr/share/doc/linux-status "
        f"/var/lib/linux-status {TOOL} 2>/dev/null || true").stdout.split()


RELEASES = {"bookworm": "6.0", "bullseye": "5.0", "trixie": "7.0"}


@pytest.mark.parametrize("release", list(RELEASES))
def test_zabbix_layout(env, meta, scenario, release):
    """Install, answer, remove, reinstall, purge on Zabbix's layout."""
    base = getattr(env, release)
    with sysmod.System(base, f"{release}-zabbix-layout") as system:
        to_zabbix_layout(system)
        system.copy_in(env.deb, "/tmp/linux-status.deb")
        r = system.run("dpkg", "-i", "/tmp/linux-status.deb")
        assert system.path(LINK).is_symlink(), f"no {LINK}\n{r.stdout}{r.stderr}"
        assert os.readlink(system.path(LINK)) == AGENTD_SNIPPET
        assert_loaded_once(system)
        assert system.run(TOOL, "check").returncode == 0
        check_agentd_answers(system, f"{release} agent {RELEASES[release]}, Zabbix's layout",
                             meta.version)
        has_agent2 = system.exists("/usr/sbin/zabbix_agent2")
        if has_agent2:
            check_agent2(system, meta, installed=True)

        # Placing again (the trigger, an admin's run) changes nothing.
        system.run(TOOL, "place")
        system.run("dpkg", "-i", "/tmp/linux-status.deb")
        assert_loaded_once(system)

        system.run("dpkg", "-r", "linux-status")
        assert not system.exists(LINK)
        assert_not_loaded(system)
        start_agentd_without(system)
        if has_agent2:
            check_agent2(system, meta, installed=False)

        system.run("dpkg", "-i", "/tmp/linux-status.deb")
        assert_loaded_once(system)
        start_agentd_once(system)

        system.run("dpkg", "--purge", "linux-status")
        assert dpkg_status(system) == "unknown"
        assert leftovers(system) == []
        # The folder dpkg created for the snippet (Debian's zabbix-agent, still installed
        # under the rewritten configuration, owns it too: with Zabbix's agent it goes).
        assert not system.exists(DEBIAN_DIR) or os.listdir(system.path(DEBIAN_DIR)) == []
        start_agentd_without(system)


def test_debian_layout_links_nothing(env, meta):
    """Debian's layout: the snippet's own folder is read, so no link is made anywhere."""
    with sysmod.System(env.bookworm, "debian-layout") as system:
        system.copy_in(env.deb, "/tmp/linux-status.deb")
        system.run("dpkg", "-i", "/tmp/linux-status.deb")
        links = system.run("find", "/etc/zabbix", "-type", "l").stdout.split()
        assert links == [], links
        assert_loaded_once(system)
        check = system.run(TOOL, "check")
        assert check.returncode == 0 and "reads 1 line(s)" in check.stdout, check.stdout
        # A configuration reading both folders still reads the module once: no link.
        conf = system.path(AGENTD_CONF)
        conf.write_text(conf.read_text() + f"Include={ZABBIX_DIR}/*.conf\n")
        system.path(ZABBIX_DIR).mkdir()
        system.run(TOOL, "place")
        assert not system.exists(LINK)
        assert_loaded_once(system)


def test_no_include_is_reported(env, meta):
    """A configuration including no folder: nothing placed, the install says why."""
    with sysmod.System(env.bookworm, "no-include") as system:
        conf = system.path(AGENTD_CONF)
        conf.write_text("".join(ln + "\n" for ln in conf.read_text().splitlines()
                                if not re.match(r"\s*Include\s*=", ln)))
        system.copy_in(env.deb, "/tmp/linux-status.deb")
        r = system.run("dpkg", "-i", "/tmp/linux-status.deb")
        assert "includes no folder for linux_status.conf" in r.stderr, r.stderr
        assert system.run("find", "/etc/zabbix", "-type", "l").stdout.split() == []
        assert system.run(TOOL, "check", check=False).returncode == 1


def test_admin_copy_is_not_doubled(env, meta, netns):
    """An agent already loading linux_status from a file of the admin's (the 0.2.0-era
    workaround: a copy in zabbix_agentd.d/ under another name): no second line is added."""
    with sysmod.System(env.bookworm, "admin-copy") as system:
        to_zabbix_layout(system)
        system.path(f"{ZABBIX_DIR}/zz-module.conf").write_text(f"LoadModule={SO}\n")
        system.copy_in(env.deb, "/tmp/linux-status.deb")
        r = system.run("dpkg", "-i", "/tmp/linux-status.deb")
        assert "already loads linux_status" in r.stderr, r.stderr
        assert not system.exists(LINK)
        assert_loaded_once(system)
        start_agentd_once(system)


# --- an agent package changing its configuration later: the dpkg trigger ----------------------

def repack_installed(system: sysmod.System, package: str, tmp: Path, edit) -> Path:
    """The installed `package` rebuilt as a .deb from its files (dpkg -L), a newer version,
    with `edit(tree)` applied: what a package from another repository replacing it looks like
    to dpkg. No maintainer scripts (its user and folders exist already)."""
    tree = tmp / f"{package}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    for inside in system.run("dpkg", "-L", package).stdout.splitlines():
        src = system.path(inside)
        if not inside.startswith("/") or inside == "/.":
            continue
        dest = tree / inside.lstrip("/")
        # Its folders too (dpkg removes an old package's empty folders the new one lacks,
        # such as /var/log/zabbix-agent); merged-/usr links such as /lib come with the system.
        if src.is_dir():
            if not src.is_symlink():
                dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dest)
        elif src.is_file():
            shutil.copy2(src, dest)
    fields = system.run("dpkg-query", "-W", "-f=${Version}\n${Architecture}\n${Maintainer}\n"
                        "${Depends}\n", package).stdout.splitlines()
    version, arch, maintainer, depends = (fields + [""] * 4)[:4]
    control = (f"Package: {package}\nVersion: {version}+relayout1\nArchitecture: {arch}\n"
               f"Maintainer: {maintainer}\n")
    if depends:
        control += f"Depends: {depends}\n"
    control += "Description: test repack with another configuration layout\n"
    (tree / "DEBIAN/control").write_text(control)
    conffiles = system.run("dpkg-query", "-W", "-f=${Conffiles}", package).stdout
    (tree / "DEBIAN/conffiles").write_text(
        "".join(ln.split()[0] + "\n" for ln in conffiles.splitlines() if ln.strip()))
    edit(tree)
    out = tmp / f"{package}-relayout.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)], check=True,
                   capture_output=True)
    return out


def test_trigger_when_the_agent_changes_layout(env, meta, netns, tmp_path):
    """linux-status installed on Debian's layout, then the agent replaced by a package writing
    Zabbix's zabbix_agentd.conf: dpkg runs linux-status's trigger, which links the snippet."""
    with sysmod.System(env.bookworm, "trigger") as system:
        system.copy_in(env.deb, "/tmp/linux-status.deb")
        system.run("dpkg", "-i", "/tmp/linux-status.deb")
        assert not system.exists(LINK)

        def zabbix_style(tree: Path) -> None:
            # Zabbix's package ships zabbix_agentd.conf as a conffile (Debian's writes it
            # with ucf) and has a zabbix_agentd.d/ folder.
            (tree / ZABBIX_DIR.lstrip("/")).mkdir(parents=True)
            conf = tree / AGENTD_CONF.lstrip("/")
            conf.write_text(zabbix_agentd_conf(system.read(AGENTD_CONF)))
            with open(tree / "DEBIAN/conffiles", "a") as f:
                f.write(AGENTD_CONF + "\n")

        agent = repack_installed(system, "zabbix-agent", tmp_path, zabbix_style)
        system.copy_in(agent, "/tmp/zabbix-agent-relayout.deb")
        # The file on disk is Debian's: dpkg would ask; the admin takes the package's.
        r = system.run("dpkg", "-i", "--force-confnew", "/tmp/zabbix-agent-relayout.deb")
        assert "Processing triggers for linux-status" in r.stdout, r.stdout
        assert f"Include={ZABBIX_DIR}/*.conf" in system.read(AGENTD_CONF)
        assert system.path(LINK).is_symlink(), r.stdout + r.stderr
        assert_loaded_once(system)
        start_agentd_once(system)
        # Removing linux-status removes the link too.
        system.run("dpkg", "--purge", "linux-status")
        assert leftovers(system) == []
        start_agentd_without(system)


# --- upgrades from 0.2.0's package -------------------------------------------------------------

def deb_0_2_0(deb: Path, tmp: Path) -> Path:
    """0.2.0's package, rebuilt from this one: the same binaries and files minus
    linux-status-agent-includes, 0.2.0's preinst and postrm (fixtures/deb-0.2.0), no postinst,
    prerm or triggers, and an older version (VERSION-0) so that this package upgrades it."""
    tree = tmp / "tree-0.2.0"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    os.remove(tree / TOOL.lstrip("/"))
    for name in ("postinst", "prerm", "triggers"):
        os.remove(tree / "DEBIAN" / name)
    for name in ("preinst", "postrm"):
        shutil.copy2(FIXTURES / "deb-0.2.0" / name, tree / "DEBIAN" / name)
    control = tree / "DEBIAN/control"
    control.write_text(re.sub(r"(?m)^Version: (.*)-1$", r"Version: \1-0", control.read_text()))
    out = tmp / "linux-status-0.2.0.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)], check=True,
                   capture_output=True)
    return out


def test_upgrade_from_0_2_0_debian_layout(env, meta, netns, tmp_path):
    old = deb_0_2_0(env.deb, tmp_path)
    with sysmod.System(env.bookworm, "upgrade-debian") as system:
        system.copy_in(old, "/tmp/old.deb")
        system.copy_in(env.deb, "/tmp/new.deb")
        system.run("dpkg", "-i", "/tmp/old.deb")
        assert dpkg_status(system) == f"install ok installed {meta.version}-0"
        edited = "# the admin's note\n" + system.read(AGENTD_SNIPPET)
        system.path(AGENTD_SNIPPET).write_text(edited)
        system.run("dpkg", "-i", "/tmp/new.deb")
        assert dpkg_status(system) == f"install ok installed {meta.version}-1"
        assert system.read(AGENTD_SNIPPET) == edited
        assert system.run("find", "/etc/zabbix", "-type", "l").stdout.split() == []
        assert_loaded_once(system)
        start_agentd_once(system)

        # 0.2.0 removed (its snippets set aside as NAME.dpkg-remove), then this one installed:
        # the admin's edit comes back, nothing is read twice, purge cleans both schemes.
        system.run("dpkg", "--purge", "linux-status")
        system.run("dpkg", "-i", "/tmp/old.deb")
        system.path(AGENTD_SNIPPET).write_text(edited)
        system.run("dpkg", "-r", "linux-status")
        assert system.exists(AGENTD_SNIPPET + ".dpkg-remove")
        system.run("dpkg", "-i", "/tmp/new.deb")
        assert system.read(AGENTD_SNIPPET) == edited
        assert not system.exists(AGENTD_SNIPPET + ".dpkg-remove")
        assert_loaded_once(system)
        start_agentd_once(system)
        system.run("dpkg", "-r", "linux-status")
        assert_not_loaded(system)
        system.run("dpkg", "--purge", "linux-status")
        assert leftovers(system) == []


def test_upgrade_from_0_2_0_zabbix_layout(env, meta, netns, tmp_path):
    """0.2.0 on Zabbix's layout: installed, never loaded (finding 6). The upgrade loads it,
    once."""
    old = deb_0_2_0(env.deb, tmp_path)
    with sysmod.System(env.bookworm, "upgrade-zabbix") as system:
        to_zabbix_layout(system)
        system.copy_in(old, "/tmp/old.deb")
        system.copy_in(env.deb, "/tmp/new.deb")
        system.run("dpkg", "-i", "/tmp/old.deb")
        assert loading_lines(system, AGENTD_CONF, "LoadModule") == [], "0.2.0 loaded after all?"
        start_agentd_without(system)
        system.run("dpkg", "-i", "/tmp/new.deb")
        assert system.path(LINK).is_symlink()
        assert_loaded_once(system)
        start_agentd_once(system)
        system.run("dpkg", "--purge", "linux-status")
        assert leftovers(system) == []


def test_fixture_scripts_are_0_2_0s():
    """fixtures/deb-0.2.0 holds 0.2.0's maintainer scripts: the set-aside scheme this package
    must still undo (NAME.dpkg-remove beside the snippet)."""
    postrm = (FIXTURES / "deb-0.2.0/postrm").read_text()
    assert 'mv -f "$f" "$f.dpkg-remove"' in postrm
    assert (ROOT / "packaging/debian/preinst").read_text().count(".dpkg-remove") >= 1
