"""The templates of conf/templates/ through a real Zabbix 6.0 server and proxy, end to end.

1. Import. The former template, conf/linux_status_template.yaml, is imported first; the
   passive template, imported over it, updates it in place (same template, item, trigger
   and graph ids: an existing install keeps history, links and overrides) and renames it.
   The active template imports beside it. Each template, read back through the API, equals
   the model in conf/templates/generate.py object by object (items, preprocessing, tags,
   triggers with their recovery expressions, dependencies and scope tags, discovery,
   macros, graphs, dashboard). A second import changes nothing.
2. Data, from three hosts at once, with {$LINUX_STATUS.INTERVAL}=15s, each with the
   e2e scenario's known sockets around it (one network namespace):
   - "passive": the passive template; the server polls zabbix_agentd + module;
   - "active": the active template; an active-only zabbix_agentd + module (ServerActive,
     StartAgents=0: no listener) sends;
   - "proxy": the passive template on a host monitored by a real zabbix_proxy 6.0, which
     polls a second zabbix_agentd + module and forwards to the server.
   Every poll of every host is compared with `ss -Htan` as a whole (tests/server/checks.py
   says exactly how); each host needs MIN_POLLS exact polls with every per-port value.
3. Triggers: none of the hosts' triggers is in the unknown state (every expression
   evaluates on real data), and the listen-overflow trigger is in PROBLEM exactly when the
   collected overflow rate was above 0 (the scenario's SYN_SENT clients keep retrying into
   a full accept queue).
4. Pictures, saved under target/server-test/ (tests/server/publish-pictures copies them into
   docs/): the stacked graph (chart2.php) and the host's template dashboard, rendered by
   headless Chromium at 1920x1080 (dashboard.py).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from lib import process
from lib import server as lib_server
import agents as agents_mod
import checks
import dashboard
from checks import ACTIVE, PASSIVE

INTERVAL = "15s"
INTERVAL_S = 15
assert 60 % INTERVAL_S == 0, "TIME_WAIT reaping must keep the phase within the interval"
COLLECT_TIMEOUT = 300.0
GROUP = "linux status tests"


# -- 1. import -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def legacy(stack):
    assert checks.import_file(stack.api, checks.LEGACY_FILE) is True
    return checks.template_state(stack.api, checks.gen.LEGACY_NAME)


@pytest.fixture(scope="module")
def imported(stack, legacy):
    for name in (PASSIVE, ACTIVE):
        result = checks.import_file(stack.api, checks.TEMPLATE_FILES[name])
        assert result is True, f"configuration.import of {name}: {result!r}"
    return {name: checks.template_state(stack.api, name) for name in (PASSIVE, ACTIVE)}


def test_passive_template_updates_the_former_one_in_place(stack, legacy, imported):
    new = imported[PASSIVE]
    assert new["template"]["templateid"] == legacy["template"]["templateid"]
    gone = stack.api.call("template.get", {"filter": {"host": checks.gen.LEGACY_NAME}})
    assert gone == [], f"the former template still exists beside the new one: {gone}"
    old_items = {i["key_"]: i["itemid"] for i in legacy["items"]}
    new_items = {i["key_"]: i["itemid"] for i in new["items"]}
    assert old_items.items() <= new_items.items(), "an item of the former template was replaced"
    old_protos = {i["key_"]: i["itemid"] for i in legacy["protos"]}
    assert old_protos.items() <= {i["key_"]: i["itemid"] for i in new["protos"]}.items()
    old_trig = {t["uuid"]: t["triggerid"] for t in legacy["triggers"]}
    assert old_trig.items() <= {t["uuid"]: t["triggerid"] for t in new["triggers"]}.items()


@pytest.mark.parametrize("name", [PASSIVE, ACTIVE])
def test_template_equals_the_model(imported, name):
    checks.check_against_model(imported[name], name)


def test_reimport_changes_nothing(stack, imported):
    for name in (PASSIVE, ACTIVE):
        assert checks.import_file(stack.api, checks.TEMPLATE_FILES[name]) is True
        assert checks.template_ids(checks.template_state(stack.api, name)) == \
            checks.template_ids(imported[name]), name
    uuids = [x["uuid"] for st in imported.values()
             for part in ("items", "rules", "protos", "triggers", "tprotos", "graphs")
             for x in st[part]] + [st["template"]["uuid"] for st in imported.values()]
    assert len(set(uuids)) == len(uuids), "uuids are not unique across the two templates"


# -- 2. data -------------------------------------------------------------------------------


def _group(api) -> str:
    groups = api.call("hostgroup.get", {"filter": {"name": GROUP}})
    return groups[0]["groupid"] if groups else api.call(
        "hostgroup.create", {"name": GROUP})["groupids"][0]


def _create_host(api, imported, name, template, interface_port=None, proxy=None) -> str:
    params = {"host": name, "groups": [{"groupid": _group(api)}],
              "macros": [{"macro": "{$LINUX_STATUS.INTERVAL}", "value": INTERVAL}]}
    if interface_port:
        params["interfaces"] = [{"type": 1, "main": 1, "useip": 1, "ip": "127.0.0.1",
                                 "dns": "", "port": str(interface_port)}]
    if proxy:
        params["proxy_hostid"] = proxy
    hostid = api.call("host.create", params)["hostids"][0]
    api.call("host.massadd", {"hosts": [{"hostid": hostid}], "templates": [
        {"templateid": imported[template]["template"]["templateid"]}]})
    return hostid


@pytest.fixture(scope="module")
def hosts(env, stack, imported, agent, proxied_agent, proxy, scenario):
    api = stack.api
    passive = checks.HostUnderTest("ls-passive", "passive", PASSIVE, agent.cfg.port)
    active = checks.HostUnderTest("ls-active", "active", ACTIVE, None)
    proxied = checks.HostUnderTest("ls-proxied", "proxy", PASSIVE, proxied_agent.cfg.port)
    [proxyid] = [p["proxyid"] for p in api.call("proxy.get", {
        "filter": {"host": agents_mod.PROXY_NAME}, "output": ["proxyid"]})]
    passive.hostid = _create_host(api, imported, passive.name, PASSIVE, agent.cfg.port)
    active.hostid = _create_host(api, imported, active.name, ACTIVE)
    proxied.hostid = _create_host(api, imported, proxied.name, PASSIVE,
                                  proxied_agent.cfg.port, proxy=proxyid)
    # The server's configuration cache is refreshed every second (CacheUpdateFrequency=1):
    # then the proxy fetches its configuration and the active agent its item list.
    time.sleep(3)
    proxy.reload_config(dict(os.environ))
    active_agent = agents_mod.MonitoredAgent(
        process.HostRoot(), str(process.private_dir("zbx-active-agent-")), "6.0", active.name,
        "active", stack.server.port, None, env.so, binary=env.agentd, refresh=60)
    stack.timings["active zabbix_agentd"] = active_agent.start(env.get)
    try:
        yield [passive, active, proxied]
    finally:
        try:
            active_agent.stop_checked()
        finally:
            shutil.rmtree(active_agent.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def counters_before(hosts):
    """The namespace's listen-queue counters before the collection (every host's agent is in
    this namespace): the rates cannot claim more events than the kernel counted after it."""
    return time.time(), listen_counters()


@pytest.fixture(scope="module")
def collected(stack, hosts, agent, proxied_agent, proxy, scenario, sampler, counters_before):
    monitoring_ports = [stack.server.port, stack.proxy_port, agent.cfg.port,
                        proxied_agent.cfg.port]

    def describe():
        return f"\n{stack.describe()}\n{proxy.describe()}"

    return checks.collect_reported(stack, hosts, sampler, scenario, monitoring_ports,
                                   INTERVAL_S, COLLECT_TIMEOUT, describe, "")


@pytest.mark.parametrize("kind", ["passive", "active", "proxy"])
def test_values_match_ss(collected, hosts, stack, agent, proxied_agent, scenario, kind):
    [h] = [h for h in hosts if h.kind == kind]
    items, hist, c = collected[h.hostid]
    assert len(c.full) >= checks.MIN_POLLS and not c.bad, c.summary()
    polled = sorted(k for k, i in items.items() if i["type"] != "18")
    assert polled == sorted([checks.SUMMARY_KEY, checks.gen.NETNS_MASTER_KEY]), (
        f"{h.name}: items polled: {polled}")
    want_type = "7" if kind == "active" else "0"
    assert items[checks.SUMMARY_KEY]["type"] == want_type, items[checks.SUMMARY_KEY]
    # The exact snapshots, without the monitoring's ports, are the scenario's table.
    excluded = (*stack.ports, agent.cfg.port, proxied_agent.cfg.port)
    for t, snap in c.exact:
        others = checks.sc.count_states(snap.sockets, exclude_ports=excluded)
        want = _expected_scenario(scenario, snap.t)
        bad = {s: (others[s], sorted(want[s])) for s in checks.STATES if others[s] not in want[s]}
        assert not bad, f"{h.name} poll at {t:.3f}: ss differs from the scenario: {bad}"
    # Per-port values: the scenario's known shape in the last full exact poll.
    sc = checks.sc
    vals = checks.group_polls(hist, items, checks.port_labels(h.ports))[c.full[-1]]
    assert vals[(sc.PORT_BACKLOG0, "accept_queue")] == 1, vals
    assert vals[(sc.PORT_DEFER, "SYN_RECV")] == scenario.counts["SYN_RECV"], vals
    assert vals[(sc.PORT_DUAL, "ESTABLISHED")] == (
        sc.ESTAB_DUAL_V4_PAIRS + sc.ESTAB_DUAL_V6_PAIRS), vals
    for key in checks.RATE_KEYS:
        values = hist.get(items[key]["itemid"], [])
        assert len(values) >= checks.MIN_POLLS and all(float(v) >= 0 for _, v in values), values


def _expected_scenario(scenario, t: float) -> dict[str, set[int]]:
    want = {s: {n} for s, n in scenario.counts.items()}
    age = t - scenario.time_wait_wall
    if age > checks.sc.TIME_WAIT_LIFETIME + 10:
        want["TIME_WAIT"] = {0}
    elif age > checks.sc.TIME_WAIT_LIFETIME - 1:
        want["TIME_WAIT"] = set(range(scenario.counts["TIME_WAIT"] + 1))
    return want


def test_proxy_forwarded_the_proxied_host(stack, hosts, collected):
    [h] = [h for h in hosts if h.kind == "proxy"]
    [row] = stack.api.call("host.get", {"hostids": h.hostid, "output": ["proxy_hostid"]})
    assert row["proxy_hostid"] != "0", row


# -- 3. triggers -----------------------------------------------------------------------------


def test_triggers_evaluate(stack, hosts, collected):
    """No trigger is unknown, and the overflow trigger is in PROBLEM exactly when an overflow
    rate above 0 was stored: it fires on avg(5m)>0 and recovers only after 15m without any,
    longer than these hosts live, so "ever above 0" is the whole rule here."""
    api = stack.api
    for h in hosts:
        items, _, _ = collected[h.hostid]
        rate_item = items[checks.RATE_KEYS[0]]
        seen = {}

        def settled():
            trig = api.call("trigger.get", {"hostids": h.hostid, "output": [
                "description", "state", "value", "error"]})
            rates = [float(v) for _, v in checks.history(api, [rate_item], 1).get(
                rate_item["itemid"], [])]
            unknown = [(t["description"], t["error"]) for t in trig if t["state"] != "0"]
            assert not unknown, f"{h.name}: triggers in the unknown state: {unknown}"
            [ov] = [t for t in trig if t["description"].startswith("TCP listen queues overflow")]
            seen.update(rates=rates, value=ov["value"])
            return ov["value"] == ("1" if any(r > 0 for r in rates) else "0")

        checks.sc.wait_until(settled, 30, f"{h.name}: the overflow trigger to follow the "
                             f"overflow rates", interval=1.0, detail=lambda: str(seen))


def listen_counters() -> dict[str, int]:
    """TcpExt ListenOverflows and ListenDrops of this namespace, from /proc/net/netstat."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines, lines[1:]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return {k: table[k] for k in ("ListenOverflows", "ListenDrops")}
    raise AssertionError("no TcpExt lines in /proc/net/netstat")


def test_listen_queue_rates(stack, hosts, collected, counters_before):
    """Each rate is "change per second" of an integer kernel counter: times the interval since
    the previous poll it is a whole, non-negative number of events, and a host's events after
    the collection began add up to no more than the namespace's counter grew by."""
    since, before = counters_before
    after = listen_counters()
    for h in hosts:
        items, _, _ = collected[h.hostid]
        for key, member in zip(checks.RATE_KEYS, ("ListenOverflows", "ListenDrops")):
            values = checks.history(stack.api, [items[key]], since).get(items[key]["itemid"], [])
            values = [(t, v) for t, v in values if t >= since]
            assert len(values) >= 2, f"{h.name} {key}: {values}"
            events = 0
            for (t0, _), (t1, v) in zip(values, values[1:]):
                rate = float(v)
                assert rate >= 0.0, f"{h.name} {key} at {t1}: negative rate {v}"
                n = rate * (t1 - t0)
                assert abs(n - round(n)) < 0.05, (
                    f"{h.name} {key} at {t1}: {v}/s over {t1 - t0:.3f} s is {n:.4f} events, "
                    "not a whole number")
                events += round(n)
            grown = after[member] - before[member]
            assert 0 <= events <= grown, (
                f"{h.name} {key}: the rates add up to {events} events, the kernel's {member} "
                f"grew by {grown}")


# -- 4. pictures ---------------------------------------------------------------------------


def test_graph_png(stack, hosts, collected):
    [h] = [h for h in hosts if h.kind == "passive"]
    graphs = stack.api.call("graph.get", {"hostids": h.hostid, "output": ["graphid"],
                                          "filter": {"name": "TCP connection states"}})
    assert len(graphs) == 1, graphs
    web = lib_server.WebSession(stack.frontend, stack.activity)
    web.login()
    path = (f"chart2.php?graphid={graphs[0]['graphid']}&from=now-{_period(collected)}s&to=now"
            f"&width=900&height=300&profileIdx=web.charts.filter")
    status, ctype, body = web.get(path)
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n", (status, ctype, body[:300])
    assert len(body) > 10_000, f"PNG of only {len(body)} bytes"
    checks.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (checks.ARTIFACTS / "template-graph.png").write_bytes(body)


def _period(collected) -> int:
    first = min(t for k, v in collected.items() if k != "waited"
                for values in v[1].values() for t, _ in values)
    return min(15 * 60, max(60, int(time.time() - first) + 10))


def test_dashboard_renders(stack, hosts, collected):
    [h] = [h for h in hosts if h.kind == "passive"]
    png = dashboard.render_host_dashboard(stack.api, stack.frontend, stack.activity, h.hostid,
                                          checks.ARTIFACTS / "dashboard-6.0.png",
                                          period=_period(collected), db=stack.pg)
    print(f"\n[tests/server] dashboard: {png} ({png.stat().st_size} bytes)")


def test_collected_summary(collected, hosts):
    """For the record: the numbers of the run (asserted above)."""
    print(json.dumps({h.name: collected[h.hostid][2].summary() for h in hosts}, indent=1))
