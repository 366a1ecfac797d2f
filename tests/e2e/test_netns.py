"""The network-namespace keys through a real zabbix_agentd (6.0 and 7.0) running as `nobody`
(what `User=zabbix` is on a packaged agent): namespaces the test creates with known sockets
(lib/namespaces.py), every count exact against `nsenter -n -t <pid> ss -tan` run inside each,
namespaces created and destroyed while the agent polls (never a number of another namespace,
never a gone namespace answering), and /proc mounted with hidepid.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from lib import agent as ag
from lib import fixtures
from lib import namespaces as nsl
from lib import oracle as orc

EXACT = "SnapshotLifetime=0\nNetnsTableInterval=0\n"


@pytest.fixture(scope="module")
def held(scenario_session):
    """Four namespaces: the full scenario, two small tables of different sizes, an empty one.
    After the suite's own scenario (`scenario_session`), which checks its namespace holds
    nothing else when built: this module's queries leave TIME_WAIT sockets on its agents'
    ports there (excluded later as agent ports, not at that first check)."""
    with nsl.held_namespaces() as made:
        yield made


@pytest.fixture(scope="module")
def agent(agentd, env, held):
    with nsl.nobody_agent(agentd, env, EXACT) as running:
        yield running


def get(agent, key: str) -> ag.ItemResult:
    return ag.zabbix_get(agent.get_bin, agent.cfg.port, key)


def value(agent, key: str) -> str:
    return nsl.value(lambda key: get(agent, key), key)


def test_the_agent_runs_as_nobody(agent):
    status = Path(f"/proc/{agent.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["65534"] * 4, uid_line
    cap_line = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    assert int(cap_line.split()[1], 16) == 0, cap_line


def test_the_test_namespaces_hold_what_they_were_built_with(held):
    nsl.check_the_test_namespaces_hold_what_they_were_built_with(held)


def test_discovery_lists_every_namespace_with_its_process(agent, held):
    nsl.check_discovery_lists_every_namespace_with_its_process(lambda k: get(agent, k), held)


@pytest.mark.parametrize("selector", ["inode", "cgroup"])
def test_summary_per_namespace_is_exact(agent, held, selector):
    nsl.check_summary_per_namespace_is_exact(lambda k: get(agent, k), held, selector)


def test_status_per_state_and_filter_is_exact(agent, held):
    nsl.check_status_per_state_and_filter_is_exact(lambda k: get(agent, k), held)


def test_all_namespaces_in_one_json(agent, held):
    nsl.check_all_namespaces_in_one_json(lambda k: get(agent, k), held)


def test_info_reports_the_last_pass(agent):
    nsl.check_info_reports_the_last_pass(lambda k: get(agent, k))


def test_selectors_that_name_nothing_or_too_much_are_refused(agent, held):
    nsl.check_selectors_that_name_nothing_or_too_much_are_refused(lambda k: get(agent, k), held)


def test_a_gone_namespace_is_not_supported_never_another_number(agent):
    nsl.check_a_gone_namespace_is_not_supported_never_another_number(lambda k: get(agent, k))


def test_namespaces_made_and_destroyed_while_the_agent_polls(agent, held):
    nsl.check_namespaces_made_and_destroyed_while_the_agent_polls(lambda k: get(agent, k), held)
    orc.assert_agent_unharmed(agent)


def test_tables_are_read_once_per_interval_for_every_worker(agentd, env, held):
    """Under the shipped NetnsTableInterval (60 s), later polls (on any worker) reuse each
    table and report its age; the cheap counters are read every time."""
    with nsl.nobody_agent(agentd, env, "", "linux-status-netns-interval-") as running:
        first = json.loads(value(running, "linux_status[netns_all]"))
        # Other namespaces of the host may come and go meanwhile: the held ones are checked.
        assert all(first["netns"][str(ns.inode)]["states"] is not None for ns in held), first
        time.sleep(0.2)
        for _ in range(6):  # several polls: they land on different workers
            later = json.loads(value(running, "linux_status[netns_all]"))
            assert later["tables_read"] <= len(nsl.identities(later) - nsl.identities(first)), later
            for ns in held:
                item = later["netns"][str(ns.inode)]
                assert item["states"] == first["netns"][str(ns.inode)]["states"], item
                # Not read again: its age grew by at least the time since the first poll.
                assert 200 <= item["states_age_ms"] < 60_000, item
                assert item["counters"] is not None, item


@pytest.mark.parametrize("hidepid", ["2", "1"])
def test_hidepid_hides_other_users_namespaces_and_says_so(agentd, env, held, hidepid):
    """/proc mounted with hidepid (in a private mount namespace): the agent's user sees only
    its own processes; other namespaces are not listed and selecting one says it may be
    hidden; the agent's own namespace still answers."""
    directory = Path(tempfile.mkdtemp(prefix="linux-status-hidepid-"))
    try:
        hidepid_checks(agentd, env, held, hidepid, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def hidepid_checks(agentd, env, held, hidepid, directory):
    directory.chmod(0o777)
    module = ag.staged_for_nobody(env.so, directory / "module")
    cfg = ag.write_config(directory, module, fixtures.new_port(), module_settings=EXACT)
    for path in (cfg.path, cfg.module_config):
        path.chmod(0o644)
    keys = ["linux_status[netns_all]", f"linux_status[netns_summary,{held[1].inode}]",
            "linux_status[netns_status,self,LISTEN]"]
    script = (f"mount -t proc -o hidepid={hidepid} proc /proc && for k in \"$@\"; do "
              f"{' '.join(ag.AS_NOBODY)} {agentd} -c {cfg.path} -t \"$k\"; done")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                           "sh", *keys], capture_output=True, text=True, timeout=60,
                          env=ag.agent_env(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("linux_status[")]
    results = [ag.parse_item_line(line) for line in lines]
    assert len(results) == 3, proc.stdout
    data = json.loads(results[0].value)
    assert data["hidepid"] in (hidepid, {"1": "noaccess", "2": "invisible"}[hidepid]), data
    assert not any(item["pid"] in {ns.pid for ns in held} for item in data["netns"].values())
    if hidepid == "1":
        assert data["processes_unreadable"] > 0, data
    assert not results[1].supported and "hidden from the agent's user" in results[1].message
    assert results[2].supported and results[2].value.isdigit(), results[2].raw
