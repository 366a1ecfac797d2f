#!/usr/bin/env python3
"""The one source of the linux_status templates: writes both from one model, so they cannot drift.

    conf/templates/generate.py          # rewrite the files below
    conf/templates/generate.py --check  # exit 1 (and say which) when a file differs

Outputs, in this folder:
  linux_tcp_states_by_zabbix_agent.yaml         "Linux TCP states by Zabbix agent"
  linux_tcp_states_by_zabbix_agent_active.yaml  "Linux TCP states by Zabbix agent active"
  README.md                                     their documentation (macros, triggers, items)

The two templates differ only in the master item's type (passive "Zabbix agent" or
"Zabbix agent (active)"), their names, descriptions and uuids. Both are Zabbix 6.0 export
format: 6.0 LTS imports it as it is and 7.0 converts it on import (tests/server proves both
with the servers' APIs), so one file serves every server from 6.0 on.

The passive template keeps every uuid of the former conf/linux_status_template.yaml
("Linux TCP states by linux_status"): importing it over that template updates it in place
(renamed; items, history, host links and macro overrides kept). The active template's uuids
are derived from the same object names, so they are stable too, and distinct.

Python 3 standard library only (the tests import `model()`): no YAML library, the emitter
below writes the small subset these documents use.
"""
from __future__ import annotations

import hashlib
import re
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent

FLAVOURS = {
    "passive": {
        "name": "Linux TCP states by Zabbix agent",
        "file": "linux_tcp_states_by_zabbix_agent.yaml",
        "master_type": None,  # Zabbix agent (passive), the export's default
    },
    "active": {
        "name": "Linux TCP states by Zabbix agent active",
        "file": "linux_tcp_states_by_zabbix_agent_active.yaml",
        "master_type": "ZABBIX_ACTIVE",
    },
}
LEGACY_FILE = "conf/linux_status_template.yaml"
LEGACY_NAME = "Linux TCP states by linux_status"

# uuids of conf/linux_status_template.yaml, kept by the passive template (see the docstring).
LEGACY_UUIDS = {
    "template": "586a5b571b514b25891fbfd6cd72c936",
    "item:linux_status[tcp_summary]": "8c6d9f2e25634e1896c6ac0b9f6e8470",
    "item:linux_status.tcp.state[ESTABLISHED]": "b7213fca02084009a1adddd8c49d425b",
    "item:linux_status.tcp.state[SYN_SENT]": "f78f40b19e714903b4a360758ba87b5a",
    "item:linux_status.tcp.state[SYN_RECV]": "4612ea4b3c1f4e65a75a4e613e95c83c",
    "item:linux_status.tcp.state[FIN_WAIT1]": "ca119a35c30240a794018062d01d2e70",
    "item:linux_status.tcp.state[FIN_WAIT2]": "8c158d65d9ef4534a7b1e7c5a93c5bf5",
    "item:linux_status.tcp.state[TIME_WAIT]": "c3d3ba6cc88b4055aca6d5a0fde26807",
    "item:linux_status.tcp.state[CLOSE]": "edab0b3c8f4e421ba9cda7e8978842e2",
    "item:linux_status.tcp.state[CLOSE_WAIT]": "b958248ad0a4478e870944a68c9d9d2a",
    "item:linux_status.tcp.state[LAST_ACK]": "d15b2a5ed8674ed4a9a856fb4a2559d8",
    "item:linux_status.tcp.state[LISTEN]": "80cd300b21994d4dadd0126a5c5a7981",
    "item:linux_status.tcp.state[CLOSING]": "21c3f6825a0b4b73ace94399cfd23649",
    "item:linux_status.tcp.total": "0ab492753a744f76a76d22b7554c37ef",
    "item:linux_status.tcp.listen_overflows.rate": "547f4590704848b3a93ced0b82db792a",
    "item:linux_status.tcp.listen_drops.rate": "5ba5271657fe4820ab2046b36541d2fe",
    "trigger:syn_recv": "de015129092340468f708a8397012f8f",
    "trigger:time_wait": "02afecb78cb24c6dbf6b7c2daf31d2d6",
    "trigger:close_wait": "fc5757899a304c6481309d5b3fdff7d4",
    "trigger:listen_overflows": "2c7cad8b807445438e4f22772bc00b81",
    "rule:linux_status.listen.discovery": "1e059bd4c1a240b799e268b9c3769d69",
    "proto:linux_status.port.state[{#PORT},ESTABLISHED]": "8a1aa8f99ebc49a7a3fd7a9c00cee681",
    "proto:linux_status.port.state[{#PORT},SYN_RECV]": "531e3204946648c6a028ef01154a7d08",
    "proto:linux_status.port.state[{#PORT},CLOSE_WAIT]": "ce47f3c2f34a426bbbbdb965cb6199e8",
    "proto:linux_status.port.state[{#PORT},TIME_WAIT]": "859b00512e2447469faa283477c8c88e",
    "proto:linux_status.port.total[{#PORT}]": "d9290f6db62f4d08ad7ebb107e808878",
    "proto:linux_status.port.accept_queue[{#PORT}]": "5e0ff62cd2154d8dab2d6b556ed652f9",
    "tproto:accept_queue": "027a783fcae2405b825c0f4ad050d399",
    "gproto:connections": "4df0de6ea82f4788bd2694651afe16f7",
    "graph:states": "5f8ec516964d4aca84dd330b86f503f0",
}
# Zabbix's own uuid of the group (data.sql of 6.0 and 7.0).
GROUP = {"uuid": "846977d1dfed4968bc5f8bdb363285bc", "name": "Templates/Operating systems"}

MASTER_KEY = "linux_status[tcp_summary]"
# Network namespaces (containers): one master item with every namespace, one LLD rule.
NETNS_MASTER_KEY = "linux_status[netns_all]"
NETNS_DISCOVERY_KEY = "linux_status[netns_discovery]"
NETNS_STATES = ("ESTABLISHED", "SYN_RECV", "TIME_WAIT", "CLOSE_WAIT", "FIN_WAIT2", "LISTEN")
STATES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
          "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING")
SS_NAMES = {"ESTABLISHED": "ESTAB", "SYN_SENT": "SYN-SENT", "SYN_RECV": "SYN-RECV",
            "FIN_WAIT1": "FIN-WAIT-1", "FIN_WAIT2": "FIN-WAIT-2", "TIME_WAIT": "TIME-WAIT",
            "CLOSE": "UNCONN", "CLOSE_WAIT": "CLOSE-WAIT", "LAST_ACK": "LAST-ACK",
            "LISTEN": "LISTEN", "CLOSING": "CLOSING"}
# Sockets that are not connections: left out of the stacked connections graph, and stored
# only when they change (with an hourly heartbeat) since they change when services start
# or stop, not with the traffic.
NOT_CONNECTIONS = ("LISTEN", "CLOSE")
HEARTBEAT = "1h"
PORT_STATES = ("ESTABLISHED", "SYN_RECV", "CLOSE_WAIT", "TIME_WAIT")
STATE_COLORS = {"ESTABLISHED": "1A7C11", "SYN_SENT": "F63100", "SYN_RECV": "2774A4",
                "FIN_WAIT1": "A54F10", "FIN_WAIT2": "FC6EA3", "TIME_WAIT": "6C59DC",
                "CLOSE": "AC8C14", "CLOSE_WAIT": "611F27", "LAST_ACK": "F230E0",
                "LISTEN": "5CCD18", "CLOSING": "BB2A02"}

# (macro, default, description). Every threshold a trigger uses, and the interval.
MACROS = [
    ("{$LINUX_STATUS.INTERVAL}", "1m",
     "Polling interval of the master item linux_status[tcp_summary]; every other item is "
     "cut from its answer and follows it."),
    ("{$LINUX_STATUS.TIME_WAIT.MAX}", "10000",
     "TIME_WAIT sockets above which, for 5m, the warning trigger fires."),
    ("{$LINUX_STATUS.TIME_WAIT.MAX.CRIT}", "20000",
     "TIME_WAIT sockets above which, for 5m, the high-severity trigger fires (it suppresses "
     "the warning one). Keep it below the size of net.ipv4.ip_local_port_range."),
    ("{$LINUX_STATUS.CLOSE_WAIT.MAX}", "100",
     "CLOSE_WAIT sockets above which, for all of {$LINUX_STATUS.CLOSE_WAIT.PERIOD}, the "
     "CLOSE_WAIT trigger fires."),
    ("{$LINUX_STATUS.CLOSE_WAIT.PERIOD}", "15m",
     "How long CLOSE_WAIT must stay above {$LINUX_STATUS.CLOSE_WAIT.MAX} before the trigger "
     "fires."),
    ("{$LINUX_STATUS.SYN_RECV.MAX}", "200",
     "SYN_RECV sockets (half-open incoming connections) above which, for 2m, the SYN_RECV "
     "trigger fires."),
    ("{$LINUX_STATUS.LISTEN_OVERFLOWS.MAX}", "0",
     "Listen-queue overflows per second (average over 5m) above which the overflow trigger "
     "fires (0: any overflow)."),
    ("{$LINUX_STATUS.LISTEN_DROPS.MAX}", "0",
     "Connection requests dropped on listening sockets per second (average over 5m) above "
     "which the drop trigger fires (0: any drop)."),
    ("{$LINUX_STATUS.ACCEPT_QUEUE.MAX}", "50",
     "Accept-queue depth of a listening port above which, for 5m, the port's trigger fires. "
     "Set per port with a context: {$LINUX_STATUS.ACCEPT_QUEUE.MAX:\"8080\"}."),
    ("{$LINUX_STATUS.NETNS.INTERVAL}", "1m",
     "Polling interval of linux_status[netns_all] (every network namespace's cheap counters, "
     "and its state table, read at most once per the module's NetnsTableInterval)."),
    ("{$LINUX_STATUS.NETNS.DISCOVERY.INTERVAL}", "5m",
     "Polling interval of the network namespace discovery linux_status[netns_discovery]."),
    ("{$LINUX_STATUS.NETNS.CLOSE_WAIT.MAX}", "50",
     "CLOSE_WAIT sockets in one network namespace above which, for all of "
     "{$LINUX_STATUS.NETNS.CLOSE_WAIT.PERIOD} and still growing, the namespace's trigger fires."),
    ("{$LINUX_STATUS.NETNS.CLOSE_WAIT.PERIOD}", "15m",
     "How long a namespace's CLOSE_WAIT must stay above {$LINUX_STATUS.NETNS.CLOSE_WAIT.MAX}."),
    ("{$LINUX_STATUS.NETNS.SYN_RECV.MAX}", "100",
     "SYN_RECV sockets in one network namespace above which, for 5m, its trigger fires."),
    ("{$LINUX_STATUS.NODATA.TIMEOUT}", "30m",
     "How long without any value from linux_status[tcp_summary] before the no-data trigger "
     "fires."),
]

# Tuning advice for the README's trigger table: trigger id -> text.
ADVICE = {
    "time_wait": "Many short outgoing connections (no keep-alive or pooling). Each TIME_WAIT "
                 "socket holds a local port for 60 s; near the size of "
                 "`net.ipv4.ip_local_port_range` (28232 ports by default) new outgoing "
                 "connections fail. Set the warning to about a third of the range.",
    "time_wait_crit": "As above, close to exhaustion: set it to about two thirds of the "
                      "range. While it fires, the warning is suppressed (dependency).",
    "close_wait": "The peer closed but the application never called close(): a descriptor "
                  "leak. The per-port CLOSE_WAIT items show which service.",
    "syn_recv": "Many half-open incoming connections: a SYN flood, or clients that cannot "
                "complete the handshake. Raise it on hosts that take bursts of new "
                "connections.",
    "listen_overflows": "An accept queue was full and the kernel dropped connections: the "
                        "service accepts too slowly or its backlog is too small. The "
                        "per-port accept-queue items show which. Stays on until 15m without "
                        "overflows.",
    "listen_drops": "Drops for other reasons than a full queue (memory, no route back). "
                    "Every overflow is also a drop, so this depends on the overflow trigger.",
    "nodata": "The master item returns nothing: the agent is down, the module or plugin is "
              "not loaded (the item is then unsupported), or active checks do not reach the "
              "server or proxy.",
    "accept_queue": "That service is slow to accept(); compare with its backlog "
                    "(`ss -ltn` Send-Q). Tune per port with the macro context.",
    "netns_close_wait": "One container's (namespace's) application leaks connections: "
                        "the peers closed, it never called close(), and the count still grows. "
                        "The namespace's runtime and container id are in the item's tags.",
    "netns_syn_recv": "Half-open connections pile up behind a listener in one container: "
                      "a SYN flood aimed at it, or its clients cannot finish the handshake.",
}


def uid(flavour: str, ident: str) -> str:
    """A stable uuid (UUIDv4 form, as Zabbix requires) for one object of one template."""
    if flavour == "passive" and ident in LEGACY_UUIDS:
        return LEGACY_UUIDS[ident]
    digest = hashlib.md5(f"linux_status/{flavour}/{ident}".encode()).digest()
    return uuid.UUID(bytes=digest, version=4).hex


def port_key(member: str, port: str = "{#PORT}") -> str:
    if member == "TOTAL":
        return f"linux_status.port.total[{port}]"
    if member == "accept_queue":
        return f"linux_status.port.accept_queue[{port}]"
    return f"linux_status.port.state[{port},{member}]"


def _dependent(flavour, ident, name, key, jsonpath, description, tags, *, value_type=None,
               units=None, extra_pre=(), triggers=None, history="7d"):
    item = {"uuid": uid(flavour, ident), "name": name, "type": "DEPENDENT", "key": key,
            "delay": "0", "history": history}
    if value_type:
        item["value_type"] = value_type
    if units:
        item["units"] = units
    item["description"] = description
    item["preprocessing"] = [{"type": "JSONPATH", "parameters": [jsonpath]}, *extra_pre]
    item["master_item"] = {"key": MASTER_KEY}
    item["tags"] = tags
    if triggers:
        item["triggers"] = triggers
    return item


def _trigger(flavour, ident, name, expression, recovery, priority, description, scope,
             opdata, depends=None):
    t = {"uuid": uid(flavour, ident), "expression": expression}
    if recovery:
        t["recovery_mode"] = "RECOVERY_EXPRESSION"
        t["recovery_expression"] = recovery
    t["name"] = name
    t["opdata"] = opdata
    t["priority"] = priority
    t["description"] = description
    if depends:
        t["dependencies"] = [{"name": d["name"], "expression": d["expression"],
                              **({"recovery_expression": d["recovery_expression"]}
                                 if "recovery_expression" in d else {})} for d in depends]
    t["tags"] = [{"tag": "scope", "value": scope}]
    return t


def model(flavour: str) -> dict:
    """The export document of one template (plain dicts and lists, in export order)."""
    f = FLAVOURS[flavour]
    tpl = f["name"]

    def ref(key):
        return f"/{tpl}/{key}"

    state_key = {s: f"linux_status.tcp.state[{s}]" for s in STATES}
    net = [{"tag": "component", "value": "network"}]

    # -- triggers on host-wide items -----------------------------------------------------
    tw_crit = _trigger(
        flavour, "trigger:time_wait_crit",
        "Too many TCP sockets in TIME_WAIT (over {$LINUX_STATUS.TIME_WAIT.MAX.CRIT} for 5m)",
        f"min({ref(state_key['TIME_WAIT'])},5m)>{{$LINUX_STATUS.TIME_WAIT.MAX.CRIT}}",
        f"max({ref(state_key['TIME_WAIT'])},5m)<{{$LINUX_STATUS.TIME_WAIT.MAX.CRIT}}",
        "HIGH",
        "Local ports are close to exhaustion: each TIME_WAIT socket holds one for 60 s, and "
        "new outgoing connections fail once the ephemeral port range is used up.",
        "capacity", "TIME_WAIT: {ITEM.LASTVALUE1}")
    tw_warn = _trigger(
        flavour, "trigger:time_wait",
        "Too many TCP sockets in TIME_WAIT (over {$LINUX_STATUS.TIME_WAIT.MAX} for 5m)",
        f"min({ref(state_key['TIME_WAIT'])},5m)>{{$LINUX_STATUS.TIME_WAIT.MAX}}",
        f"max({ref(state_key['TIME_WAIT'])},5m)<{{$LINUX_STATUS.TIME_WAIT.MAX}}",
        "WARNING",
        "Many short-lived connections closed by this host. Each TIME_WAIT socket holds a local "
        "port for 60 s; near the ephemeral port range size, new outgoing connections fail. "
        "Consider connection reuse (keep-alive, pooling).",
        "capacity", "TIME_WAIT: {ITEM.LASTVALUE1}", depends=[tw_crit])
    close_wait = _trigger(
        flavour, "trigger:close_wait",
        "TCP sockets stuck in CLOSE_WAIT (over {$LINUX_STATUS.CLOSE_WAIT.MAX} for "
        "{$LINUX_STATUS.CLOSE_WAIT.PERIOD})",
        f"min({ref(state_key['CLOSE_WAIT'])},{{$LINUX_STATUS.CLOSE_WAIT.PERIOD}})"
        ">{$LINUX_STATUS.CLOSE_WAIT.MAX}",
        f"max({ref(state_key['CLOSE_WAIT'])},5m)<{{$LINUX_STATUS.CLOSE_WAIT.MAX}}",
        "AVERAGE",
        "The peers closed these connections but the local application never called close(): "
        "usually a descriptor leak. The count stayed above the threshold for the whole period.",
        "capacity", "CLOSE_WAIT: {ITEM.LASTVALUE1}")
    syn_recv = _trigger(
        flavour, "trigger:syn_recv",
        "Many half-open TCP connections in SYN_RECV (over {$LINUX_STATUS.SYN_RECV.MAX} for 2m)",
        f"min({ref(state_key['SYN_RECV'])},2m)>{{$LINUX_STATUS.SYN_RECV.MAX}}",
        f"max({ref(state_key['SYN_RECV'])},5m)<{{$LINUX_STATUS.SYN_RECV.MAX}}",
        "WARNING",
        "Many half-open incoming connections: a SYN flood, or clients that cannot complete the "
        "handshake (lost ACKs, asymmetric routing).",
        "security", "SYN_RECV: {ITEM.LASTVALUE1}")
    overflows_key = "linux_status.tcp.listen_overflows.rate"
    drops_key = "linux_status.tcp.listen_drops.rate"
    overflows = _trigger(
        flavour, "trigger:listen_overflows",
        "TCP listen queues overflow (over {$LINUX_STATUS.LISTEN_OVERFLOWS.MAX}/s on average "
        "for 5m)",
        f"avg({ref(overflows_key)},5m)>{{$LINUX_STATUS.LISTEN_OVERFLOWS.MAX}}",
        f"max({ref(overflows_key)},15m)<={{$LINUX_STATUS.LISTEN_OVERFLOWS.MAX}}",
        "AVERAGE",
        "Some application does not accept() connections as fast as they arrive, and the kernel "
        "drops them. The per-port accept-queue items show which port. The problem ends after "
        "15m without overflows.",
        "performance", "Overflows: {ITEM.LASTVALUE1}")
    drops = _trigger(
        flavour, "trigger:listen_drops",
        "TCP connection requests dropped on listening sockets (over "
        "{$LINUX_STATUS.LISTEN_DROPS.MAX}/s on average for 5m)",
        f"avg({ref(drops_key)},5m)>{{$LINUX_STATUS.LISTEN_DROPS.MAX}}",
        f"max({ref(drops_key)},15m)<={{$LINUX_STATUS.LISTEN_DROPS.MAX}}",
        "WARNING",
        "The kernel dropped incoming connection requests on listening sockets (TcpExt "
        "ListenDrops): full accept queues (see the overflow trigger, on which this depends), "
        "or memory pressure and other errors.",
        "performance", "Drops: {ITEM.LASTVALUE1}", depends=[overflows])
    nodata = _trigger(
        flavour, "trigger:nodata",
        "No TCP state data (for {$LINUX_STATUS.NODATA.TIMEOUT})",
        f"nodata({ref('linux_status.tcp.total')},{{$LINUX_STATUS.NODATA.TIMEOUT}})=1",
        None, "WARNING",
        "linux_status[tcp_summary] returned no value for the whole period: the agent is down or "
        "unreachable, the linux_status module (zabbix_agentd) or plugin (agent 2) is not "
        "loaded (the item is then unsupported; see its error), or, for active checks, the agent "
        "does not reach the server or proxy (ServerActive, Hostname).",
        "availability", "Last value: {ITEM.LASTVALUE1}")

    # -- items ---------------------------------------------------------------------------
    master = {"uuid": uid(flavour, f"item:{MASTER_KEY}"), "name": "Get TCP state summary"}
    if f["master_type"]:
        master["type"] = f["master_type"]
    master.update({
        "key": MASTER_KEY, "delay": "{$LINUX_STATUS.INTERVAL}", "history": "0",
        "trends": "0", "value_type": "TEXT",
        "description": "One JSON object from one scan of the sockets: the number of TCP "
                       "sockets (IPv4 and IPv6) in each kernel state and TOTAL; per listening "
                       "port, the connections on that local port by state and the "
                       "accept-queue depth; the host-wide TcpExt ListenOverflows and "
                       "ListenDrops counters. Feeds every other item and the port discovery; "
                       "not stored.",
        "tags": [{"tag": "component", "value": "raw"}],
    })
    items = [master]
    state_triggers = {"SYN_RECV": [syn_recv], "TIME_WAIT": [tw_warn, tw_crit],
                      "CLOSE_WAIT": [close_wait]}
    for s in STATES:
        extra = ()
        desc = f"Number of TCP sockets (IPv4 and IPv6) in state {s} (ss -tan: {SS_NAMES[s]})."
        if s in NOT_CONNECTIONS:
            extra = ({"type": "DISCARD_UNCHANGED_HEARTBEAT", "parameters": [HEARTBEAT]},)
            desc += (" Changes when services start or stop: stored when it changes, and "
                     f"every {HEARTBEAT} otherwise.")
        items.append(_dependent(
            flavour, f"item:{state_key[s]}", f"TCP sockets: {s}", state_key[s], f"$.{s}",
            desc, [*net, {"tag": "tcp-state", "value": s}], extra_pre=extra,
            triggers=state_triggers.get(s)))
    items.append(_dependent(
        flavour, "item:linux_status.tcp.total", "TCP sockets: total", "linux_status.tcp.total",
        "$.TOTAL", "Number of TCP sockets (IPv4 and IPv6) in any state.", net,
        triggers=[nodata]))
    per_second = {"type": "CHANGE_PER_SECOND", "parameters": [""]}
    items.append(_dependent(
        flavour, f"item:{overflows_key}", "TCP listen queue: ListenOverflows per second",
        overflows_key, "$.ListenOverflows",
        "Connections dropped because a listening socket's accept queue was full (TcpExt "
        "ListenOverflows), per second.",
        [*net, {"tag": "component", "value": "listen-queue"}], value_type="FLOAT", units="/s",
        extra_pre=(per_second,), triggers=[overflows]))
    items.append(_dependent(
        flavour, f"item:{drops_key}", "TCP listen queue: ListenDrops per second", drops_key,
        "$.ListenDrops",
        "Incoming connection requests dropped on listening sockets for any reason, overflows "
        "included (TcpExt ListenDrops), per second.",
        [*net, {"tag": "component", "value": "listen-queue"}], value_type="FLOAT", units="/s",
        extra_pre=(per_second,), triggers=[drops]))

    # -- discovery -----------------------------------------------------------------------
    def port_tags(state=None):
        t = [*net, {"tag": "port", "value": "{#PORT}"}]
        if state:
            t.append({"tag": "tcp-state", "value": state})
        return t

    def proto(member, name, description, tags, triggers=None):
        key = port_key(member)
        p = _dependent(flavour, f"proto:{key}", name, key,
                       f"$.ports[?(@.port == {{#PORT}})].{member}.first()", description, tags)
        if triggers:
            p["trigger_prototypes"] = triggers
        return p

    aq_key = port_key("accept_queue")
    aq_trigger = _trigger(
        flavour, "tproto:accept_queue",
        'Port {#PORT}: Accept queue is long (over {$LINUX_STATUS.ACCEPT_QUEUE.MAX:"{#PORT}"} '
        "for 5m)",
        f'min({ref(aq_key)},5m)>{{$LINUX_STATUS.ACCEPT_QUEUE.MAX:"{{#PORT}}"}}',
        f'max({ref(aq_key)},5m)<{{$LINUX_STATUS.ACCEPT_QUEUE.MAX:"{{#PORT}}"}}',
        "WARNING",
        "The application listening on port {#PORT} accepts connections slower than they "
        "arrive. When the queue reaches the listen backlog, new connections are dropped (see "
        "ListenOverflows).",
        "performance", "Queued: {ITEM.LASTVALUE1}")
    protos = [proto(s, f"Port {{#PORT}}: connections in {s}",
                    f"Number of TCP sockets in state {s} whose local port is {{#PORT}}.",
                    port_tags(s)) for s in PORT_STATES]
    protos.append(proto(
        "TOTAL", "Port {#PORT}: connections (all states)",
        "Number of TCP sockets in any state whose local port is {#PORT} (its listeners "
        "included).", port_tags()))
    protos.append(proto(
        "accept_queue", "Port {#PORT}: accept queue",
        "Connections waiting for accept() on the listening sockets of port {#PORT} (sum of "
        "their receive queues).",
        [*port_tags(), {"tag": "component", "value": "listen-queue"}],
        triggers=[aq_trigger]))
    rule = {
        "uuid": uid(flavour, "rule:linux_status.listen.discovery"),
        "name": "Listening TCP ports", "type": "DEPENDENT",
        "key": "linux_status.listen.discovery", "delay": "0", "lifetime": "7d",
        "description": "One entry per TCP port with at least one LISTEN socket (any address, "
                       "any family), from the ports member of linux_status[tcp_summary].",
        "item_prototypes": protos,
        "graph_prototypes": [{
            "uuid": uid(flavour, "gproto:connections"),
            "name": "Port {#PORT}: connections by state",
            "graph_items": [{"sortorder": str(i), "color": STATE_COLORS[s],
                             "item": {"host": tpl, "key": port_key(s)}}
                            for i, s in enumerate(PORT_STATES)],
        }],
        "master_item": {"key": MASTER_KEY},
        "lld_macro_paths": [{"lld_macro": "{#PORT}", "path": "$.port"}],
        "preprocessing": [{"type": "JSONPATH", "parameters": ["$.ports"]}],
    }

    # -- network namespaces: LLD of linux_status[netns_discovery], items cut from netns_all --
    netns_master = {"uuid": uid(flavour, f"item:{NETNS_MASTER_KEY}"),
                    "name": "Get TCP states of every network namespace"}
    if f["master_type"]:
        netns_master["type"] = f["master_type"]
    netns_master.update({
        "key": NETNS_MASTER_KEY, "delay": "{$LINUX_STATUS.NETNS.INTERVAL}", "history": "0",
        "trends": "0", "value_type": "TEXT",
        "description": "One JSON object keyed by network namespace id ({#NETNS}): each "
                       "namespace's cheap counters (sockstat, snmp, netstat; read every poll) "
                       "and its per-state table (read at most once per the module's "
                       "NetnsTableInterval, with its age). Feeds the namespace prototypes; "
                       "not stored.",
        "tags": [{"tag": "component", "value": "raw"}],
    })
    items.append(netns_master)

    def ns_tags(state=None):
        t = [*net, {"tag": "netns", "value": "{#NETNS}"},
             {"tag": "container", "value": "{#NETNS.RUNTIME} {#NETNS.CONTAINER}"}]
        if state:
            t.append({"tag": "tcp-state", "value": state})
        return t

    def ns_key(member):
        return f"linux_status.netns.state[{{#NETNS}},{member}]"

    def ns_proto(member, name, description, tags, path, triggers=None, extra_pre=(),
                 value_type=None, units=None):
        key = ns_key(member) if path.startswith("states.") else \
            f"linux_status.netns.counter[{{#NETNS}},{member}]"
        p = _dependent(flavour, f"proto:{key}", name, key, f"$.netns['{{#NETNS}}'].{path}",
                       description, tags, extra_pre=extra_pre, value_type=value_type,
                       units=units)
        p["master_item"] = {"key": NETNS_MASTER_KEY}
        # A table not read yet (states null) or a namespace just gone: no value, never 0.
        p["preprocessing"][0]["error_handler"] = "DISCARD_VALUE"
        if triggers:
            p["trigger_prototypes"] = triggers
        return p

    cw_key = ns_key("CLOSE_WAIT")
    sr_key = ns_key("SYN_RECV")
    ns_close_wait = _trigger(
        flavour, "tproto:netns_close_wait",
        "Namespace {#NETNS} ({#NETNS.RUNTIME} {#NETNS.CONTAINER}): CLOSE_WAIT keeps growing "
        "(over {$LINUX_STATUS.NETNS.CLOSE_WAIT.MAX} for {$LINUX_STATUS.NETNS.CLOSE_WAIT.PERIOD})",
        f"min({ref(cw_key)},{{$LINUX_STATUS.NETNS.CLOSE_WAIT.PERIOD}})"
        f">{{$LINUX_STATUS.NETNS.CLOSE_WAIT.MAX}} and last({ref(cw_key)})"
        f">=avg({ref(cw_key)},{{$LINUX_STATUS.NETNS.CLOSE_WAIT.PERIOD}})",
        f"max({ref(cw_key)},5m)<{{$LINUX_STATUS.NETNS.CLOSE_WAIT.MAX}}",
        "AVERAGE",
        "In this network namespace the peers closed connections that the local application "
        "never closed, and the count is still growing: a descriptor leak in that container.",
        "capacity", "CLOSE_WAIT: {ITEM.LASTVALUE1}")
    ns_syn_recv = _trigger(
        flavour, "tproto:netns_syn_recv",
        "Namespace {#NETNS} ({#NETNS.RUNTIME} {#NETNS.CONTAINER}): many half-open connections "
        "in SYN_RECV (over {$LINUX_STATUS.NETNS.SYN_RECV.MAX} for 5m)",
        f"min({ref(sr_key)},5m)>{{$LINUX_STATUS.NETNS.SYN_RECV.MAX}}",
        f"max({ref(sr_key)},5m)<{{$LINUX_STATUS.NETNS.SYN_RECV.MAX}}",
        "WARNING",
        "Half-open incoming connections pile up in this network namespace: a SYN flood aimed "
        "at its listener, or clients that cannot complete the handshake.",
        "security", "SYN_RECV: {ITEM.LASTVALUE1}")
    ns_triggers = {"CLOSE_WAIT": [ns_close_wait], "SYN_RECV": [ns_syn_recv]}
    ns_protos = [ns_proto(
        st, f"Namespace {{#NETNS}} ({{#NETNS.COMM}}): TCP sockets in {st}",
        f"Number of TCP sockets in state {st} in network namespace {{#NETNS}} ({{#NETNS.RUNTIME}} "
        "{#NETNS.CONTAINER}); from its last table (see states_age_ms).", ns_tags(st),
        f"states.{st}", triggers=ns_triggers.get(st)) for st in NETNS_STATES]
    ns_protos.append(ns_proto(
        "TOTAL", "Namespace {#NETNS} ({#NETNS.COMM}): TCP sockets (all states)",
        "Number of TCP sockets in any state in network namespace {#NETNS}.", ns_tags(),
        "states.TOTAL"))
    ns_protos.append(ns_proto(
        "states_age", "Namespace {#NETNS} ({#NETNS.COMM}): age of the state table",
        "How old the namespace's state table is: it is read at most once per the module's "
        "NetnsTableInterval (each read walks the host's established hash).", ns_tags(),
        "states_age_ms", value_type="FLOAT", units="s",
        extra_pre=({"type": "MULTIPLIER", "parameters": ["0.001"]},)))
    ns_protos.append(ns_proto(
        "CurrEstab", "Namespace {#NETNS} ({#NETNS.COMM}): CurrEstab",
        "The namespace's Tcp CurrEstab counter (/proc/<pid>/net/snmp: ESTABLISHED and "
        "CLOSE_WAIT on recent kernels), read on every poll.", ns_tags(), "counters.CurrEstab"))
    ns_protos.append(ns_proto(
        "ListenOverflows", "Namespace {#NETNS} ({#NETNS.COMM}): ListenOverflows per second",
        "The namespace's TcpExt ListenOverflows counter per second (full accept queues).",
        [*ns_tags(), {"tag": "component", "value": "listen-queue"}], "counters.ListenOverflows",
        value_type="FLOAT", units="/s",
        extra_pre=({"type": "CHANGE_PER_SECOND", "parameters": [""]},)))
    ns_rule_type = {"type": f["master_type"]} if f["master_type"] else {}
    ns_rule = {
        "uuid": uid(flavour, "rule:linux_status.netns.discovery"),
        "name": "Network namespaces (containers)", **ns_rule_type,
        "key": NETNS_DISCOVERY_KEY, "delay": "{$LINUX_STATUS.NETNS.DISCOVERY.INTERVAL}",
        "lifetime": "1d",
        "description": "One entry per network namespace that holds a process (the host's, "
                       "every container's): {#NETNS} its id, {#NETNS.RUNTIME} and "
                       "{#NETNS.CONTAINER} from its cgroup path, {#NETNS.COMM} its "
                       "representative process. Items are cut from linux_status[netns_all].",
        "item_prototypes": ns_protos,
        "graph_prototypes": [{
            "uuid": uid(flavour, "gproto:netns"),
            "name": "Namespace {#NETNS} ({#NETNS.COMM}): connections by state",
            "graph_items": [{"sortorder": str(i), "color": STATE_COLORS[st],
                             "item": {"host": tpl, "key": ns_key(st)}}
                            for i, st in enumerate(x for x in NETNS_STATES if x != "LISTEN")],
        }],
    }

    # -- dashboard (6.0 grid: 24 columns, rows of 70 px: 12 rows, 840 px, fit 1920x1080 below
    # the frontend's header and time selector) -------------------------------------------
    def graph_widget(name, graph, x, y, w, h):
        return {"type": "GRAPH_CLASSIC", "name": name, "x": str(x), "y": str(y),
                "width": str(w), "height": str(h), "fields": [
                    {"type": "INTEGER", "name": "source_type", "value": "0"},
                    {"type": "GRAPH", "name": "graphid", "value": {"name": graph, "host": tpl}}]}

    def prototype_widget(name, x, y, w, h, columns, *, graph=None, item=None):
        fields = [{"type": "INTEGER", "name": "source_type", "value": "2" if graph else "3"},
                  {"type": "INTEGER", "name": "columns", "value": str(columns)},
                  {"type": "INTEGER", "name": "rows", "value": "1"}]
        if graph:
            fields.append({"type": "GRAPH_PROTOTYPE", "name": "graphid",
                           "value": {"name": graph, "host": tpl}})
        else:
            fields.append({"type": "ITEM_PROTOTYPE", "name": "itemid",
                           "value": {"key": item, "host": tpl}})
        return {"type": "GRAPH_PROTOTYPE", "name": name, "x": str(x), "y": str(y),
                "width": str(w), "height": str(h), "fields": fields}

    dashboard = {
        "uuid": uid(flavour, "dashboard:tcp"),
        "name": "TCP states",
        "pages": [{"widgets": [
            graph_widget("TCP connection states", "TCP connection states", 0, 0, 12, 5),
            graph_widget("Listen queue: overflows and drops", "TCP listen queue drops",
                         12, 0, 12, 5),
            prototype_widget("Per listening port: connections by state", 0, 5, 24, 4, 4,
                             graph="Port {#PORT}: connections by state"),
            prototype_widget("Per listening port: accept queue", 0, 9, 24, 3, 6, item=aq_key),
        ]}, {"name": "Network namespaces", "widgets": [
            prototype_widget("Per network namespace: connections by state", 0, 0, 24, 8, 3,
                             graph="Namespace {#NETNS} ({#NETNS.COMM}): connections by state"),
            prototype_widget("Per network namespace: CLOSE_WAIT", 0, 8, 24, 4, 6,
                             item=cw_key),
        ]}],
    }

    states_graph = [s for s in STATES if s not in NOT_CONNECTIONS]
    template = {
        "uuid": uid(flavour, "template"),
        "template": tpl,
        "name": tpl,
        "description": description(flavour),
        "groups": [{"name": GROUP["name"]}],
        "items": items,
        "discovery_rules": [rule, ns_rule],
        "tags": [{"tag": "class", "value": "os"}, {"tag": "target", "value": "linux"}],
        "macros": [{"macro": m, "value": v, "description": d} for m, v, d in MACROS],
        "dashboards": [dashboard],
    }
    return {"zabbix_export": {
        "version": "6.0",
        "groups": [GROUP],
        "templates": [template],
        "graphs": [
            {"uuid": uid(flavour, "graph:states"), "name": "TCP connection states",
             "type": "STACKED", "show_triggers": "NO",
             "graph_items": [{"sortorder": str(i), "color": STATE_COLORS[s],
                              "item": {"host": tpl, "key": state_key[s]}}
                             for i, s in enumerate(states_graph)]},
            {"uuid": uid(flavour, "graph:listen"), "name": "TCP listen queue drops",
             "graph_items": [
                 {"sortorder": "0", "color": "F63100",
                  "item": {"host": tpl, "key": overflows_key}},
                 {"sortorder": "1", "color": "2774A4", "item": {"host": tpl, "key": drops_key}}]},
        ],
    }}


def description(flavour: str) -> str:
    other = FLAVOURS["active" if flavour == "passive" else "passive"]["name"]
    if flavour == "passive":
        how = ("Passive checks: the Zabbix server or proxy connects to the agent (the agent's "
               "Server= lists it; the host has a Zabbix agent interface).")
    else:
        how = ("Active checks: the agent fetches its item list from the server or proxy and "
               "sends the values (the agent's ServerActive= names it and its Hostname= is this "
               "host's name; no interface needed). For agents behind NAT or firewalls.")
    return (
        "TCP connection states of a Linux host, counted in-process by linux_status (no fork, "
        "exact state names), and per listening port the connections by state and the "
        "accept-queue depth, discovered automatically.\n"
        "Works unchanged with either agent, same keys and values: zabbix_agentd loading the "
        "linux_status module (LoadModule=liblinux_status.so), or Zabbix agent 2 with the "
        "linux_status plugin (Plugins.LinuxStatus.System.Path=...).\n"
        f"{how} Link this template or \"{other}\" to a host, not both (same keys).\n"
        "One agent request per {$LINUX_STATUS.INTERVAL} (linux_status[tcp_summary], one scan) "
        "feeds every item.\n"
        f"Generated by conf/templates/generate.py; replaces \"{LEGACY_NAME}\" "
        f"({LEGACY_FILE}), whose item keys it keeps.\n"
    )


# -- YAML ------------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./ -]*$")
_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(s: str) -> str:
    if _PLAIN.match(s) and s.lower() not in _YAML11_WORDS and not s.endswith(" ") and \
            ": " not in s and " #" not in s:
        return s
    return "'" + s.replace("'", "''") + "'"


def _emit(node, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(node, dict):
        for k, v in node.items():
            key = _scalar(k)
            if isinstance(v, (dict, list)):
                if not v:
                    out.append(f"{pad}{key}: {'{}' if isinstance(v, dict) else '[]'}")
                    continue
                out.append(f"{pad}{key}:")
                _emit(v, indent + 2, out)
            elif isinstance(v, str) and "\n" in v:
                out.append(f"{pad}{key}: |")
                out.extend(f"{pad}  {line}" if line else "" for line in v.rstrip("\n").split("\n"))
            else:
                out.append(f"{pad}{key}: {_scalar(v)}")
    elif isinstance(node, list):
        for v in node:
            if isinstance(v, dict):
                sub: list[str] = []
                _emit(v, indent + 2, sub)
                sub[0] = f"{pad}- " + sub[0][indent + 2:]
                out.extend(sub)
            else:
                out.append(f"{pad}- {_scalar(v)}")
    else:
        raise TypeError(f"unexpected node {node!r}")


def render(doc: dict, flavour: str) -> str:
    header = [
        f"# {FLAVOURS[flavour]['name']}: generated by conf/templates/generate.py from the model",
        "# there, like its passive/active twin. Do not edit; run the generator. Zabbix 6.0 export",
        "# format: imports into 6.0 LTS, and into 7.0 and later, which convert it on import.",
    ]
    out: list[str] = []
    _emit(doc, 0, out)
    return "\n".join(header + out) + "\n"


# -- README ----------------------------------------------------------------------------------


def trigger_table() -> list[str]:
    """The trigger table (Markdown), kept in conf/templates/README.md between TRIGGERS_BEGIN
    and TRIGGERS_END (and in any other README that has the markers)."""
    doc = model("passive")["zabbix_export"]["templates"][0]
    triggers = []
    for item in doc["items"]:
        for t in item.get("triggers", []):
            triggers.append((t, item["key"]))
    protos = [(t, p["key"]) for r in doc["discovery_rules"] for p in r["item_prototypes"]
              for t in p.get("trigger_prototypes", [])]
    ids = {v: k.split(":", 1)[1] for k, v in LEGACY_UUIDS.items() if k.startswith(("trigger:",
                                                                                  "tproto:"))}

    def ident(t):
        for name in ADVICE:
            if t["uuid"] in (uid("passive", f"trigger:{name}"), uid("passive", f"tproto:{name}")):
                return name
        return ids.get(t["uuid"], "")

    lines = ["| trigger | severity | fires when (recovers when) | scope | depends on | "
             "what it means, how to tune |", "|---|---|---|---|---|---|"]
    name = FLAVOURS["passive"]["name"]
    for t, _key in [*triggers, *protos]:
        dep = "; ".join(d["name"] for d in t.get("dependencies", []))
        expr = t["expression"].replace(f"/{name}/", "/T/")
        rec = t.get("recovery_expression", "").replace(f"/{name}/", "/T/")
        cell = f"`{expr}`" + (f" (`{rec}`)" if rec else "")
        lines.append(f"| {t['name']} | {t['priority'].title()} | {cell.replace('|', '&#124;')} "
                     f"| {t['tags'][0]['value']} | {dep} | {ADVICE.get(ident(t), '')} |")
    return lines


TRIGGERS_BEGIN = "<!-- TRIGGERS_BEGIN: generated by conf/templates/generate.py -->"
TRIGGERS_END = "<!-- TRIGGERS_END -->"


def main_readme(text: str) -> str:
    """The main README with its trigger table block replaced by the current one."""
    head, sep, rest = text.partition(TRIGGERS_BEGIN)
    if not sep:
        return text
    _old, sep2, tail = rest.partition(TRIGGERS_END)
    assert sep2, f"README.md: {TRIGGERS_BEGIN} without {TRIGGERS_END}"
    return head + TRIGGERS_BEGIN + "\n" + "\n".join(trigger_table()) + "\n" + TRIGGERS_END + tail


def readme() -> str:
    doc = model("passive")["zabbix_export"]["templates"][0]
    lines = [
        "# The linux_status templates",
        "",
        "Generated by [`generate.py`](generate.py) (do not edit; run `conf/templates/generate.py`,",
        "and `conf/templates/generate.py --check` fails when a file differs from the model).",
        "",
        "| file | template | master item |",
        "|---|---|---|",
    ]
    for fl, f in FLAVOURS.items():
        kind = ("Zabbix agent (passive: the server or proxy polls the agent)" if fl == "passive"
                else "Zabbix agent (active: the agent sends; behind NAT, large fleets)")
        lines.append(f"| [`{f['file']}`]({f['file']}) | {f['name']} | {kind} |")
    lines += [
        "",
        "Both: Zabbix 6.0 export format (6.0 LTS imports it as is, 7.0 and later convert it),",
        "the same item keys and values, for `zabbix_agentd` with the linux_status module and for",
        "Zabbix agent 2 with the linux_status plugin. Link one of them per host, not both.",
        "The passive one carries the uuids of the former",
        f"[`{LEGACY_FILE}`](../linux_status_template.yaml) (\"{LEGACY_NAME}\"): importing it",
        "updates that template in place. See the main README for which to pick and how to move.",
        "",
        "## Macros",
        "",
        "| macro | default | description |",
        "|---|---|---|",
    ]
    for m, v, d in MACROS:
        lines.append(f"| `{m}` | `{v}` | {d} |")
    lines += ["", "## Triggers", "", *trigger_table(), ""]
    lines += ["(`/T/` stands for the template's name.)", "", "## Items", "",
              "| name | key | type | preprocessing | tags |", "|---|---|---|---|---|"]

    def row(i):
        pre = ", ".join(p["type"].lower() + (f" `{p['parameters'][0]}`" if p["parameters"][0]
                                             else "") for p in i.get("preprocessing", []))
        tags = ", ".join(f"{t['tag']}:{t['value']}" for t in i["tags"])
        typ = i.get("type", "ZABBIX_PASSIVE / ZABBIX_ACTIVE").lower().replace("_", " ")
        return f"| {i['name']} | `{i['key']}` | {typ} | {pre} | {tags} |"

    lines += [row(i) for i in doc["items"]]
    lines += ["", "Discovery rule `linux_status.listen.discovery` (dependent, `$.ports`, "
              "`{#PORT}` from `$.port`), item prototypes:", "",
              "| name | key | preprocessing | tags |", "|---|---|---|---|"]
    for p in doc["discovery_rules"][0]["item_prototypes"]:
        r = row(p).split(" | ")
        lines.append(" | ".join([r[0], r[1], r[3], r[4]]))
    lines += ["", "Discovery rule `linux_status[netns_discovery]` (agent item, one row per network "
              "namespace), item prototypes (dependent on `linux_status[netns_all]`; a table not "
              "read yet or a namespace gone discards the value, never stores 0):", "",
              "| name | key | preprocessing | tags |", "|---|---|---|---|"]
    for p in doc["discovery_rules"][1]["item_prototypes"]:
        r = row(p).split(" | ")
        lines.append(" | ".join([r[0], r[1], r[3], r[4]]))
    lines += [
        "", "Value maps: none; no item returns a code (every value is a count or a rate).", "",
        "## Dashboard \"TCP states\"", "",
        "One page on the 6.0 grid (24 columns, 12 rows: fits 1920x1080 without scrolling): the",
        "stacked connection states and the listen-queue overflow/drop rates side by side, then",
        "one graph per discovered port (connections by state), then each port's accept queue.",
        "Graphs: \"TCP connection states\" (stacked; LISTEN and CLOSE are not connections and",
        "are left out), \"TCP listen queue drops\", and the prototype \"Port {#PORT}: connections",
        "by state\".", "",
        "A second page, \"Network namespaces\": one connections-by-state graph per discovered",
        "namespace (container), and each namespace's CLOSE_WAIT.", "",
    ]
    return "\n".join(lines)


def outputs() -> dict[Path, str]:
    files = {HERE / f["file"]: render(model(fl), fl) for fl, f in FLAVOURS.items()}
    files[HERE / "README.md"] = readme()
    main = HERE.parent.parent / "README.md"
    files[main] = main_readme(main.read_text())
    return files


def main(argv: list[str]) -> int:
    check = argv[1:] == ["--check"]
    if argv[1:] not in ([], ["--check"]):
        print("usage: generate.py [--check]", file=sys.stderr)
        return 2
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if check:
            stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent.parent)}")
    if stale:
        print(f"out of date (run conf/templates/generate.py): {', '.join(stale)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
