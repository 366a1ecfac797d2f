"""Which module an agent has loaded: `linux_status[version]` and the agent's start-up log.

The same built .so runs in every agent line (conftest's `agentd` fixture: 6.0 and 7.0); the
version it reports must be the crate version in Cargo.toml.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from lib import agent as ag

CARGO_TOML = Path(__file__).resolve().parents[2] / "Cargo.toml"


def crate_version() -> str:
    return tomllib.loads(CARGO_TOML.read_text())["package"]["version"]


def test_version_key_test_mode(agentd, agent_config):
    result = ag.test_key(agentd, agent_config, "linux_status[version]")
    assert result.supported, result.raw
    assert result.type == "t", f"version is text: {result.raw!r}"
    assert result.value == crate_version(), result.raw


def test_version_key_zabbix_get(agent, env):
    result = ag.zabbix_get(env.get, agent.cfg.port, "linux_status[version]")
    assert result.value == crate_version(), result.raw


def test_agent_log_names_the_loaded_module(agent, env):
    name = Path(env.so).name
    lines = [ln for ln in agent.log_text().splitlines() if "loaded modules:" in ln]
    assert lines, f"no 'loaded modules:' line in the agent log\n{agent.describe()}"
    assert name in lines[0], lines[0]


def test_version_rejects_parameters(agentd, agent_config):
    result = ag.test_key(agentd, agent_config, "linux_status[version,1]")
    assert not result.supported and "Too many parameters" in (result.message or ""), result.raw
