"""conf/linux_status_template.yaml through a real Zabbix 6.0 server, end to end.

1. The template imports through the API (`configuration.import`) and holds what it promises:
   ONE passive master item, linux_status[tcp_summary] (history 0), and everything else a
   dependent item of it: an item per TCP state + TOTAL, the listen-queue rates, a dependent
   discovery rule with per-port item and trigger prototypes; triggers whose thresholds are
   documented user macros, the stacked graph. A second import changes nothing (the uuids are
   stable).
2. A host with an agent interface on the namespace's zabbix_agentd (with liblinux_status.so,
   the e2e scenario's known sockets around it) gets the template, with
   {$LINUX_STATUS.INTERVAL}=15s; the host has exactly one item the server polls. Within a
   bounded wait the server has collected, from the polls of that one master:
   - every per-state item and TOTAL;
   - discovered per-port items for the scenario's ports and the agent's port;
   - the ListenOverflows / ListenDrops rates, stamped with those same polls.
   Every value of a poll comes from one scan, so each poll is compared with `ss -Htan` as a
   whole (the sampler keeps a snapshot every 50 ms; under load one ss run takes ~1 s): it
   is EXACT when one snapshot from SNAPSHOT_WINDOW s before to SNAPSHOT_AFTER s after the
   poll's timestamp, with the poll's own connection counted as open (the server's client
   socket and the agent's accepted one: +2 ESTABLISHED host-wide, +1 ESTABLISHED on the
   agent's port, whatever state the snapshot caught that connection in), gives every state
   value, TOTAL and every per-port value (accept queue included). EVERY poll compared must
   be exact (no tolerance), and at least MIN_POLLS of them must carry all the per-port
   values. The snapshot matching the state items, with the stack's and agent's ports left
   out, equals the scenario's known table.
   Left out (counted, never compared) are the polls whose scan may see sockets the test made
   itself come or go: polls near one of its own requests to the frontend, and polls near
   the kernel reaping TIME_WAIT sockets those requests (or the scenario) left: 60 s after
   the close, up to TW_REAP_LATE s late (timer-wheel granularity). The test talks to the
   frontend only in a slot of the interval (it learns the poll's phase) that keeps both
   away from later polls, so leaving out is rare. Scan timeouts (a host so loaded that
   /proc takes seconds) are retried by the server; any other unsupported item fails at once.
3. A logged-in browser session fetches the graph as a PNG (saved to
   target/test-artifacts/template-graph.png; copying it to docs/ is an explicit step).
"""
from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

import scenario as sc

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_FILE = REPO / "conf" / "linux_status_template.yaml"
# A build artefact: the README's picture (docs/template-graph.png) is refreshed from it by
# hand (`cp target/test-artifacts/template-graph.png docs/`), not by every run.
GRAPH_PNG = REPO / "target" / "test-artifacts" / "template-graph.png"
TEMPLATE = "Linux TCP states by linux_status"
HOST = "linux-status-server-test"
# 15 s: divides 60 (TIME_WAIT reaping keeps the phase of the requests that made it) and
# leaves a slot for the test's API rounds whose reaping stays away from the next polls.
INTERVAL = "15s"
STATES = sc.KERNEL_STATES
SUMMARY_KEY = "linux_status[tcp_summary]"  # the template's only master item
LISTEN_KEY = "linux_status[listen_stats]"  # not in the template any more
STATE_KEYS = {s: f"linux_status.tcp.state[{s}]" for s in STATES}
TOTAL_KEY = "linux_status.tcp.total"
RATE_KEYS = ("linux_status.tcp.listen_overflows.rate", "linux_status.tcp.listen_drops.rate")
PORT_MEMBERS = ("ESTABLISHED", "SYN_RECV", "CLOSE_WAIT", "TIME_WAIT", "TOTAL", "accept_queue")
MACROS = {
    "{$LINUX_STATUS.INTERVAL}", "{$LINUX_STATUS.TIME_WAIT.MAX}", "{$LINUX_STATUS.CLOSE_WAIT.MAX}",
    "{$LINUX_STATUS.CLOSE_WAIT.PERIOD}", "{$LINUX_STATUS.SYN_RECV.MAX}",
    "{$LINUX_STATUS.LISTEN_OVERFLOWS.MAX}", "{$LINUX_STATUS.ACCEPT_QUEUE.MAX}",
}
# The server's poll: its client socket and the agent's accepted socket, both ESTABLISHED.
OWN_HOST_WIDE = {"ESTABLISHED": 2, "TOTAL": 2}
OWN_AGENT_PORT = {"ESTABLISHED": 1, "TOTAL": 1}  # only the accepted socket has the agent port
COLLECT_TIMEOUT = 240.0
MIN_POLLS = 2
API_POLL = 5.0
# A poll is compared with the ss snapshots from SNAPSHOT_WINDOW seconds before its timestamp
# (the server stamps the value right after the agent answered) to SNAPSHOT_AFTER after ...
SNAPSHOT_WINDOW = 3.0
SNAPSHOT_AFTER = 1.5
# ... unless one of the test's own HTTP requests ran within these bounds around it.
QUIET_BEFORE, QUIET_AFTER = 1.5, SNAPSHOT_AFTER + 0.2
# A poll's connection is opened at most the server's Timeout (4 s, stack.py) before its
# timestamp: sockets on the agent's port that were not there this long before are its own.
CONNECT_MAX = 4.5
# Linux reaps a TIME_WAIT socket 60 s after the close, late by up to the timer wheel's
# granularity for a 60 s timer: 512 jiffies (2.05 s) at HZ=250, 4096 (4.1 s) at HZ=1000.
TW_LIFETIME = sc.TIME_WAIT_LIFETIME
TW_REAP_LATE = 4.5


def port_key(member: str, port) -> str:
    if member in ("TOTAL", "accept_queue"):
        return f"linux_status.port.{member.lower()}[{port}]"
    return f"linux_status.port.state[{port},{member}]"


def import_template(api) -> object:
    rules = {
        "groups": {"createMissing": True},
        "templates": {"createMissing": True, "updateExisting": True},
        "items": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
        "discoveryRules": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
        "triggers": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
        "graphs": {"createMissing": True, "updateExisting": True, "deleteMissing": True},
        "templateLinkage": {"createMissing": True},
    }
    return api.call("configuration.import", {
        "format": "yaml", "source": TEMPLATE_FILE.read_text(), "rules": rules,
    })


def template_state(api) -> dict:
    """Everything the import created, with ids, for comparison across imports."""
    tpl = api.call("template.get", {
        "filter": {"host": TEMPLATE}, "output": ["templateid", "host", "name", "uuid"],
        "selectMacros": ["macro", "value", "description"], "selectTags": ["tag", "value"],
    })
    assert len(tpl) == 1, f"expected one template {TEMPLATE!r}, got {tpl}"
    tid = tpl[0]["templateid"]
    items = api.call("item.get", {
        "templateids": tid, "output": ["itemid", "key_", "type", "value_type", "delay",
                                       "history", "master_itemid", "uuid"],
        "selectPreprocessing": ["type", "params"], "selectTags": ["tag", "value"],
    })
    rules = api.call("discoveryrule.get", {
        "templateids": tid, "output": ["itemid", "key_", "type", "master_itemid", "uuid"],
        "selectLLDMacroPaths": ["lld_macro", "path"], "selectPreprocessing": ["type", "params"],
    })
    protos = api.call("itemprototype.get", {
        "templateids": tid, "output": ["itemid", "key_", "type", "master_itemid", "uuid"],
        "selectPreprocessing": ["type", "params"],
    })
    # Raw expressions keep the user macros; expanded ones show the functions and keys
    # (and resolve the macros).
    triggers, tprotos = [], []
    for method, out in (("trigger.get", triggers), ("triggerprototype.get", tprotos)):
        raw = api.call(method, {"templateids": tid,
                                "output": ["triggerid", "description", "expression", "uuid"]})
        expanded = api.call(method, {"templateids": tid, "output": ["triggerid", "expression"],
                                     "expandExpression": True})
        full = {t["triggerid"]: t["expression"] for t in expanded}
        out += [{**t, "expanded": full[t["triggerid"]]} for t in raw]
    graphs = api.call("graph.get", {
        "templateids": tid, "output": ["graphid", "name", "graphtype", "uuid"],
        "selectGraphItems": ["itemid"],
    })
    return {"template": tpl[0], "items": items, "rules": rules, "protos": protos,
            "triggers": triggers, "tprotos": tprotos, "graphs": graphs}


# -- 1. import -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imported(stack):
    result = import_template(stack.api)
    assert result is True, f"configuration.import returned {result!r}"
    return template_state(stack.api)


def test_template_contents(imported):
    by_key = {i["key_"]: i for i in imported["items"]}
    want = {SUMMARY_KEY, TOTAL_KEY, *STATE_KEYS.values(), *RATE_KEYS}
    assert set(by_key) == want, f"template items {sorted(by_key)} != {sorted(want)}"
    # One master: the only item the server polls (type 0, Zabbix agent), text, not stored.
    polled = [i["key_"] for i in imported["items"] if i["type"] != "18"]
    assert polled == [SUMMARY_KEY], f"items that are not dependent: {polled}"
    m = by_key[SUMMARY_KEY]
    assert (m["type"], m["value_type"], m["history"], m["delay"], m["master_itemid"]) == (
        "0", "4", "0", "{$LINUX_STATUS.INTERVAL}", "0"), f"master item {SUMMARY_KEY}: {m}"
    summary_id = m["itemid"]
    for state, key in [*STATE_KEYS.items(), ("TOTAL", TOTAL_KEY)]:
        i = by_key[key]
        assert (i["type"], i["value_type"], i["master_itemid"]) == ("18", "3", summary_id), i
        assert [(p["type"], p["params"]) for p in i["preprocessing"]] == [("12", f"$.{state}")], i
        assert {"tag": "component", "value": "network"} in i["tags"], i
    for key, member in zip(RATE_KEYS, ("ListenOverflows", "ListenDrops")):
        i = by_key[key]
        assert (i["type"], i["value_type"], i["master_itemid"]) == ("18", "0", summary_id), i
        # 12 JSONPath, 10 change per second.
        assert [p["type"] for p in i["preprocessing"]] == ["12", "10"], i
        assert i["preprocessing"][0]["params"] == f"$.{member}", i

    [rule] = imported["rules"]
    assert (rule["type"], rule["master_itemid"]) == ("18", summary_id), rule
    assert [(p["type"], p["params"]) for p in rule["preprocessing"]] == [("12", "$.ports")], rule
    assert rule["lld_macro_paths"] == [{"lld_macro": "{#PORT}", "path": "$.port"}], rule
    protos = {p["key_"]: p for p in imported["protos"]}
    want = {port_key(m, "{#PORT}") for m in PORT_MEMBERS}
    assert set(protos) == want, f"item prototypes {sorted(protos)} != {sorted(want)}"
    for member in PORT_MEMBERS:
        p = protos[port_key(member, "{#PORT}")]
        assert (p["type"], p["master_itemid"]) == ("18", summary_id), p
        assert p["preprocessing"][0]["params"] == (
            f"$.ports[?(@.port == {{#PORT}})].{member}.first()"), p

    triggers = imported["triggers"]
    assert len(triggers) == 4, triggers
    for macro, key in (("TIME_WAIT.MAX", STATE_KEYS["TIME_WAIT"]),
                       ("CLOSE_WAIT.MAX", STATE_KEYS["CLOSE_WAIT"]),
                       ("SYN_RECV.MAX", STATE_KEYS["SYN_RECV"]),
                       ("LISTEN_OVERFLOWS.MAX", RATE_KEYS[0])):
        hits = [t for t in triggers if f"{{$LINUX_STATUS.{macro}}}" in t["expression"]]
        assert len(hits) == 1, f"one trigger should use {{$LINUX_STATUS.{macro}}}: {triggers}"
        assert hits[0]["expanded"].startswith(("last(/", "min(/")), hits
        assert f"/{TEMPLATE}/{key}" in hits[0]["expanded"], hits
    [tproto] = imported["tprotos"]
    assert '{$LINUX_STATUS.ACCEPT_QUEUE.MAX:"{#PORT}"}' in tproto["expression"], tproto
    assert "linux_status.port.accept_queue[{#PORT}]" in tproto["expanded"], tproto

    macros = {m["macro"]: m for m in imported["template"]["macros"]}
    assert set(macros) == MACROS, sorted(macros)
    assert macros["{$LINUX_STATUS.INTERVAL}"]["value"] == "1m"
    assert macros["{$LINUX_STATUS.LISTEN_OVERFLOWS.MAX}"]["value"] == "0"
    undocumented = [m for m, v in macros.items() if len(v["description"]) < 20]
    assert not undocumented, f"macros without a description: {undocumented}"

    graphs = {g["name"]: g for g in imported["graphs"]}
    g = graphs.get("TCP connection states")
    assert g is not None, f"no graph 'TCP connection states' in {sorted(graphs)}"
    assert g["graphtype"] == "1", f"graph type {g['graphtype']}, expected 1 (stacked)"
    state_ids = {by_key[STATE_KEYS[s]]["itemid"] for s in STATES}
    assert {gi["itemid"] for gi in g["gitems"]} == state_ids, g


def test_reimport_changes_nothing(stack, imported):
    """The uuids are fixed: importing the same file again updates in place (same ids)."""
    assert import_template(stack.api) is True
    again = template_state(stack.api)

    def ids(state):
        out = {"template": (state["template"]["templateid"], state["template"]["uuid"])}
        for part, idf, name in (("items", "itemid", "key_"), ("rules", "itemid", "key_"),
                                ("protos", "itemid", "key_"), ("triggers", "triggerid", "uuid"),
                                ("tprotos", "triggerid", "uuid"), ("graphs", "graphid", "name")):
            out[part] = sorted((x[name], x[idf], x["uuid"]) for x in state[part])
        return out

    assert ids(again) == ids(imported)
    uuids = [x["uuid"] for part in ("items", "rules", "protos", "triggers", "tprotos", "graphs")
             for x in imported[part]] + [imported["template"]["uuid"]]
    assert len(set(uuids)) == len(uuids), "uuids are not unique"


# -- 2. data through the server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def host(stack, imported, agent, scenario):
    api = stack.api
    groups = api.call("hostgroup.get", {"filter": {"name": "linux_status tests"}})
    gid = (groups[0]["groupid"] if groups else
           api.call("hostgroup.create", {"name": "linux_status tests"})["groupids"][0])
    hostid = api.call("host.create", {
        "host": HOST, "groups": [{"groupid": gid}],
        "interfaces": [{"type": 1, "main": 1, "useip": 1, "ip": "127.0.0.1", "dns": "",
                        "port": str(agent.cfg.port)}],
        "macros": [{"macro": "{$LINUX_STATUS.INTERVAL}", "value": INTERVAL}],
    })["hostids"][0]
    api.call("host.massadd", {"hosts": [{"hostid": hostid}],
                              "templates": [{"templateid": imported["template"]["templateid"]}]})
    return hostid


class Collected:
    def __init__(self, items, history, waited, polls, counters_before) -> None:
        self.items = items  # key -> item
        self.history = history  # itemid -> [(clock float, value str)]
        self.waited = waited
        self.polls = polls  # Comparison of the master's polls with ss
        # The namespace's ListenOverflows/ListenDrops before the first collected poll.
        self.counters_before = counters_before

    def values(self, key):
        return self.history.get(self.items[key]["itemid"], [])


def _host_items(api, hostid):
    items = api.call("item.get", {
        "hostids": hostid, "output": ["itemid", "key_", "type", "value_type", "state", "error",
                                      "lastclock", "flags"],
    })
    return {i["key_"]: i for i in items}


def listen_counters() -> dict[str, int]:
    """TcpExt ListenOverflows and ListenDrops of this namespace, from /proc/net/netstat."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines, lines[1:]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return {k: table[k] for k in ("ListenOverflows", "ListenDrops")}
    raise AssertionError("no TcpExt lines in /proc/net/netstat")


def _history(api, items, since):
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
    return out


# -- comparing the server's values with ss ---------------------------------------------------
#
# The dependent values of one master poll share its timestamp T (the server stamps the value
# right after the agent answered), which groups them. A poll is compared with the ss
# snapshots of [T - SNAPSHOT_WINDOW, T + SNAPSHOT_AFTER]: it is EXACT when one snapshot, with
# the poll's own connection counted as open, gives every value of the poll, host-wide and
# per port. The own connection is the only one to the agent (one item polled, nothing else
# connects to it): its sockets are those on the agent's port that the last snapshot of
# CONNECT_MAX s before T does not have; a snapshot may hold none (before the connect), the
# ESTABLISHED pair, or what the close left (TIME_WAIT, FIN_WAIT*). Snapshots after T thus
# count too: a TIME_WAIT socket reaped between the connect and the scan is seen there.
# Every poll must be exact. Polls near the test's own requests (or the reaping of the
# TIME_WAIT sockets they, or the scenario, left) are left out, see the module docstring.


class Comparison:
    def __init__(self) -> None:
        self.exact: list[tuple[float, object]] = []  # (poll time, matching snapshot)
        self.full: list[float] = []  # exact polls that carry every per-port value
        self.bad: list[str] = []
        self.left_out = 0

    def summary(self) -> str:
        return (f"{len(self.exact)} exact ({len(self.full)} with every per-port value), "
                f"{len(self.bad)} not exact, {self.left_out} left out (near the test's own "
                f"requests or the reaping of TIME_WAIT sockets left by them or the scenario)")


def _host_labels() -> dict[str, str]:
    return {**{STATE_KEYS[s]: s for s in STATES}, TOTAL_KEY: "TOTAL"}


def _port_labels(ports) -> dict[str, tuple[int, str]]:
    return {port_key(m, p): (p, m) for p in ports for m in PORT_MEMBERS}


def _group_polls(history, items, keys: dict) -> dict[float, dict]:
    """Dependent values grouped by the timestamp of the master poll that produced them."""
    polls: dict[float, dict] = collections.defaultdict(dict)
    for key, label in keys.items():
        if key not in items:
            continue
        for t, v in history.get(items[key]["itemid"], []):
            polls[t][label] = int(float(v))
    return polls


def _own_pairs(sampler, t: float, agent_port: int) -> set[frozenset]:
    """The address pairs of the poll's own connection, as seen around t (may be empty)."""
    before = sampler.between(t - CONNECT_MAX - 5.0, t - CONNECT_MAX)
    assert before, f"no ss snapshot in the 5 s before {t - CONNECT_MAX:.3f}"
    old = {s.ident for s in before[-1].sockets}
    return {frozenset((s.local, s.peer))
            for snap in sampler.between(t - CONNECT_MAX, t + SNAPSHOT_AFTER)
            for s in snap.sockets
            if s.touches_port(agent_port) and s.state != "LISTEN" and s.ident not in old}


def _expected(snap, ports, agent_port, own_pairs) -> dict:
    """Every value one poll would give if its scan saw `snap` with its own connection
    open (whatever state `snap` caught that connection in)."""
    sockets = [s for s in snap.sockets if frozenset((s.local, s.peer)) not in own_pairs]
    counts = sc.count_states(sockets)
    want = {s: counts[s] + OWN_HOST_WIDE.get(s, 0) for s in STATES}
    want["TOTAL"] = len(sockets) + OWN_HOST_WIDE["TOTAL"]
    for p in ports:
        local = [s for s in sockets if s.local_port == p]
        own = OWN_AGENT_PORT if p == agent_port else {}
        per_state = sc.count_states(local)
        for m in PORT_MEMBERS:
            if m == "TOTAL":
                want[(p, m)] = len(local) + own.get(m, 0)
            elif m == "accept_queue":
                want[(p, m)] = sum(s.recv_q for s in local if s.state == "LISTEN")
            else:
                want[(p, m)] = per_state[m] + own.get(m, 0)
    return want


def _transients(sampler, t: float) -> list[str]:
    """Sockets that come and go in the snapshots around t (for failure messages)."""
    snaps = sampler.between(t - SNAPSHOT_WINDOW, t + SNAPSHOT_AFTER)
    idents = [{s.ident for s in snap.sockets} for snap in snaps]
    if not idents:
        return []
    changing = set.union(*idents) - set.intersection(*idents)
    return [f"{ident} in {sum(ident in i for i in idents)}/{len(idents)} snapshots"
            for ident in sorted(changing)]


def _compare_polls(items, history, agent, sampler, quiet) -> Comparison:
    ports = [*sc.SCENARIO_PORTS, agent.cfg.port]
    host_labels, port_labels = _host_labels(), _port_labels(ports)
    polls = _group_polls(history, items, {**host_labels, **port_labels})
    c = Comparison()
    for t, got in sorted(polls.items()):
        # Per-port items exist only once discovery has run; the host-wide ones always.
        missing = [k for k in host_labels.values() if k not in got]
        assert not missing, f"poll at {t:.3f} lacks the host-wide values {missing}: {got}"
        if not quiet(t):
            c.left_out += 1
            continue
        best = None
        exact = None
        snaps = sampler.between(t - SNAPSHOT_WINDOW, t + SNAPSHOT_AFTER)
        own = _own_pairs(sampler, t, agent.cfg.port)
        for snap in snaps:
            want = _expected(snap, ports, agent.cfg.port, own)
            diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
            if not diff:
                exact = snap
                break
            if best is None or len(diff) < len(best[1]):
                best = (snap, diff)
        if exact is not None:
            c.exact.append((t, exact))
            if all(k in got for k in port_labels.values()):
                c.full.append(t)
        elif best is None:
            c.bad.append(f"poll at {t:.3f}: no ss snapshot from {SNAPSHOT_WINDOW} s before "
                         f"to {SNAPSHOT_AFTER} s after")
        else:
            c.bad.append(
                f"poll at {t:.3f}: {len(snaps)} snapshots; (server, ss+own) differences with "
                f"the closest one (at {best[0].t:.3f}): {best[1]}; own connection {own}; "
                f"sockets changing around it: {_transients(sampler, t)}")
    return c


@pytest.fixture(scope="module")
def collected(stack, host, agent, scenario, sampler):
    api = stack.api
    expected_ports = [*sc.SCENARIO_PORTS, agent.cfg.port]
    per_port_keys = [port_key(m, p) for p in expected_ports for m in PORT_MEMBERS]
    base_keys = [*STATE_KEYS.values(), TOTAL_KEY, *RATE_KEYS]
    quiet = _quiet(stack, scenario)
    counters_before = listen_counters()
    start = time.time()
    last = {}

    def ready():
        items = _host_items(api, host)
        last["items"] = items
        unsupported = {k: i["error"] for k, i in items.items()
                       if i["state"] == "1" and (k in base_keys or k in per_port_keys
                                                 or k == SUMMARY_KEY)}
        # A scan that ran past the agent's Timeout (a host so loaded that reading /proc
        # took seconds) is retried at the next poll; any other error is final.
        broken = {k: e for k, e in unsupported.items() if "Timeout" not in e}
        last["unsupported"] = unsupported
        assert not broken, (
            f"items not supported on the server: {json.dumps(broken, indent=1)}\n"
            f"{stack.describe()}"
        )
        missing = [k for k in [*base_keys, *per_port_keys] if k not in items]
        if missing:
            last["why"] = f"items not there yet: {missing}"
            return False
        hist = _history(api, [items[k] for k in [*base_keys, *per_port_keys]], start)
        last["hist"] = hist
        short = {k: n for k in RATE_KEYS
                 if (n := len(hist.get(items[k]["itemid"], []))) < MIN_POLLS}
        if short:
            last["why"] = f"rate items with fewer than {MIN_POLLS} values: {short}"
            return False
        c = last["polls"] = _compare_polls(items, hist, agent, sampler, quiet)
        # Not exact is final: the next rounds would only add polls.
        assert not c.bad, (f"polls of {SUMMARY_KEY} vs ss: {c.summary()}\n"
                           + "\n".join(c.bad) + f"\n{stack.describe()}")
        if len(c.full) < MIN_POLLS:
            last["why"] = (f"fewer than {MIN_POLLS} exact polls with every per-port value: "
                           f"{c.summary()}")
            return False
        return True

    deadline = time.monotonic() + COLLECT_TIMEOUT
    while True:
        # Once the first values are in, their timestamps give the phase of the master item
        # within the interval: talk to the frontend only well away from it.
        _wait_for_quiet_slot(_master_phases(last))
        if ready():
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"the server did not collect the items within {COLLECT_TIMEOUT:.0f} s: "
                f"{last.get('why')}\nunsupported now: {last.get('unsupported')}\n"
                f"{stack.describe()}\n{agent.describe()[-3000:]}",
                pytrace=False,
            )
        time.sleep(API_POLL)
    return Collected(last["items"], last["hist"], time.time() - start, last["polls"],
                     counters_before)


INTERVAL_S = int(INTERVAL.rstrip("s"))
assert 60 % INTERVAL_S == 0, "TIME_WAIT reaping must keep the phase within the interval"
# An API round (a few requests) takes at most this long.
ROUND_BUDGET = 2.0


def _master_phases(last) -> list[float]:
    """Offset (seconds within INTERVAL_S) at which the server polls the master item, from
    the timestamps of its dependent values seen so far (none yet: an empty list)."""
    items, hist = last.get("items"), last.get("hist")
    if not items or not hist:
        return []
    values = hist.get(items.get(TOTAL_KEY, {}).get("itemid"), [])
    return [values[-1][0] % INTERVAL_S] if values else []


def _wait_for_quiet_slot(phases: list[float]) -> None:
    if not phases:
        return
    for _ in range(int(INTERVAL_S / 0.1) + 1):
        now = time.time() % INTERVAL_S
        since = min((now - p) % INTERVAL_S for p in phases)
        until = min((p - now) % INTERVAL_S for p in phases)
        # Away from the last poll's snapshots; and the round's requests, and the reaping of
        # the TIME_WAIT sockets they leave (60 s later: the same phase, up to TW_REAP_LATE
        # late), end before the next poll's snapshots begin.
        if (since > QUIET_AFTER + 0.5
                and until > ROUND_BUDGET + TW_REAP_LATE + max(QUIET_BEFORE, SNAPSHOT_WINDOW)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no quiet slot between polls at phases {phases} of {INTERVAL_S} s")


def _quiet(stack, scenario):
    """False for a poll at t that the test's own sockets may disturb: a request of the test
    near it, or the reaping of TIME_WAIT sockets left by a request (or by the scenario)
    during [t - SNAPSHOT_WINDOW, t + SNAPSHOT_AFTER]."""
    scenario_reap = scenario.time_wait_wall + TW_LIFETIME

    def quiet(t: float) -> bool:
        lo, hi = t - SNAPSHOT_WINDOW, t + SNAPSHOT_AFTER
        if stack.activity.overlaps(t - QUIET_BEFORE, t + QUIET_AFTER):
            return False
        if stack.activity.overlaps(lo - TW_LIFETIME - TW_REAP_LATE, hi - TW_LIFETIME):
            return False
        return not (lo - TW_REAP_LATE <= scenario_reap <= hi)

    return quiet


def _expected_scenario(scenario, t: float) -> dict[str, set[int]]:
    """The scenario's known counts at time t (its TIME_WAIT sockets expire after 60 s;
    the kernel may reap them up to a few seconds late)."""
    want = {s: {n} for s, n in scenario.counts.items()}
    age = t - scenario.time_wait_wall
    if age > sc.TIME_WAIT_LIFETIME + 10:
        want["TIME_WAIT"] = {0}
    elif age > sc.TIME_WAIT_LIFETIME - 1:
        want["TIME_WAIT"] = set(range(scenario.counts["TIME_WAIT"] + 1))
    return want


def test_one_master_poll_per_interval(collected):
    """The host's only polled item is the master; every dependent value, per-port ones and
    rates included, is stamped with one of its polls."""
    polled = sorted(k for k, i in collected.items.items() if i["type"] != "18")
    assert polled == [SUMMARY_KEY], f"items the server polls on the host: {polled}"
    assert LISTEN_KEY not in collected.items
    stamps = {t for t, _ in collected.values(TOTAL_KEY)}
    for key, item in collected.items.items():
        if item["type"] != "18":
            continue
        strays = [t for t, _ in collected.values(key) if t not in stamps]
        assert not strays, f"{key}: values not stamped with a master poll: {strays}"
    gaps = [b - a for a, b in zip(sorted(stamps), sorted(stamps)[1:])]
    assert all(gap > INTERVAL_S / 2 for gap in gaps), f"polls closer than the interval: {gaps}"


def test_state_items_match_ss(collected, stack, agent, scenario):
    c = collected.polls
    print(f"\n[{SUMMARY_KEY}] polls vs ss (state items, TOTAL, "
          f"{(len(sc.SCENARIO_PORTS) + 1) * len(PORT_MEMBERS)} per-port values): "
          f"{c.summary()}; {collected.waited:.0f} s of collection")
    assert len(c.full) >= MIN_POLLS and not c.bad, (
        f"{SUMMARY_KEY} polls vs ss: {c.summary()}\n" + "\n".join(c.bad)
        + f"\n{stack.describe()}"
    )
    # The exact snapshots, without the stack's and the agent's ports, are the scenario.
    excluded = (*stack.ports, agent.cfg.port)
    for t, snap in c.exact:
        others = sc.count_states(snap.sockets, exclude_ports=excluded)
        want = _expected_scenario(scenario, snap.t)
        bad = {s: (others[s], sorted(want[s])) for s in STATES if others[s] not in want[s]}
        assert not bad, (f"poll at {t:.3f}: ss without the stack/agent ports differs from "
                         f"the scenario (ss, scenario): {bad}")


def test_discovery_per_port_items_match_ss(collected, stack, agent, scenario):
    ports = [*sc.SCENARIO_PORTS, agent.cfg.port]
    discovered = {k for k, i in collected.items.items() if i["flags"] == "4"}
    for p in [*ports, *stack.ports]:
        for m in PORT_MEMBERS:
            assert port_key(m, p) in discovered, f"no discovered item {port_key(m, p)}"
    # Their values were compared with ss in the same polls as the state items (above);
    # the scenario's known shape shows in the last exact poll with every per-port value.
    c = collected.polls
    assert len(c.full) >= MIN_POLLS and not c.bad, c.summary()
    vals = _group_polls(collected.history, collected.items, _port_labels(ports))[c.full[-1]]
    assert vals[(sc.PORT_BACKLOG0, "accept_queue")] == 1, vals
    assert vals[(sc.PORT_DEFER, "SYN_RECV")] == scenario.counts["SYN_RECV"], vals
    assert vals[(sc.PORT_DUAL, "ESTABLISHED")] == (
        sc.ESTAB_DUAL_V4_PAIRS + sc.ESTAB_DUAL_V6_PAIRS), vals
    # The agent's port: its listener, and the poll's own accepted connection.
    assert vals[(agent.cfg.port, "ESTABLISHED")] >= OWN_AGENT_PORT["ESTABLISHED"], vals


def test_listen_queue_rates(collected):
    """Each rate is "change per second" of an integer kernel counter: times the interval
    since the previous poll it is a whole, non-negative number of events, and all of them
    together are no more than the namespace's counter grew by during the collection."""
    after = listen_counters()
    for key, member in zip(RATE_KEYS, ("ListenOverflows", "ListenDrops")):
        values = collected.values(key)
        assert len(values) >= MIN_POLLS, f"{key}: {values}"
        events = 0
        for (t0, _), (t1, v) in zip(values, values[1:]):
            rate = float(v)
            assert rate >= 0.0, f"{key} at {t1}: negative rate {v}"
            n = rate * (t1 - t0)
            assert abs(n - round(n)) < 0.05, (
                f"{key} at {t1}: {v}/s over {t1 - t0:.3f} s is {n:.4f} events, not a whole number"
            )
            events += round(n)
        grown = after[member] - collected.counters_before[member]
        assert 0 <= events <= grown, (
            f"{key}: the rates add up to {events} events, the kernel's {member} grew by {grown}"
        )


def test_graph_png(stack, host, collected):
    graphs = stack.api.call("graph.get", {"hostids": host, "output": ["graphid", "name"],
                                          "filter": {"name": "TCP connection states"}})
    assert len(graphs) == 1, f"host graph 'TCP connection states': {graphs}"
    from stack import WebSession

    web = WebSession(stack.frontend, stack.activity)
    web.login()
    # The period from just before the first value (at least a minute, Zabbix's minimum;
    # at most 15 minutes), so the picture is not mostly empty.
    first = min(t for values in collected.history.values() for t, _ in values)
    seconds = min(15 * 60, max(60, int(time.time() - first) + 10))
    path = (f"chart2.php?graphid={graphs[0]['graphid']}&from=now-{seconds}s&to=now"
            f"&width=900&height=300&profileIdx=web.charts.filter")
    status, ctype, body = web.get(path)
    assert status == 200, f"{path}: HTTP {status}"
    assert body[:8] == b"\x89PNG\r\n\x1a\n", (
        f"{path}: not a PNG ({ctype}): {body[:300]!r}\n"
        + __import__("stack").log_tail(stack.frontend.log)
    )
    assert len(body) > 10_000, f"{path}: PNG of only {len(body)} bytes"
    GRAPH_PNG.parent.mkdir(parents=True, exist_ok=True)
    GRAPH_PNG.write_bytes(body)
