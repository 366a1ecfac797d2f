"""Fixtures for the package tests: the built packages, pristine Debian systems, a known socket
table.

Run as root inside a private network namespace, after `scripts/package`, with the chroots of
`ls_chroot` (scripts/test exports all of it; see tests/package/setup.sh):

    unshare --net -- $PYTHON -m pytest -p no:cacheprovider -q tests/package

What the packages must contain is read from Cargo.toml's [package.metadata.deb] and
[package.metadata.generate-rpm] tables, the same lists scripts/package builds from: when the
agent 2 plugin's lines are switched on there, the plugin checks below turn on with them.
Missing variables or a shared namespace fail the tests; nothing is skipped.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

from lib import netns as netns_mod

REQUIRED_ENV = (
    "LINUX_STATUS_DEB",
    "LINUX_STATUS_RPM",
    "LS_CHROOT_BOOKWORM",
    "LS_CHROOT_BULLSEYE",
    "LS_CHROOT_TRIXIE",
)

PLUGIN_PATH = "/usr/sbin/zabbix-agent2-plugin/zabbix-agent2-plugin-linux-status"
PLUGIN_SNIPPET = "/etc/zabbix/zabbix_agent2.d/plugins.d/linux_status.conf"


class Meta:
    """What Cargo.toml says the packages hold."""

    def __init__(self) -> None:
        cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
        package = cargo["package"]
        self.version: str = package["version"]
        meta = package["metadata"]
        # destination -> source
        self.deb_assets = {
            "/" + dest.lstrip("/"): src for src, dest, _mode in meta["deb"]["assets"]
        }
        self.rpm_assets = {a["dest"]: a["source"] for a in meta["generate-rpm"]["assets"]}
        self.rpm_config = {
            a["dest"] for a in meta["generate-rpm"]["assets"] if a.get("config")
        }
        # The agent 2 plugin ships when Cargo.toml lists it (it must then be in both tables).
        self.plugin = PLUGIN_PATH in self.deb_assets
        assert self.plugin == (PLUGIN_PATH in self.rpm_assets), (
            "Cargo.toml lists the agent 2 plugin in only one of the package tables"
        )


@pytest.fixture(scope="session")
def meta() -> Meta:
    return Meta()


class Env:
    def __init__(self, values: dict[str, str]) -> None:
        self.deb = Path(values["LINUX_STATUS_DEB"])
        self.rpm = Path(values["LINUX_STATUS_RPM"])
        self.bookworm = values["LS_CHROOT_BOOKWORM"]
        self.bullseye = values["LS_CHROOT_BULLSEYE"]
        self.trixie = values["LS_CHROOT_TRIXIE"]


@pytest.fixture(scope="session")
def env() -> Env:
    values = netns_mod.require(REQUIRED_ENV)
    for name in ("LINUX_STATUS_DEB", "LINUX_STATUS_RPM"):
        if not os.path.isfile(values[name]):
            pytest.fail(f"{name}={values[name]} is not a file: run scripts/package", pytrace=False)
    return Env(values)


@pytest.fixture(scope="session")
def netns(env) -> None:
    cost = netns_mod.enter_private_namespace("unshare -n -- $PYTHON -m pytest -q tests/package")
    print(f"\n[package] {cost}")
    print(f"[package] {netns_mod.pin_time_wait_reuse()}")


@pytest.fixture(scope="session")
def scenario(scenario_session):
    """The known socket table (lib/fixtures.py), in this namespace, for the whole session."""
    return scenario_session
