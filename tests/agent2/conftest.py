"""Fixtures for the agent 2 suite: the linux_status plugin in real agent 2 binaries.

Run as root in a private network namespace, after `source scripts/setup` (which sets
ZABBIX_AGENT2, LS_AGENT2_70_CHROOT, ZABBIX_GET) and `cargo build --release`:

    export LINUX_STATUS_AGENT2_PLUGIN=$PWD/target/release/zabbix-agent2-plugin-linux-status
    unshare --net -- $PYTHON -m pytest -p no:cacheprovider -q tests/agent2

The suite reuses the end-to-end machinery (tests/e2e: the private namespace, the known
socket table checked against ss, result parsing) and the robustness suite's passive-check
client and hostile key generator (tests/robustness). Every test runs on both agent lines
(6.0.14 on the host, 7.0.22 in the trixie chroot) unless it says otherwise. Missing
variables or a shared namespace fail the session; nothing is skipped.

The suite process makes itself a child subreaper: a plugin process that outlives its agent
is re-parented to the suite (not to init), which can then see it and collect it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from lib import agent as ag
from lib import netns as netns_mod
from lib import scenario as sc

from lib import agent2 as a2
from lib import fixtures

REQUIRED_ENV = ("LINUX_STATUS_AGENT2_PLUGIN", "ZABBIX_AGENT2", "LS_AGENT2_70_CHROOT", "ZABBIX_GET")
PR_SET_CHILD_SUBREAPER = 36
# The exact Zabbix releases this suite is about.
LINE_VERSIONS = {"6.0": "6.0.14", "7.0": "7.0.22"}


class Env:
    def __init__(self) -> None:
        self.plugin = Path(os.environ["LINUX_STATUS_AGENT2_PLUGIN"])
        self.get = os.environ["ZABBIX_GET"]
        chroot = os.environ["LS_AGENT2_70_CHROOT"]
        self.lines = {
            "6.0": a2.Line("6.0", os.environ["ZABBIX_AGENT2"]),
            "7.0": a2.Line("7.0", "/usr/sbin/zabbix_agent2", chroot=chroot),
        }


@pytest.fixture(scope="session", autouse=True)
def env() -> Env:
    netns_mod.require(
        REQUIRED_ENV,
        {
            name: os.environ.get(name, "")
            for name in ("LINUX_STATUS_AGENT2_PLUGIN", "ZABBIX_AGENT2", "ZABBIX_GET")
        },
    )
    chroot = Path(os.environ["LS_AGENT2_70_CHROOT"])
    if not (chroot / "usr/sbin/zabbix_agent2").is_file():
        pytest.fail(f"LS_AGENT2_70_CHROOT={chroot} has no usr/sbin/zabbix_agent2", pytrace=False)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.fail(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    return Env()


@pytest.fixture(scope="session", autouse=True)
def netns(env) -> None:
    cost = netns_mod.enter_private_namespace(
        'unshare --net -- "$PYTHON" -m pytest -p no:cacheprovider -q tests/agent2'
    )
    print(f"\n[agent2] {cost}")
    print(f"[agent2] {netns_mod.pin_time_wait_reuse()}")


def new_port() -> int:
    """lib/fixtures.py's new_port(), never agent 2's default 10050."""
    return fixtures.new_port(avoid=(10050,))


@pytest.fixture(scope="session", params=list(LINE_VERSIONS))
def line(request, env, tmp_path_factory) -> a2.Line:
    """One agent line, checked to be the exact release this suite is about."""
    chosen = env.lines[request.param]
    version = a2.version_of(chosen, env.plugin, tmp_path_factory.mktemp("version"))
    assert version == LINE_VERSIONS[request.param], f"agent 2 {request.param} is {version}"
    return chosen


@pytest.fixture()
def make_config(env, line, tmp_path):
    """Writes a configuration for this line with its own port and folder."""
    counter = iter(range(1000))

    def make(settings=a2.EXACT_SETTINGS, **kwargs) -> a2.Config:
        return a2.write_config(
            line, env.plugin, tmp_path / f"agent-{next(counter)}", new_port(), settings, **kwargs
        )

    return make


@pytest.fixture(scope="session")
def exact_config(env, line, netns, tmp_path_factory) -> a2.Config:
    return a2.write_config(line, env.plugin, tmp_path_factory.mktemp("agent2"), new_port())


@pytest.fixture(scope="session")
def agent2(env, line, scenario_session, exact_config):
    """A running agent 2 with the plugin (SnapshotLifetime=0); its pids recorded at start."""
    agent = a2.Agent2(exact_config, env.get).start()
    try:
        # The serving run starts with the first request for the plugin's key.
        ag.zabbix_get(env.get, exact_config.port, "linux_status[version]")
        sc.wait_until(lambda: len(agent.plugin_pids()) == expected_plugins(line), 5.0,
                      f"agent 2 {line.version} to run its plugin processes",
                      detail=lambda: f"plugin pids {agent.plugin_pids()}\n{agent.describe()}")
    except BaseException:
        agent.stop()
        raise
    agent.initial_pids = agent.pids()
    try:
        yield agent
    finally:
        crash = agent.crash_lines()
        plugins = agent.plugin_pids()
        status = agent.stop()
        left = a2.wait_gone(plugins)
        assert not crash, "agent 2 output has crash lines:\n" + "\n".join(crash)
        assert status == 0, f"agent 2 exited {status} on SIGTERM\n{agent.describe()}"
        assert not left, f"plugin processes {left} outlived agent 2"


def expected_plugins(line: a2.Line) -> int:
    """Plugin processes of a running agent: with 6.0 the registration run's process stays
    (it must not exit while that agent runs, see the README), with 7.0 only the serving one."""
    return 2 if line.version == "6.0" else 1
