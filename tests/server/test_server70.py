"""Both templates through a real Zabbix 7.0 server (Debian 13's packages, in a chroot).

Run on its own, in a private network and mount namespace (the chroot's mounts stay private;
tests/lib/process.py's Chroot):

    unshare --net --mount -- $PYTHON -m pytest -p no:cacheprovider -q -s \
        tests/server/test_server70.py

1. Import through the 7.0 API: the files are Zabbix 6.0 export format and 7.0 converts them
   on import (that is the decision: one file per template for every server from 6.0 on;
   6.0 cannot import 7.0-format files). Each template read back equals the model
   (checks.check_against_model), the passive one updates the former template in place, and a
   second import changes nothing.
2. Data: one host per entry of AGENTS, each an agent of Debian 13 in the chroot with the
   linux_status module (or, for agent 2, the plugin), the e2e scenario's sockets around them;
   every poll compared with ss as in the 6.0 test (checks.py).
3. The dashboard renders (headless Chromium, 1920x1080, target/server-test/dashboard-7.0.png).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lib import agent as agent_mod
from lib import process
from lib import server as lib_server
import agents as agents_mod
import checks
import dashboard
from lib import scenario as scenario_mod
from checks import ACTIVE, PASSIVE

INTERVAL = "15s"
INTERVAL_S = 15
COLLECT_TIMEOUT = 240.0

# One monitored host per entry: (host name, "passive" or "active", agent 2?). Agent 2 runs
# Debian 13's zabbix_agent2 with Plugins.LinuxStatus.System.Path=<the plugin> (built by
# `cargo build --release` at PLUGIN; LINUX_STATUS_AGENT2_PLUGIN points elsewhere): same
# templates, same checks as zabbix_agentd with the module.
AGENTS = [
    ("ls70-agentd-passive", "passive", False),
    ("ls70-agentd-active", "active", False),
    ("ls70-agent2-passive", "passive", True),
    ("ls70-agent2-active", "active", True),
]
PLUGIN = Path(os.environ.get("LINUX_STATUS_AGENT2_PLUGIN")
              or checks.REPO / "target" / "release" / "zabbix-agent2-plugin-linux-status")


def module_for(agent2: bool, env) -> Path:
    if agent2:
        assert PLUGIN.is_file(), f"{PLUGIN} not built (cargo build --release of the plugin)"
        return PLUGIN
    return env.so


INSIDE = "/tmp/ls70"  # the run's folder, as seen inside the chroot (a tmpfs: Chroot.prepare)


@pytest.fixture(scope="module")
def chroot():
    root = os.environ.get("LINUX_STATUS_TRIXIE_SERVER_CHROOT")
    if not root or not Path(root, ".linux-status-ready").is_file():
        pytest.fail("LINUX_STATUS_TRIXIE_SERVER_CHROOT is not a ready chroot: "
                    "source tests/server/setup.sh", pytrace=False)
    c = process.Chroot(Path(root))
    c.prepare()
    return c


@pytest.fixture(scope="module")
def stack(env, netns, sampler, chroot):
    """The 7.0 stack of the chroot (lib/server.py), plus a port per monitored agent."""
    ports = agent_mod.free_ports(3 + len(AGENTS))
    st = lib_server.Stack("7.0", chroot, INSIDE, tuple(ports[:3]),
                          dict(os.environ, LANG="C.UTF-8"), "tests/server 7.0")
    st.agent_ports = ports[3:]
    try:
        st.start()
        yield st
    finally:
        st.stop()


@pytest.fixture(scope="module")
def imported(stack):
    api = stack.api
    assert checks.import_file(api, checks.LEGACY_FILE, "template_groups") is True
    legacy = checks.template_state(api, checks.gen.LEGACY_NAME)
    for name in (PASSIVE, ACTIVE):
        assert checks.import_file(api, checks.TEMPLATE_FILES[name], "template_groups") is True
    state = {name: checks.template_state(api, name) for name in (PASSIVE, ACTIVE)}
    state["legacy"] = legacy
    return state


def test_import_converts_6_0_format(imported):
    assert imported[PASSIVE]["template"]["templateid"] == \
        imported["legacy"]["template"]["templateid"], "the former template was not updated"
    for name in (PASSIVE, ACTIVE):
        checks.check_against_model(imported[name], name)


def test_reimport_changes_nothing(stack, imported):
    for name in (PASSIVE, ACTIVE):
        assert checks.import_file(stack.api, checks.TEMPLATE_FILES[name],
                                  "template_groups") is True
        assert checks.template_ids(checks.template_state(stack.api, name)) == \
            checks.template_ids(imported[name]), name


@pytest.fixture(scope="module")
def agents(env, stack, chroot, imported, sampler):
    api = stack.api
    groups = api.call("hostgroup.get", {"filter": {"name": "linux status tests"}})
    gid = groups[0]["groupid"] if groups else api.call(
        "hostgroup.create", {"name": "linux status tests"})["groupids"][0]
    hosts, running = [], []
    try:
        for (name, kind, agent2), port in zip(AGENTS, stack.agent_ports):
            template = PASSIVE if kind == "passive" else ACTIVE
            params = {"host": name, "groups": [{"groupid": gid}],
                      "macros": [{"macro": "{$LINUX_STATUS.INTERVAL}", "value": INTERVAL}]}
            if kind == "passive":
                params["interfaces"] = [{"type": 1, "main": 1, "useip": 1, "ip": "127.0.0.1",
                                         "dns": "", "port": str(port)}]
            hostid = api.call("host.create", params)["hostids"][0]
            api.call("host.massadd", {"hosts": [{"hostid": hostid}], "templates": [
                {"templateid": imported[template]["template"]["templateid"]}]})
            h = checks.HostUnderTest(name, kind, template, port if kind == "passive" else None,
                                     hostid)
            hosts.append(h)
        time.sleep(3)  # CacheUpdateFrequency=1: the server knows the hosts' items
        for (name, kind, agent2), port, h in zip(AGENTS, stack.agent_ports, hosts):
            a = agents_mod.MonitoredAgent(chroot, f"{INSIDE}/agent-{name}", "7.0", name, kind,
                                          stack.server.port, port, module_for(agent2, env),
                                          agent2=agent2)
            stack.timings[a.name] = a.start(env.get)
            running.append(a)
        yield hosts, running
    finally:
        for a in running:
            a.stop_checked()


@pytest.fixture(scope="module")
def scenario(stack, agents):
    hosts, _ = agents
    sc = scenario_mod.Scenario()
    try:
        sc.build()
        sc.verify(exclude_ports=(*stack.ports, *stack.agent_ports))
        sc.time_wait_wall = time.time() - (time.monotonic() - sc.time_wait_created)
        yield sc
    finally:
        sc.close()


@pytest.fixture(scope="module")
def collected(stack, agents, scenario, sampler):
    hosts, running = agents
    monitoring = [stack.server.port, *stack.agent_ports]

    def describe():
        return "\n" + stack.describe() + "\n".join(a.describe() for a in running)

    return checks.collect_reported(stack, hosts, sampler, scenario, monitoring, INTERVAL_S,
                                   COLLECT_TIMEOUT, describe, "7.0 ")


@pytest.mark.parametrize("name", [a[0] for a in AGENTS])
def test_values_match_ss(collected, agents, scenario, name):
    hosts, _ = agents
    [h] = [h for h in hosts if h.name == name]
    items, hist, c = collected[h.hostid]
    assert len(c.full) >= checks.MIN_POLLS and not c.bad, c.summary()
    assert items[checks.SUMMARY_KEY]["type"] == ("7" if h.kind == "active" else "0")
    sc = checks.sc
    vals = checks.group_polls(hist, items, checks.port_labels(h.ports))[c.full[-1]]
    assert vals[(sc.PORT_BACKLOG0, "accept_queue")] == 1, vals
    assert vals[(sc.PORT_DEFER, "SYN_RECV")] == scenario.counts["SYN_RECV"], vals


def test_dashboard_renders(stack, agents, collected):
    hosts, _ = agents
    h = hosts[0]
    first = min(t for k, v in collected.items() if k != "waited"
                for values in v[1].values() for t, _ in values)
    png = dashboard.render_host_dashboard(
        stack.api, stack.frontend, stack.activity, h.hostid,
        checks.ARTIFACTS / "dashboard-7.0.png", period=max(60, int(time.time() - first) + 10),
        db=stack.pg, rights_field="hostgroup_rights")
    print(f"\n[tests/server 7.0] dashboard: {png} ({png.stat().st_size} bytes)")
