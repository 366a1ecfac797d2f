"""UDP keys through the agent 2 plugin on both agent 2 lines, with the module's checks
(lib/udp.py, as tests/e2e/test_udp.py runs them on zabbix_agentd): counts through every
spelling and filter, per-port queues, buffers, fill and drops, the Udp/Udp6 counters, drops
growing by exactly the datagrams lost, discovery, the port cap, errors; `zabbix_agent2 -t` with each
backend, and the running agent through zabbix_get.
"""

from __future__ import annotations

import pytest

from lib import agent as ag
from lib import agent2 as a2
from lib import oracle as orc
from lib import udp

BACKENDS = ("netlink", "proc")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture()
def ask(make_config, backend):
    cfg = make_config(("SnapshotLifetime=0", f"Backend={backend}"))
    return lambda key: a2.test_key(cfg, key)


def test_udp_status_equals_ss(udp_scenario, ask):
    udp.check_status(ask, all_spellings=False)


def test_udp_summary_equals_ss_and_the_kernel_counters(udp_scenario, ask, backend):
    udp.check_summary(ask, buffers=backend == "netlink")


def test_drops_grow_by_the_datagrams_the_full_receiver_lost(udp_scenario, ask, backend):
    udp.check_drops_grow(ask, udp_scenario, buffers=backend == "netlink")


def test_udp_discovery_lists_the_bound_ports(udp_scenario, ask):
    udp.check_discovery(ask)


def test_past_the_port_cap_services_come_first(udp_scenario, ask):
    udp.check_cap(ask)


@pytest.mark.parametrize("key", udp.ERROR_CASES)
def test_bad_udp_keys_are_errors(key, exact_config):
    orc.unsupported(a2.test_key(exact_config, key), udp.ERROR_CASES[key])


def test_a_running_agent_2_answers_udp_through_zabbix_get(udp_scenario, agent2):
    def ask(key):
        return ag.zabbix_get(agent2.get_bin, agent2.cfg.port, key)

    udp.check_status(ask)
    udp.check_summary(ask, buffers=True)
    udp.check_discovery(ask)
