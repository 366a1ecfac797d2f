"""What the server tests assert, shared by the 6.0 and 7.0 suites.

Templates: `import_file()` through `configuration.import`; `template_state()` reads back
everything the import made; `check_against_model()` compares it, object by object, with the
model in conf/templates/generate.py (the source both template files are generated from).

Data: `HostUnderTest` is one monitored host (passive, active or behind a proxy);
`collect()` waits (bounded) until every host has at least MIN_POLLS exact polls, each poll
compared as a whole with `ss -Htan` snapshots (see `compare_polls`).

How a poll is compared. The dependent values of one master poll share its timestamp T
(stamped by whoever ran the check: the server, the proxy or the active agent), which groups
them; LISTEN and CLOSE are stored only when they change ("discard unchanged with
heartbeat"), so a poll without them carries their last stored value. A poll is EXACT when one
snapshot of [T - SNAPSHOT_WINDOW, T + SNAPSHOT_AFTER], with the poll's own connection counted
as open (a passive check: the poller's client socket and the agent's accepted one, +2
ESTABLISHED host-wide and +1 on the agent's port, whatever state the snapshot caught them in;
an active check has none: the agent's process collects, then sends), gives every state
value, TOTAL and every per-port value (accept queue included). Left out (counted, never
compared) are polls the test's own sockets may disturb: polls near its own HTTP requests,
near the kernel reaping TIME_WAIT sockets those requests (or the scenario) left; and polls
that are not exact while a short-lived connection of the monitoring itself (to the server's
or proxy's trapper, another agent's poll) opened or closed in their window, as ss saw it:
the scan then raced a socket that exists for milliseconds. A poll that is not exact without
such a reason fails the test at once, and every host needs MIN_POLLS exact polls with every
per-port value.
"""
from __future__ import annotations

import collections
import dataclasses
import importlib.util
import json
import re
import time
from pathlib import Path

from lib import scenario as sc

REPO = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = REPO / "conf" / "templates"
LEGACY_FILE = REPO / "conf" / "linux_status_template.yaml"
ARTIFACTS = REPO / "target" / "server-test"


def load_generator():
    spec = importlib.util.spec_from_file_location("generate", TEMPLATES_DIR / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = load_generator()
PASSIVE = gen.FLAVOURS["passive"]["name"]
ACTIVE = gen.FLAVOURS["active"]["name"]
TEMPLATE_FILES = {gen.FLAVOURS[f]["name"]: TEMPLATES_DIR / gen.FLAVOURS[f]["file"]
                  for f in gen.FLAVOURS}
FLAVOUR_OF = {gen.FLAVOURS[f]["name"]: f for f in gen.FLAVOURS}

STATES = sc.KERNEL_STATES
SUMMARY_KEY = gen.MASTER_KEY
STATE_KEYS = {s: f"linux_status.tcp.state[{s}]" for s in STATES}
TOTAL_KEY = "linux_status.tcp.total"
RATE_KEYS = ("linux_status.tcp.listen_overflows.rate", "linux_status.tcp.listen_drops.rate")
PORT_MEMBERS = ("ESTABLISHED", "SYN_RECV", "CLOSE_WAIT", "TIME_WAIT", "TOTAL", "accept_queue")
CARRIED = {STATE_KEYS[s] for s in gen.NOT_CONNECTIONS}  # discard unchanged with heartbeat
PRE_TYPES = {"JSONPATH": "12", "CHANGE_PER_SECOND": "10", "DISCARD_UNCHANGED_HEARTBEAT": "20"}
ITEM_TYPES = {None: "0", "ZABBIX_ACTIVE": "7", "DEPENDENT": "18"}
PRIORITIES = {"INFO": "1", "WARNING": "2", "AVERAGE": "3", "HIGH": "4", "DISASTER": "5"}

MIN_POLLS = 2
ROUND_EVERY = 2  # intervals between two API rounds of collect()
CARRY_LOOKBACK = 600.0
SNAPSHOT_WINDOW = 3.0
SNAPSHOT_AFTER = 1.5
QUIET_BEFORE, QUIET_AFTER = 1.5, SNAPSHOT_AFTER + 0.2
CONNECT_MAX = 4.5
TW_LIFETIME = sc.TIME_WAIT_LIFETIME
TW_REAP_LATE = 4.5


def port_key(member: str, port) -> str:
    return gen.port_key(member, str(port))


# -- templates -----------------------------------------------------------------------------


IMPORT_RULES = {
    "templates": {"createMissing": True, "updateExisting": True},
    "items": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "discoveryRules": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "triggers": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "graphs": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "templateDashboards": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
    "templateLinkage": {"createMissing": True},
}


def import_file(api, path: Path, groups_rule: str = "groups"):
    rules = dict(IMPORT_RULES, **{groups_rule: {"createMissing": True}})
    return api.call("configuration.import", {"format": "yaml", "source": path.read_text(),
                                             "rules": rules})


def template_state(api, name: str) -> dict:
    """Everything an import created for template `name`, with ids."""
    tpl = api.call("template.get", {
        "filter": {"host": name}, "output": ["templateid", "host", "name", "uuid", "description"],
        "selectMacros": ["macro", "value", "description"], "selectTags": ["tag", "value"],
    })
    assert len(tpl) == 1, f"expected one template {name!r}, got {tpl}"
    tid = tpl[0]["templateid"]
    items = api.call("item.get", {
        "templateids": tid, "output": ["itemid", "key_", "type", "value_type", "delay",
                                       "history", "master_itemid", "uuid", "name"],
        "selectPreprocessing": ["type", "params"], "selectTags": ["tag", "value"],
    })
    rules = api.call("discoveryrule.get", {
        "templateids": tid, "output": ["itemid", "key_", "type", "master_itemid", "uuid", "delay"],
        "selectLLDMacroPaths": ["lld_macro", "path"], "selectPreprocessing": ["type", "params"],
    })
    protos = api.call("itemprototype.get", {
        "templateids": tid, "output": ["itemid", "key_", "type", "master_itemid", "uuid", "name"],
        "selectPreprocessing": ["type", "params"], "selectTags": ["tag", "value"],
    })
    triggers, tprotos = [], []
    for method, out in (("trigger.get", triggers), ("triggerprototype.get", tprotos)):
        fields = ["triggerid", "description", "expression", "recovery_expression",
                  "recovery_mode", "priority", "uuid", "opdata"]
        raw = api.call(method, {"templateids": tid, "output": fields,
                                "selectTags": ["tag", "value"],
                                "selectDependencies": ["description"]})
        expanded = api.call(method, {"templateids": tid,
                                     "output": ["triggerid", "expression", "recovery_expression"],
                                     "expandExpression": True})
        full = {t["triggerid"]: t for t in expanded}
        out += [{**t, "expanded": full[t["triggerid"]]["expression"],
                 "expanded_recovery": full[t["triggerid"]]["recovery_expression"]} for t in raw]
    graphs = api.call("graph.get", {
        "templateids": tid, "output": ["graphid", "name", "graphtype", "uuid"],
        "selectGraphItems": ["itemid"],
    })
    gprotos = api.call("graphprototype.get", {
        "templateids": tid, "output": ["graphid", "name", "uuid"], "selectGraphItems": ["itemid"],
    })
    dashboards = api.call("templatedashboard.get", {
        "templateids": tid, "output": "extend", "selectPages": "extend",
    })
    return {"template": tpl[0], "items": items, "rules": rules, "protos": protos,
            "triggers": triggers, "tprotos": tprotos, "graphs": graphs, "gprotos": gprotos,
            "dashboards": dashboards}


def _resolve(expr: str) -> str:
    """`expr` with every user macro (with or without a context) replaced by its default."""
    defaults = {m[2:-1]: v for m, v, _ in gen.MACROS}
    return re.sub(r'\{\$([A-Z0-9_.]+)(?::"[^"]*")?\}', lambda x: defaults[x[1]], expr)


def check_against_model(state: dict, name: str) -> None:
    """The API's view of template `name` equals the generator's model of it."""
    flavour = FLAVOUR_OF[name]
    tpl = gen.model(flavour)["zabbix_export"]["templates"][0]
    doc = gen.model(flavour)["zabbix_export"]
    assert state["template"]["uuid"] == tpl["uuid"], state["template"]
    assert "agent 2" in state["template"]["description"], "description must name agent 2"
    assert "zabbix_agentd" in state["template"]["description"]

    by_key = {i["key_"]: i for i in state["items"]}
    model_items = {i["key"]: i for i in tpl["items"]}
    assert set(by_key) == set(model_items), (sorted(by_key), sorted(model_items))
    master = by_key[SUMMARY_KEY]
    want_type = ITEM_TYPES[model_items[SUMMARY_KEY].get("type")]
    assert (master["type"], master["value_type"], master["history"], master["delay"]) == (
        want_type, "4", "0", "{$LINUX_STATUS.INTERVAL}"), master
    polled = sorted(k for k, i in by_key.items() if i["type"] != "18")
    assert polled == sorted([SUMMARY_KEY, gen.NETNS_MASTER_KEY]), f"not dependent: {polled}"
    masters = {k: by_key[k]["itemid"] for k in polled}
    for key, m in model_items.items():
        i = by_key[key]
        assert i["uuid"] == m["uuid"], (key, i["uuid"], m["uuid"])
        assert i["name"] == m["name"], (key, i["name"])
        got_pre = [(p["type"], p["params"]) for p in i["preprocessing"]]
        want_pre = [(PRE_TYPES[p["type"]], "\n".join(p["parameters"]))
                    for p in m.get("preprocessing", [])]
        assert got_pre == want_pre, (key, got_pre, want_pre)
        assert sorted((t["tag"], t["value"]) for t in i["tags"]) == sorted(
            (t["tag"], t["value"]) for t in m["tags"]), (key, i["tags"])
        if key not in masters:
            assert i["master_itemid"] == masters[m["master_item"]["key"]], i

    model_triggers = [t for i in tpl["items"] for t in i.get("triggers", [])]
    rule_m, netns_rule_m = tpl["discovery_rules"]
    model_tprotos = [t for r in tpl["discovery_rules"] for p in r["item_prototypes"]
                     for t in p.get("trigger_prototypes", [])]
    for got_list, want_list in ((state["triggers"], model_triggers),
                                (state["tprotos"], model_tprotos)):
        got = {t["description"]: t for t in got_list}
        assert set(got) == {t["name"] for t in want_list}, (sorted(got), want_list)
        for m in want_list:
            t = got[m["name"]]
            assert t["uuid"] == m["uuid"], (m["name"], t["uuid"])
            assert t["priority"] == PRIORITIES[m["priority"]], (m["name"], t["priority"])
            assert t["opdata"] == m["opdata"], t
            # Expanded expressions resolve the template's macros to their defaults.
            assert t["expanded"] == _resolve(m["expression"]), (t["expanded"], m["expression"])
            if "recovery_expression" in m:
                assert t["recovery_mode"] == "1", t
                assert t["expanded_recovery"] == _resolve(m["recovery_expression"]), t
            else:
                assert t["recovery_mode"] == "0", t
            assert [(x["tag"], x["value"]) for x in t["tags"]] == [
                (x["tag"], x["value"]) for x in m["tags"]], t
            assert sorted(d["description"] for d in t["dependencies"]) == sorted(
                d["name"] for d in m.get("dependencies", [])), t

    rules = {r["key_"]: r for r in state["rules"]}
    assert set(rules) == {r["key"] for r in tpl["discovery_rules"]}, sorted(rules)
    netns_rule = rules[netns_rule_m["key"]]
    assert (netns_rule["uuid"], netns_rule["delay"]) == (
        netns_rule_m["uuid"], netns_rule_m["delay"]), netns_rule
    rule = rules[rule_m["key"]]
    assert (rule["type"], rule["master_itemid"], rule["uuid"]) == (
        "18", master["itemid"], rule_m["uuid"]), rule
    assert [(p["type"], p["params"]) for p in rule["preprocessing"]] == [("12", "$.ports")], rule
    assert rule["lld_macro_paths"] == [{"lld_macro": "{#PORT}", "path": "$.port"}], rule
    protos = {p["key_"]: p for p in state["protos"]}
    assert set(protos) == {p["key"] for r in tpl["discovery_rules"]
                           for p in r["item_prototypes"]}, sorted(protos)
    for p in (p for r in tpl["discovery_rules"] for p in r["item_prototypes"]):
        got = protos[p["key"]]
        assert (got["type"], got["master_itemid"], got["uuid"]) == (
            "18", masters[p["master_item"]["key"]], p["uuid"]), got
        assert got["preprocessing"][0]["params"] == p["preprocessing"][0]["parameters"][0], got

    macros = {m["macro"]: m for m in state["template"]["macros"]}
    assert {m: (v["value"], v["description"]) for m, v in macros.items()} == {
        m: (v, d) for m, v, d in gen.MACROS}, macros

    graphs = {g["name"]: g for g in state["graphs"]}
    ids = {i["key_"]: i["itemid"] for i in state["items"]}
    for g in doc["graphs"]:
        assert g["name"] in graphs, (g["name"], sorted(graphs))
        assert {gi["itemid"] for gi in graphs[g["name"]]["gitems"]} == {
            ids[gi["item"]["key"]] for gi in g["graph_items"]}, g["name"]
    assert graphs["TCP connection states"]["graphtype"] == "1", "stacked"
    assert sorted(g["name"] for g in state["gprotos"]) == sorted(
        g["name"] for r in tpl["discovery_rules"] for g in r["graph_prototypes"]), state["gprotos"]

    [dash] = state["dashboards"]
    [mdash] = tpl["dashboards"]
    assert (dash["name"], dash["uuid"]) == (mdash["name"], mdash["uuid"]), dash
    assert len(dash["pages"]) == len(mdash["pages"]), dash["pages"]
    got_w = sorted((w["name"], w["type"]) for page in dash["pages"] for w in page["widgets"])
    want_w = sorted((w["name"], {"GRAPH_CLASSIC": "graph",
                                 "GRAPH_PROTOTYPE": "graphprototype"}[w["type"]])
                    for page in mdash["pages"] for w in page["widgets"])
    assert got_w == want_w, (got_w, want_w)
    for w in (w for page in dash["pages"] for w in page["widgets"]):
        refs = [f for f in w["fields"] if f["name"] in ("graphid", "itemid", "graphid.0",
                                                        "itemid.0")]
        assert refs and all(f["value"] not in ("", "0") for f in refs), (
            f"widget {w['name']!r} references nothing: {w['fields']}")


def template_ids(state: dict) -> dict:
    out = {"template": (state["template"]["templateid"], state["template"]["uuid"])}
    for part, idf, name in (("items", "itemid", "key_"), ("rules", "itemid", "key_"),
                            ("protos", "itemid", "key_"), ("triggers", "triggerid", "uuid"),
                            ("tprotos", "triggerid", "uuid"), ("graphs", "graphid", "name")):
        out[part] = sorted((x[name], x[idf], x["uuid"]) for x in state[part])
    return out


# -- data through a server -----------------------------------------------------------------


@dataclasses.dataclass
class HostUnderTest:
    """One monitored host. `agent_port`: the passive agent's port the poller connects to
    (None for an active agent: nothing connects to it)."""

    name: str
    kind: str  # "passive", "active", "proxy"
    template: str
    agent_port: int | None
    hostid: str = ""

    @property
    def own_host_wide(self) -> dict:
        return {"ESTABLISHED": 2, "TOTAL": 2} if self.agent_port else {}

    @property
    def own_agent_port(self) -> dict:
        return {"ESTABLISHED": 1, "TOTAL": 1} if self.agent_port else {}

    @property
    def ports(self) -> list[int]:
        return [*sc.SCENARIO_PORTS, *([self.agent_port] if self.agent_port else [])]


class Comparison:
    def __init__(self) -> None:
        self.exact: list[tuple[float, object]] = []
        self.full: list[float] = []
        self.bad: list[str] = []
        self.left_out = 0
        self.raced = 0

    def summary(self) -> str:
        return (f"{len(self.exact)} exact ({len(self.full)} with every per-port value), "
                f"{len(self.bad)} not exact, {self.left_out} left out near the test's own "
                f"requests or TIME_WAIT reaping, {self.raced} left out as racing a "
                f"short-lived monitoring connection")


def host_items(api, hostids) -> dict[str, dict[str, dict]]:
    items = api.call("item.get", {
        "hostids": hostids, "output": ["itemid", "hostid", "key_", "type", "value_type", "state",
                                       "error", "lastclock", "flags"],
    })
    out: dict[str, dict[str, dict]] = collections.defaultdict(dict)
    for i in items:
        out[i["hostid"]][i["key_"]] = i
    return out


def history(api, items, since) -> dict[str, list]:
    out = collections.defaultdict(list)
    by_type = collections.defaultdict(list)
    for i in items:
        by_type[int(i["value_type"])].append(i["itemid"])
    for vtype, ids in by_type.items():
        rows = api.call("history.get", {
            "history": vtype, "itemids": ids, "time_from": int(since) - 1,
            "sortfield": "clock", "sortorder": "ASC", "output": "extend",
        })
        for r in rows:
            out[r["itemid"]].append((int(r["clock"]) + int(r["ns"]) / 1e9, r["value"]))
    for v in out.values():
        v.sort()
    return out


def host_labels() -> dict[str, str]:
    return {**{STATE_KEYS[s]: s for s in STATES}, TOTAL_KEY: "TOTAL"}


def port_labels(ports) -> dict[str, tuple[int, str]]:
    return {port_key(m, p): (p, m) for p in ports for m in PORT_MEMBERS}


def group_polls(hist, items, keys: dict) -> dict[float, dict]:
    """Dependent values grouped by the timestamp of the master poll that produced them; a
    discard-unchanged item missing from a poll carries its last stored value."""
    polls: dict[float, dict] = collections.defaultdict(dict)
    for key, label in keys.items():
        if key not in items:
            continue
        for t, v in hist.get(items[key]["itemid"], []):
            polls[t][label] = int(float(v))
    for key in CARRIED:
        if key not in items or key not in keys:
            continue
        stored = hist.get(items[key]["itemid"], [])
        label = keys[key]
        for t, got in polls.items():
            if label not in got:
                before = [v for ts, v in stored if ts <= t]
                if before:
                    got[label] = int(float(before[-1]))
    return polls


def _own_pairs(sampler, t: float, agent_port: int | None) -> set[frozenset]:
    if agent_port is None:
        return set()
    before = sampler.between(t - CONNECT_MAX - 5.0, t - CONNECT_MAX)
    assert before, f"no ss snapshot in the 5 s before {t - CONNECT_MAX:.3f}"
    old = {s.ident for s in before[-1].sockets}
    return {frozenset((s.local, s.peer))
            for snap in sampler.between(t - CONNECT_MAX, t + SNAPSHOT_AFTER)
            for s in snap.sockets
            if s.touches_port(agent_port) and s.state != "LISTEN" and s.ident not in old}


def expected_values(snap, host: HostUnderTest, own_pairs) -> dict:
    sockets = [s for s in snap.sockets if frozenset((s.local, s.peer)) not in own_pairs]
    counts = sc.count_states(sockets)
    want = {s: counts[s] + host.own_host_wide.get(s, 0) for s in STATES}
    want["TOTAL"] = len(sockets) + host.own_host_wide.get("TOTAL", 0)
    for p in host.ports:
        local = [s for s in sockets if s.local_port == p]
        own = host.own_agent_port if p == host.agent_port else {}
        per_state = sc.count_states(local)
        for m in PORT_MEMBERS:
            if m == "TOTAL":
                want[(p, m)] = len(local) + own.get(m, 0)
            elif m == "accept_queue":
                want[(p, m)] = sum(s.recv_q for s in local if s.state == "LISTEN")
            else:
                want[(p, m)] = per_state[m] + own.get(m, 0)
    return want


def _monitoring_churn(sampler, t: float, ports, own_pairs) -> list[str]:
    """Non-LISTEN sockets on the monitoring's own ports (server and proxy trappers, the other
    agents) that are not in every snapshot of the poll's window: connections that opened
    or closed around the scan."""
    snaps = sampler.between(t - SNAPSHOT_WINDOW, t + SNAPSHOT_AFTER)
    sets = []
    for snap in snaps:
        sets.append({s.ident for s in snap.sockets
                     if s.state != "LISTEN" and any(s.touches_port(p) for p in ports)
                     and frozenset((s.local, s.peer)) not in own_pairs})
    if not sets:
        return []
    return sorted(map(str, set.union(*sets) - set.intersection(*sets)))


def transients(sampler, t: float) -> list[str]:
    snaps = sampler.between(t - SNAPSHOT_WINDOW, t + SNAPSHOT_AFTER)
    idents = [{s.ident for s in snap.sockets} for snap in snaps]
    if not idents:
        return []
    changing = set.union(*idents) - set.intersection(*idents)
    return [f"{ident} in {sum(ident in i for i in idents)}/{len(idents)} snapshots"
            for ident in sorted(changing)]


def compare_polls(items, hist, host: HostUnderTest, sampler, quiet, monitoring_ports,
                  since: float = 0.0) -> Comparison:
    hl, pl = host_labels(), port_labels(host.ports)
    polls = group_polls(hist, items, {**hl, **pl})
    churn_ports = [p for p in monitoring_ports if p != host.agent_port]
    c = Comparison()
    for t, got in sorted(polls.items()):
        if t < since:  # before the scenario was there; read only for the carried values
            continue
        missing = [k for k in hl.values() if k not in got]
        assert not missing, f"{host.name}: poll at {t:.3f} lacks host-wide values {missing}: {got}"
        if not quiet(t):
            c.left_out += 1
            continue
        best = exact = None
        snaps = sampler.between(t - SNAPSHOT_WINDOW, t + SNAPSHOT_AFTER)
        own = _own_pairs(sampler, t, host.agent_port)
        for snap in snaps:
            want = expected_values(snap, host, own)
            diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
            if not diff:
                exact = snap
                break
            if best is None or len(diff) < len(best[1]):
                best = (snap, diff)
        if exact is not None:
            c.exact.append((t, exact))
            if all(k in got for k in pl.values()):
                c.full.append(t)
        elif best is None:
            c.bad.append(f"{host.name}: poll at {t:.3f}: no ss snapshot around it")
        elif _monitoring_churn(sampler, t, churn_ports, own):
            c.raced += 1
        else:
            c.bad.append(
                f"{host.name}: poll at {t:.3f}: {len(snaps)} snapshots; (got, ss+own) "
                f"differences with the closest one (at {best[0].t:.3f}): {best[1]}; own "
                f"connection {own}; sockets changing around it: {transients(sampler, t)}")
    return c


def quiet_filter(activity, scenario):
    scenario_reap = scenario.time_wait_wall + TW_LIFETIME

    def quiet(t: float) -> bool:
        lo, hi = t - SNAPSHOT_WINDOW, t + SNAPSHOT_AFTER
        if activity.overlaps(t - QUIET_BEFORE, t + QUIET_AFTER):
            return False
        if activity.overlaps(lo - TW_LIFETIME - TW_REAP_LATE, hi - TW_LIFETIME):
            return False
        return not (lo - TW_REAP_LATE <= scenario_reap <= hi)

    return quiet


def collect_reported(stack, hosts: list[HostUnderTest], sampler, scenario, monitoring_ports,
                     interval_s: int, timeout: float, describe, label: str) -> dict:
    """collect() on the stack's API, then the polls-vs-ss summary of every host and the time
    collection took, printed (`label`: the run's name in those lines, e.g. "7.0 ")."""
    out = collect(stack.api, hosts, sampler, stack.activity, scenario, monitoring_ports,
                  interval_s, timeout, describe)
    for h in hosts:
        print(f"\n[{label}{h.name}: {h.template}] polls vs ss: {out[h.hostid][2].summary()}")
    run = f"tests/server {label.strip()}".strip()
    print(f"[{run}] {out['waited']:.0f} s of collection")
    return out


def collect(api, hosts: list[HostUnderTest], sampler, activity, scenario, monitoring_ports,
            interval_s: int, timeout: float, describe) -> dict:
    """Waits until every host has MIN_POLLS exact polls with every per-port value; returns
    {hostid: (items, history, Comparison)}."""
    start = time.time()
    quiet = quiet_filter(activity, scenario)
    last: dict = {"why": {}}
    base_keys = [*STATE_KEYS.values(), TOTAL_KEY, *RATE_KEYS]

    def ready() -> bool:
        all_items = host_items(api, [h.hostid for h in hosts])
        last["items"] = all_items
        done = True
        wanted_items = []
        for h in hosts:
            items = all_items.get(h.hostid, {})
            per_port = [port_key(m, p) for p in h.ports for m in PORT_MEMBERS]
            unsupported = {k: i["error"] for k, i in items.items() if i["state"] == "1"}
            broken = {k: e for k, e in unsupported.items() if "Timeout" not in e}
            assert not broken, (f"{h.name}: items not supported: {json.dumps(broken, indent=1)}"
                                f"\n{describe()}")
            missing = [k for k in [*base_keys, *per_port] if k not in items]
            if missing:
                last["why"][h.name] = f"items not there yet: {missing[:5]}..."
                done = False
                continue
            wanted_items += [items[k] for k in [*base_keys, *per_port]]
        if not wanted_items:
            return False
        # From well before: a discard-unchanged item's last stored value may be older.
        hist = history(api, wanted_items, start - CARRY_LOOKBACK)
        last["hist"] = hist
        results = {}
        for h in hosts:
            items = all_items.get(h.hostid, {})
            if any(k not in items for k in base_keys):
                continue
            short = {k: n for k in RATE_KEYS
                     if (n := len(hist.get(items[k]["itemid"], []))) < MIN_POLLS}
            c = compare_polls(items, hist, h, sampler, quiet, monitoring_ports, since=start)
            assert not c.bad, f"polls vs ss: {c.summary()}\n" + "\n".join(c.bad) + describe()
            results[h.hostid] = (items, hist, c)
            if short:
                last["why"][h.name] = f"rate items with fewer than {MIN_POLLS} values: {short}"
                done = False
            elif len(c.full) < MIN_POLLS:
                last["why"][h.name] = f"fewer than {MIN_POLLS} full exact polls: {c.summary()}"
                done = False
            else:
                last["why"].pop(h.name, None)
        last["results"] = results
        return done and len(results) == len(hosts)

    # The test's own API rounds open sockets (and leave TIME_WAIT ones, reaped 60 s later)
    # that polls near them may see: rounds every second interval, always at the same moment
    # of it, disturb only the polls of every other interval (the reaping of one round's
    # sockets falls on a later round); the intervals between are clean for every host.
    deadline = time.monotonic() + timeout
    next_round = time.time() + ROUND_EVERY * interval_s
    while True:
        time.sleep(max(0.0, next_round - time.time()))
        next_round += ROUND_EVERY * interval_s
        if ready():
            break
        # Progress, for whoever watches the run (pytest -s).
        print(f"[collect {time.time() - start:.0f} s] waiting for: {last['why']}", flush=True)
        assert time.monotonic() < deadline, (
            f"not every host was collected within {timeout:.0f} s: {last['why']}\n{describe()}")
    out = last["results"]
    out["waited"] = time.time() - start
    return out
