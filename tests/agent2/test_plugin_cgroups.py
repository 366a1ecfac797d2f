"""Per-cgroup counts through real agent 2 binaries (6.0.14 on the host, 7.0.22 in its
chroot, which is given the host's cgroup2 mount), against `ss -tan --cgroup`, with the
cgroups and socket-holding processes of lib/cgroups.py (`two_cgroups`: see there).

- `zabbix_agent2 -t` (starts the plugin, opens no network socket) in a nested network
  namespace holding only the test's sockets: the whole `cgroup_summary` equals ss path by
  path, `no_cgroup` (TIME_WAIT sockets, pending SYN_RECV requests) included; `cgroup_discovery` lists both cgroups
  with their ids (directory inodes) and units;
- the running agent (`zabbix_get`), holders in the suite's namespace: both cgroups' counts
  in `cgroup_summary` and every state of `cgroup_status`, as ss and the construction say;
  a cgroup that does not exist is ZBX_NOTSUPPORTED naming it, the same message as the
  module's.
"""

from __future__ import annotations

import json

import pytest

from lib import agent as ag
from lib import agent2 as a2
from lib import cgroups as cg
from lib import scenario as sc


@pytest.fixture()
def two(agent2, agent_ports):
    with cg.two_cgroups() as two:
        yield two


def text(result: ag.ItemResult) -> str:
    assert result.supported, result.raw
    return result.value


def test_the_whole_summary_equals_ss_through_test_mode(nested_two, exact_config):
    got, table = cg.settled_summary(
        lambda: text(a2.test_key(exact_config, "linux_status[cgroup_summary]")))
    cg.check_whole_summary(got, table, nested_two, str(cg.mount()))
    rows = json.loads(text(a2.test_key(exact_config, "linux_status[cgroup_discovery]")))
    cg.check_discovery(rows, nested_two)


def test_the_running_agent_answers_the_test_cgroups(two, agent2):
    def get(key: str) -> ag.ItemResult:
        return ag.zabbix_get(agent2.get_bin, agent2.cfg.port, key)

    expected = two.expected()
    for _ in range(5):
        before = cg.ss_by_cgroup()
        got = json.loads(text(get("linux_status[cgroup_summary]")))
        if cg.ss_by_cgroup() == before:
            break
    for group in (two.a, two.b):
        assert cg.states_of(got["cgroups"][group.path]) == before[group.path] == expected[group.path]
        for state in sc.KERNEL_STATES:
            key = f"linux_status[cgroup_status,{group.path},{sc.KERNEL_TO_SS[state]}]"
            result = get(key)
            assert result.supported, (key, result.raw)
            assert result.uint() == expected[group.path][state], key
    cg.check_discovery(json.loads(text(get("linux_status[cgroup_discovery]"))), two)
    missing = get("linux_status[cgroup_status,/ls-test-no-such-cgroup,LISTEN]")
    assert not missing.supported
    assert missing.message.startswith(
        "No cgroup /ls-test-no-such-cgroup under the cgroup2 mount"), missing.raw
    agent2.assert_unchanged("after the cgroup keys")
