"""The network-namespace keys through the plugin in both agent 2 lines (6.0.14 on the host,
7.0.22 in the trixie chroot, which mounts its own /proc): the same checks as the module's
(tests/e2e/test_netns.py, all in lib/namespaces.py), exact against `nsenter -n -t <pid> ss
-tan` in namespaces the test creates, with namespaces made and destroyed while the agent
polls, and the table interval shared by the plugin's worker threads under the shipped
default. (Agent 2 runs as root here, as in the rest of this suite; the unprivileged path is
the module's suite, which runs zabbix_agentd as nobody: both front ends call the same core.)
"""

from __future__ import annotations

import json
import time

import pytest

from lib import agent as ag
from lib import agent2 as a2
from lib import fixtures
from lib import namespaces as nsl

EXACT = ("SnapshotLifetime=0", "NetnsTableInterval=0")


@pytest.fixture(scope="module")
def held(scenario_session):
    """After the suite's own scenario, which checks its namespace holds nothing else when
    built: this module's queries leave TIME_WAIT sockets on its agents' ports there."""
    with nsl.held_namespaces() as made:
        yield made


@pytest.fixture(scope="module")
def netns_agent(env, line, held, tmp_path_factory):
    cfg = a2.write_config(line, env.plugin, tmp_path_factory.mktemp("agent2-netns"),
                          fixtures.new_port(avoid=(10050,)), EXACT)
    agent = a2.Agent2(cfg, env.get).start()
    try:
        yield agent
    finally:
        agent.stop_checked()


def ask(agent):
    return lambda key: ag.zabbix_get(agent.get_bin, agent.cfg.port, key)


def test_the_test_namespaces_hold_what_they_were_built_with(held):
    nsl.check_the_test_namespaces_hold_what_they_were_built_with(held)


def test_discovery_lists_every_namespace_with_its_process(netns_agent, held):
    nsl.check_discovery_lists_every_namespace_with_its_process(ask(netns_agent), held)


@pytest.mark.parametrize("selector", ["inode", "cgroup"])
def test_summary_per_namespace_is_exact(netns_agent, held, selector):
    nsl.check_summary_per_namespace_is_exact(ask(netns_agent), held, selector)


def test_status_per_state_and_filter_is_exact(netns_agent, held):
    nsl.check_status_per_state_and_filter_is_exact(ask(netns_agent), held)


def test_all_namespaces_in_one_json(netns_agent, held):
    nsl.check_all_namespaces_in_one_json(ask(netns_agent), held)


def test_info_reports_the_last_pass(netns_agent):
    nsl.check_info_reports_the_last_pass(ask(netns_agent))


def test_selectors_that_name_nothing_or_too_much_are_refused(netns_agent, held):
    nsl.check_selectors_that_name_nothing_or_too_much_are_refused(ask(netns_agent), held)


def test_a_gone_namespace_is_not_supported_never_another_number(netns_agent):
    nsl.check_a_gone_namespace_is_not_supported_never_another_number(ask(netns_agent))


def test_namespaces_made_and_destroyed_while_the_agent_polls(netns_agent, held):
    nsl.check_namespaces_made_and_destroyed_while_the_agent_polls(ask(netns_agent), held)
    assert netns_agent.alive() and not netns_agent.crash_lines(), netns_agent.describe()


def test_tables_are_read_once_per_interval_under_the_shipped_default(env, line, held, tmp_path):
    cfg = a2.write_config(line, env.plugin, tmp_path / "agent", fixtures.new_port(avoid=(10050,)), ())
    agent = a2.Agent2(cfg, env.get).start()
    try:
        first = json.loads(nsl.value(ask(agent), "linux_status[netns_all]"))
        # Other namespaces of the host may come and go meanwhile: the held ones are checked.
        assert all(first["netns"][str(ns.inode)]["states"] is not None for ns in held), first
        time.sleep(0.2)
        for _ in range(4):
            later = json.loads(nsl.value(ask(agent), "linux_status[netns_all]"))
            assert later["tables_read"] <= len(nsl.identities(later) - nsl.identities(first)), later
            for ns in held:
                item = later["netns"][str(ns.inode)]
                assert item["states"] == first["netns"][str(ns.inode)]["states"], item
                # Not read again: its age grew by at least the time since the first poll.
                assert 200 <= item["states_age_ms"] < 60_000, item
    finally:
        assert agent.stop() == 0, agent.describe()
