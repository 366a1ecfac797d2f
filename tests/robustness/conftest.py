"""Fixtures for the robustness suite ("never the reason an agent dies").

Run as root inside a private network namespace, with the variables of `source
scripts/setup` and the built module:

    export LINUX_STATUS_SO=$PWD/target/release/liblinux_status.so
    unshare -n -- $PYTHON -m pytest -p no:cacheprovider -q -s tests/robustness

Missing variables or a shared namespace fail the tests (nothing is skipped). The agent
driver is the end-to-end suite's (tests/lib/agent.py, imported, not copied); `RobustAgent`
adds what these tests need: extra environment for the agent (the module's test-only
LINUX_STATUS_PROC_NET_DIR), another Timeout, and per-worker /proc figures.

Every test records its figures with the `figures` fixture: they are printed (visible with
-s) and appended as JSON lines to $ROBUSTNESS_SUMMARY (default: robustness-summary.jsonl in
the pytest temporary directory, whose path is printed at the end).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lib import agent as agent_mod
from lib import netns as netns_mod
from lib import scenario as scenario_mod

REQUIRED_ENV = ("LINUX_STATUS_SO", "ZABBIX_AGENTD", "ZABBIX_GET", "LD_LIBRARY_PATH")


class Env:
    def __init__(self) -> None:
        self.so = Path(os.environ["LINUX_STATUS_SO"])
        self.agentd = os.environ["ZABBIX_AGENTD"]
        self.get = os.environ["ZABBIX_GET"]


@pytest.fixture(scope="session")
def env() -> Env:
    netns_mod.require(
        REQUIRED_ENV,
        {name: os.environ.get(name, "") for name in ("ZABBIX_AGENTD", "ZABBIX_GET")},
    )
    return Env()


@pytest.fixture(scope="session", autouse=True)
def netns(env) -> None:
    """A private network namespace with a socket hash of its own and loopback up (see
    tests/lib/netns.py): the figures do not depend on the machine's other namespaces."""
    cost = netns_mod.enter_private_namespace(
        "unshare -n -- $PYTHON -m pytest -q -s tests/robustness"
    )
    print(f"\n[robustness] {cost}")


# ---- figures ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def summary_path(tmp_path_factory) -> Path:
    path = Path(os.environ.get("ROBUSTNESS_SUMMARY")
                or tmp_path_factory.getbasetemp() / "robustness-summary.jsonl")
    print(f"\n[robustness] figures are appended to {path}")
    return path


@pytest.fixture()
def figures(request, summary_path):
    """A dict the test fills; printed and appended to the summary file at teardown."""
    data: dict = {}
    yield data
    line = {"test": request.node.name, **data}
    print(f"\n[robustness] {request.node.name}:")
    for k, v in data.items():
        print(f"    {k}: {v}")
    with open(summary_path, "a") as f:
        f.write(json.dumps(line, default=str) + "\n")


# ---- the agent -------------------------------------------------------------------------

def listener_pids(pids: list[int]) -> list[int]:
    """The passive-check listener workers among the agent's children (by process title)."""
    out = []
    for pid in pids:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "listener" in title:
            out.append(pid)
    return sorted(out)


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def io_field(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/io")


class RobustAgent(agent_mod.Agent):
    """tests/e2e's Agent with extra agent environment and a chosen Timeout."""

    def __init__(self, env: Env, cfg: agent_mod.AgentConfig, start_agents: int,
                 extra_env: dict[str, str] | None = None) -> None:
        super().__init__(env.agentd, env.get, cfg)
        self.start_agents = start_agents
        self.extra_env = extra_env or {}

    def start(self) -> None:
        # Agent.start() takes its environment from agent.agent_env(cfg): add ours for the
        # duration of the start.
        original = agent_mod.agent_env
        agent_mod.agent_env = lambda cfg: {**original(cfg), **self.extra_env}
        try:
            super().start()
        finally:
            agent_mod.agent_env = original
        expected = 1 + self.start_agents
        scenario_mod.wait_until(
            lambda: len(self.pids()[1]) == expected and len(self.listeners()) == self.start_agents,
            5.0, f"zabbix_agentd to fork {expected} workers",
        )
        self.initial_pids = self.pids()

    def listeners(self) -> list[int]:
        return listener_pids(self.pids()[1])

    def assert_unchanged(self, what: str) -> None:
        """Main pid and every worker pid as at start, and no crash in the log."""
        assert self.alive(), f"{what}: zabbix_agentd died\n{self.describe()}"
        now = self.pids()
        assert now == self.initial_pids, (
            f"{what}: agent pids changed: {self.initial_pids} -> {now}\n{self.describe()}"
        )
        crash = self.crash_lines()
        assert not crash, f"{what}: crash lines in the agent log:\n" + "\n".join(crash)


@pytest.fixture()
def start_agent(env, tmp_path):
    """Factory: start_agent(start_agents=3, timeout=3, module_settings=..., extra_env=...)."""
    started: list[RobustAgent] = []

    def start(start_agents: int = 3, timeout: int = 3, module_settings: str = "",
              extra_env: dict[str, str] | None = None) -> RobustAgent:
        port = agent_mod.free_port()
        directory = tmp_path / f"agent{len(started)}"
        cfg = agent_mod.write_config(
            directory, env.so, port, module_settings=module_settings, start_agents=start_agents,
        )
        text = cfg.path.read_text()
        assert "Timeout=3\n" in text, "tests/lib/agent.py config changed: no Timeout=3 line"
        cfg.path.write_text(text.replace("Timeout=3\n", f"Timeout={timeout}\n"))
        a = RobustAgent(env, cfg, start_agents, extra_env)
        a.start()
        started.append(a)
        return a

    yield start
    problems = []
    for a in started:
        crash = a.crash_lines()
        status = a.stop()
        if crash:
            problems.append("crash lines in the agent log:\n" + "\n".join(crash))
        if status != 0:
            problems.append(f"zabbix_agentd exited {status} on SIGTERM\n{a.describe()}")
    assert not problems, "\n".join(problems)

