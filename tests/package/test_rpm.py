"""The .rpm: its file list, flags, dependencies and scripts, and its install, reinstall,
upgrade and erase in an RPM database under a temporary root (Debian's `rpm` 4.18 with
`--root` on a throw-away copy of the Debian 12 chroot, so the erase scriptlet really runs in
a /bin/sh there; --nodeps because that root is not an RPM system: nothing in its RPM
database provides libc.so.6).

This is not a RHEL test: no RHEL system or Zabbix RPM agent runs here. What it proves is the
package's own behaviour under rpm: Zabbix's RPM layout, %config(noreplace) keeping an admin's
edits over a reinstall and an upgrade, and `rpm -e` leaving no `*.conf` that loads a deleted
file (an edited one is kept as NAME.rpmsave, which the agents' Include globs skip).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from lib import system as sysmod
from conftest import ROOT
from test_layouts import assert_loaded_once, assert_not_loaded, start_agentd_once

SNIPPET = "/etc/zabbix/zabbix_agentd.d/linux_status.conf"
MODULE_CONF = "/etc/zabbix/linux_status.conf"
SO = "/usr/lib64/zabbix/modules/liblinux_status.so"
# Where %post links the snippet on a system whose agent reads Debian's folder.
DEBIAN_LINK = "/etc/zabbix/zabbix_agentd.conf.d/linux_status.conf"


def rpm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["rpm", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"rpm {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def query(pkg: Path, *args: str) -> list[str]:
    return [ln for ln in rpm("-qp", *args, str(pkg)).stdout.splitlines() if ln.strip()]


def test_rpm_metadata(env, meta):
    name, version, release, arch = query(
        env.rpm, "--qf", "%{NAME}\n%{VERSION}\n%{RELEASE}\n%{ARCH}\n")
    assert (name, version, release, arch) == ("linux-status", meta.version, "1", "x86_64")
    assert env.rpm.name == f"linux-status-{meta.version}-1.x86_64.rpm"
    files = set(query(env.rpm, "-l"))
    assert files == set(meta.rpm_assets)
    # Zabbix's RPM layout.
    assert SO in files and SNIPPET in files
    # Config files: exactly the %config(noreplace) assets.
    flags = dict(
        line.rsplit(" ", 1) for line in query(env.rpm, "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]")
    )
    config = {f for f, fl in flags.items() if "c" in fl}
    assert config == meta.rpm_config
    assert all("n" in flags[f] for f in config), flags
    assert SNIPPET in config and MODULE_CONF in config
    # Three scriptlets: %post links the snippet into the folder the agent's configuration
    # includes when that is not zabbix_agentd.d/, %preun removes that link on erase, %postun
    # removes the package's empty folders on erase. The files themselves follow %config.
    scripts = rpm("-qp", "--scripts", str(env.rpm)).stdout
    want = "\n".join(
        f"{label} scriptlet (using /bin/sh):\n{(ROOT / 'packaging/rpm' / name).read_text()}"
        for label, name in (("postinstall", "post.sh"), ("preuninstall", "preun.sh"),
                            ("postuninstall", "postun.sh")))
    assert scripts.rstrip("\n") == want.rstrip("\n"), scripts
    # Dependencies: the C library at glibc 2.17 at most, and rpm features old rpms have.
    requires = query(env.rpm, "--requires")
    glibc = [tuple(map(int, v.split("."))) for r in requires for v in re.findall(r"GLIBC_([0-9.]+)", r)]
    assert glibc and max(glibc) <= (2, 17), requires
    libs = {r.split("(")[0] for r in requires if ".so" in r}
    assert libs <= {"libc.so.6", "libdl.so.2", "libpthread.so.0", "ld-linux-x86-64.so.2",
                    "libm.so.6", "librt.so.1"}, libs
    assert not [r for r in requires if "RichDependencies" in r], requires


@pytest.fixture()
def rpm_system(env):
    with sysmod.System(env.bookworm, "rpm-root") as system:
        assert not system.exists("/var/lib/rpm")
        rpm("--root", str(system.root), "--dbpath", "/var/lib/rpm", "--initdb")
        yield system


def in_root(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return rpm("--root", str(root), "--dbpath", "/var/lib/rpm", *args, check=check)


def confs_naming(root: Path, needle: str) -> list[str]:
    hits = []
    for folder in ("etc/zabbix/zabbix_agentd.d", "etc/zabbix/zabbix_agentd.conf.d",
                   "etc/zabbix/zabbix_agent2.d/plugins.d"):
        d = root / folder
        if d.is_dir():
            hits += [str(p) for p in d.glob("*.conf") if needle in p.read_text()]
    return hits


def test_rpm_install_upgrade_erase(env, meta, rpm_system, scenario):
    system = rpm_system
    root = system.root
    install = in_root(root, "-i", "--nodeps", str(env.rpm))
    assert in_root(root, "-q", "linux-status").stdout.strip() == f"linux-status-{meta.version}-1.x86_64"
    for dest in meta.rpm_assets:
        assert (root / dest.lstrip("/")).is_file(), dest
    assert (root / SNIPPET.lstrip("/")).read_text().strip().endswith(f"LoadModule={SO}")
    # This root's agent is Debian's, reading zabbix_agentd.conf.d/ only: %post linked the
    # snippet there, and that agent loads the .rpm's module once and answers.
    link = root / DEBIAN_LINK.lstrip("/")
    assert link.is_symlink() and os.readlink(link) == SNIPPET, install.stdout + install.stderr
    assert_loaded_once(system, so=SO)
    start_agentd_once(system, so=SO)
    verify = in_root(root, "-V", "--nodeps", "linux-status", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The admin edits both files; a reinstall and an upgrade keep them (no .rpmnew: the
    # packaged files did not change).
    edited_conf = "Backend=netlink\n"
    (root / MODULE_CONF.lstrip("/")).write_text(edited_conf)
    snippet = root / SNIPPET.lstrip("/")
    edited_snippet = "# the admin's note\n" + snippet.read_text()
    snippet.write_text(edited_snippet)
    in_root(root, "-U", "--replacepkgs", "--nodeps", str(env.rpm))
    rev2 = Path(os.environ["LINUX_STATUS_RPM_REV2"])
    in_root(root, "-U", "--nodeps", str(rev2))
    assert in_root(root, "-q", "linux-status").stdout.strip() == f"linux-status-{meta.version}-2.x86_64"
    assert (root / MODULE_CONF.lstrip("/")).read_text() == edited_conf
    assert snippet.read_text() == edited_snippet
    assert not list(root.glob("etc/zabbix/**/*.rpmnew"))

    # Erase: unedited files and the package's folders go; the edited ones become .rpmsave,
    # which no agent includes.
    in_root(root, "-e", "linux-status")
    assert in_root(root, "-q", "linux-status", check=False).returncode != 0
    for dest in meta.rpm_assets:
        assert not (root / dest.lstrip("/")).exists(), f"{dest} left after rpm -e"
    for d in ("/usr/share/linux-status", "/usr/share/doc/linux-status",
              "/usr/share/licenses/linux-status"):
        assert not (root / d.lstrip("/")).exists(), f"folder {d} left after rpm -e"
    assert confs_naming(root, "LoadModule") == [] and confs_naming(root, "linux_status") == []
    assert not link.is_symlink(), "rpm -e left the link %post made"
    assert_not_loaded(system)
    saved = sorted(str(p.relative_to(root)) for p in root.glob("etc/zabbix/**/*.rpmsave"))
    assert saved == ["etc/zabbix/linux_status.conf.rpmsave",
                     "etc/zabbix/zabbix_agentd.d/linux_status.conf.rpmsave"], saved
