"""The pytest plugin of the fixtures every agent-facing suite shares, registered once by
tests/conftest.py (`pytest_plugins`), so no suite's conftest copies them.

A suite's conftest provides `netns` (its private namespace, entered with the suite's own hint)
and, where it needs them, overrides `scenario`; the fixtures here build on those:

- `scenario_session`: the known socket table (lib/scenario.py), built and checked against ss
  once per session, closed at the end;
- `agent_ports`: every agent port handed out this session (`new_port()`): an agent stopped
  earlier leaves TIME_WAIT sockets of its passive checks on its port for 60 s, which are not
  the scenario's, so the scenario's checks exclude them;
- `scenario`: the session's scenario with TIME_WAIT sockets young enough to outlive the test;
- `nested_two`: the two cgroups of lib/cgroups.py (A and B, with TIME_WAIT and SYN_RECV
  sockets) in a nested network namespace of their own, so their TIME_WAIT sockets die with it;
- `udp_scenario`: the UDP sockets of lib/udp.py (a flooded receiver, bound, dual-stack and
  connected sockets), built once per session;
- `shim`: lib/sock_diag_shim.c built as an LD_PRELOAD library that makes sock_diag misbehave
  (LS_SHIM selects how; the comment at its top lists the modes).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lib import agent as ag
from lib import cgroups as cg
from lib import scenario as sc
from lib import udp as udp_lib

# TIME_WAIT lives 60 s; rebuild the scenario's before they get this old.
TIME_WAIT_MAX_AGE = 40.0

# Ports already given to an agent configuration this session.
_used_ports: list[int] = []


def new_port(avoid: tuple[int, ...] = ()) -> int:
    """A free agent port, not one of the scenario's nor one handed out before."""
    port = ag.free_port(avoid=(*sc.SCENARIO_PORTS, *_used_ports, *avoid))
    _used_ports.append(port)
    return port


def young_time_wait(scenario: sc.Scenario, agent_ports: list[int]) -> sc.Scenario:
    """`scenario`, its TIME_WAIT sockets rebuilt (and the table checked again) when they are
    older than TIME_WAIT_MAX_AGE."""
    if scenario.refresh_time_wait(TIME_WAIT_MAX_AGE):
        scenario.verify(exclude_ports=agent_ports)
    return scenario


@pytest.fixture(scope="session")
def scenario_session(netns):
    scenario = sc.Scenario()
    try:
        scenario.build()
        scenario.verify()
        yield scenario
    finally:
        scenario.close()


@pytest.fixture(scope="session")
def udp_scenario(netns):
    scenario = udp_lib.UdpScenario()
    try:
        yield scenario.build()
    finally:
        scenario.close()


@pytest.fixture(scope="session")
def agent_ports() -> list[int]:
    """Every agent port of the session (their passive checks leave sockets there)."""
    return _used_ports


@pytest.fixture()
def scenario(scenario_session, agent_ports):
    """The session's scenario, with TIME_WAIT sockets young enough to outlive the test."""
    return young_time_wait(scenario_session, agent_ports)


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    source = Path(__file__).parent / "sock_diag_shim.c"
    library = tmp_path_factory.mktemp("shim") / "sock_diag_shim.so"
    built = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(library), str(source),
         "-ldl"],
        capture_output=True, text=True, timeout=60,
    )
    assert built.returncode == 0, built.stderr
    return library


@pytest.fixture()
def nested_two():
    """In a nested namespace of their own (their TIME_WAIT sockets die with it): A and B."""
    with cg.nested_netns(), cg.two_cgroups(time_wait=(1, 2), syn_recv=3) as two:
        yield two
