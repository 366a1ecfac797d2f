"""Session fixtures for the linux_status end-to-end tests.

The suite runs as root inside a private network namespace:

    unshare -n -- $PYTHON -m pytest -q tests/e2e

Order of events: check the environment variables, check that the namespace is fresh (no TCP
socket at all) and bring `lo` up, build and verify the known socket table (scenario.py), write
the agent configuration, start zabbix_agentd with the module. Missing variables or a shared
namespace fail the tests; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lib import agent as agent_mod
from lib import fixtures
from lib import netns as netns_mod

REQUIRED_ENV = (
    "LINUX_STATUS_SO",
    "ZABBIX_AGENTD",
    "ZABBIX_AGENTD_70",
    "ZABBIX_GET",
    "LD_LIBRARY_PATH",
)
# Every agent-facing test runs once per agent line, with the same built .so:
# (Zabbix version the binary must report, environment variable holding its path).
AGENT_LINES = (("6.0", "ZABBIX_AGENTD"), ("7.0", "ZABBIX_AGENTD_70"))


class Env:
    def __init__(self, values: dict[str, str]) -> None:
        self.so = Path(values["LINUX_STATUS_SO"])
        self.agentds = {line: values[variable] for line, variable in AGENT_LINES}
        self.get = values["ZABBIX_GET"]
        self.ld_library_path = values["LD_LIBRARY_PATH"]


@pytest.fixture(scope="session", autouse=True)
def env() -> Env:
    values = netns_mod.require(
        REQUIRED_ENV,
        {variable: os.environ.get(variable, "") for variable in ("ZABBIX_GET", *dict(AGENT_LINES).values())},
    )
    return Env(values)


@pytest.fixture(scope="session", autouse=True)
def netns(env: Env) -> None:
    """A fresh private network namespace with its own socket hash, loopback up."""
    cost = netns_mod.enter_private_namespace("unshare -n -- $PYTHON -m pytest -q tests/e2e")
    print(f"\n[e2e] {cost}")
    print(f"[e2e] {netns_mod.pin_time_wait_reuse()}")
    print(f"[e2e] {netns_mod.hide_host_module_config()}")


@pytest.fixture()
def scenario(scenario_session, agent_config, agent_ports):
    """lib/fixtures.py's `scenario`, after this test's agent port is handed out."""
    return fixtures.young_time_wait(scenario_session, agent_ports)


@pytest.fixture(scope="session", params=[line for line, _ in AGENT_LINES])
def agentd(request, env) -> str:
    """The zabbix_agentd binary of one agent line (6.0: Debian's; 7.0: built from source)."""
    line = request.param
    path = env.agentds[line]
    version = subprocess.run(
        [path, "-V"], check=True, capture_output=True, text=True, timeout=10
    ).stdout.splitlines()[0]
    assert f"(Zabbix) {line}." in version, f"{path} is not agent {line}: {version!r}"
    return path


@pytest.fixture(scope="session")
def agent_config(env, netns, agentd, tmp_path_factory) -> agent_mod.AgentConfig:
    # Each agent line gets its own port.
    return agent_mod.write_config(tmp_path_factory.mktemp("agent"), env.so, fixtures.new_port())


@pytest.fixture(scope="session")
def agent(env, agentd, scenario_session, agent_config):
    """A running zabbix_agentd with linux_status loaded; its pids are recorded at start."""
    with agent_mod.running_agent(agentd, env.get, agent_config) as a:
        yield a
