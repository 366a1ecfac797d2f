"""Fixtures for the arm64 suite: the arm64 packages' binaries in Debian's arm64 agents, run
on this x86_64 host under qemu user emulation.

Run as root in a private network namespace, after `source scripts/setup`, `scripts/package`
and `source tests/arm64/setup.sh` (which set LS_ARM64_SYSROOT, LS_QEMU_AARCH64, ZABBIX_GET
and the four package paths):

    unshare --net -- $PYTHON -m pytest -p no:cacheprovider -q tests/arm64

The binaries under test are the ones in the arm64 .deb (unpacked with dpkg-deb, not the
build folder): what an arm64 host installs. The agents are Debian 12's arm64
`zabbix_agentd` and `zabbix_agent2` 6.0.14, run as `qemu-aarch64-static -L <root>` through a
two-line wrapper; zabbix_get is the host's. The end-to-end machinery is tests/e2e's
(namespace, known socket table checked against ss, agent driver, result parsing) and
tests/agent2's (agent 2 driver), imported. Missing variables or a shared namespace fail the
session; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lib import netns as netns_mod

REQUIRED_ENV = (
    "LS_ARM64_SYSROOT",
    "LS_QEMU_AARCH64",
    "ZABBIX_GET",
    "LINUX_STATUS_DEB",
    "LINUX_STATUS_RPM",
    "LINUX_STATUS_DEB_ARM64",
    "LINUX_STATUS_RPM_ARM64",
)
# Where the arm64 .deb puts the two binaries.
DEB_MODULE = "usr/lib/zabbix/modules/liblinux_status.so"
DEB_PLUGIN = "usr/sbin/zabbix-agent2-plugin/zabbix-agent2-plugin-linux-status"


class Env:
    def __init__(self) -> None:
        self.sysroot = Path(os.environ["LS_ARM64_SYSROOT"])
        self.qemu = os.environ["LS_QEMU_AARCH64"]
        self.get = os.environ["ZABBIX_GET"]
        self.deb = Path(os.environ["LINUX_STATUS_DEB"])
        self.rpm = Path(os.environ["LINUX_STATUS_RPM"])
        self.deb_arm64 = Path(os.environ["LINUX_STATUS_DEB_ARM64"])
        self.rpm_arm64 = Path(os.environ["LINUX_STATUS_RPM_ARM64"])


@pytest.fixture(scope="session", autouse=True)
def env() -> Env:
    netns_mod.require(
        REQUIRED_ENV,
        {"ZABBIX_GET": os.environ.get("ZABBIX_GET", ""), "LS_QEMU_AARCH64": os.environ.get("LS_QEMU_AARCH64", "")},
    )
    e = Env()
    for path in (e.deb, e.rpm, e.deb_arm64, e.rpm_arm64):
        if not path.is_file():
            pytest.fail(f"{path} missing: run scripts/package", pytrace=False)
    for binary in ("usr/sbin/zabbix_agentd", "usr/sbin/zabbix_agent2"):
        if not (e.sysroot / binary).is_file():
            pytest.fail(f"{e.sysroot / binary} missing: source tests/arm64/setup.sh", pytrace=False)
    return e


@pytest.fixture(scope="session", autouse=True)
def netns(env: Env) -> None:
    """A fresh private network namespace, loopback up, the host's module file hidden (the
    emulated agents read host paths that the arm64 root does not have: qemu -L looks in the
    root first, then on the host)."""
    cost = netns_mod.enter_private_namespace("unshare -n -- $PYTHON -m pytest -q tests/arm64")
    print(f"\n[arm64] {cost}")
    print(f"[arm64] {netns_mod.hide_host_module_config()}")


def emulated(wrapper: Path, env: Env, binary: Path) -> Path:
    """A two-line wrapper running `binary` (an aarch64 executable) under qemu-user with the
    arm64 root as its library root; `exec` keeps the pid, so the wrapper's pid is the
    emulated process's. The host's LD_LIBRARY_PATH (x86_64 Zabbix libraries) is dropped."""
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(
        f'#!/bin/sh\nexec env -u LD_LIBRARY_PATH {env.qemu} -L {env.sysroot} {binary} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="session")
def deb_root(env, tmp_path_factory) -> Path:
    """The arm64 .deb's files, unpacked."""
    root = tmp_path_factory.mktemp("deb-arm64")
    subprocess.run(["dpkg-deb", "-x", str(env.deb_arm64), str(root)], check=True, timeout=60)
    return root


@pytest.fixture(scope="session")
def module(deb_root) -> Path:
    return deb_root / DEB_MODULE


@pytest.fixture(scope="session")
def agentd(env, tmp_path_factory) -> str:
    """Debian's arm64 zabbix_agentd, emulated."""
    return str(emulated(tmp_path_factory.mktemp("bin") / "zabbix_agentd", env,
                        env.sysroot / "usr/sbin/zabbix_agentd"))


@pytest.fixture(scope="session")
def agent2_binary(env, tmp_path_factory) -> str:
    """Debian's arm64 zabbix_agent2, emulated."""
    return str(emulated(tmp_path_factory.mktemp("bin2") / "zabbix_agent2", env,
                        env.sysroot / "usr/sbin/zabbix_agent2"))


@pytest.fixture(scope="session")
def plugin(env, deb_root, tmp_path_factory) -> Path:
    """What Plugins.LinuxStatus.System.Path names: a wrapper running the packaged arm64
    plugin under qemu (agent 2 under qemu-user cannot exec an aarch64 file itself: qemu-user
    does not follow execve without a binfmt handler). Named like the plugin."""
    return emulated(tmp_path_factory.mktemp("plugin") / "zabbix-agent2-plugin-linux-status", env,
                    deb_root / DEB_PLUGIN)
