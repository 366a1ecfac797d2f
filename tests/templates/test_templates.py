"""The template files against their generator and Zabbix's template guidelines (no server).

    $PYTHON -m pytest -q tests/templates

- the files in conf/templates/ are exactly what conf/templates/generate.py writes (no drift,
  no hand edit);
- the two templates are the same but for the master item's type, names and uuids;
- the former template's item keys are all kept, and its uuids in the passive one;
- the guidelines, point by point, on the model: names with the collection method; every
  macro described and used; trigger names stating every macro of their expression and the
  period, no {ITEM.LASTVALUE} in names (operational data instead); LLD trigger names
  starting with the discovered object; a `scope` tag on every trigger, a `component` tag on
  every item and prototype; recovery expressions on the threshold triggers; the dashboard
  within 24 columns x 12 rows (1920x1080); valid, unique UUIDv4s.
The servers' tests (tests/server) prove that Zabbix 6.0 and 7.0 import what this checks.
"""
from __future__ import annotations

import importlib.util
import re
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("generate", REPO / "conf/templates/generate.py")
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)


def tpl(flavour):
    return gen.model(flavour)["zabbix_export"]["templates"][0]


def all_triggers(t):
    out = [(tr, False) for i in t["items"] for tr in i.get("triggers", [])]
    out += [(tr, True) for r in t["discovery_rules"] for p in r["item_prototypes"]
            for tr in p.get("trigger_prototypes", [])]
    return out


def walk_uuids(node, out):
    if isinstance(node, dict):
        if "uuid" in node:
            out.append(node["uuid"])
        for v in node.values():
            walk_uuids(v, out)
    elif isinstance(node, list):
        for v in node:
            walk_uuids(v, out)
    return out


def test_files_are_generated():
    for path, text in gen.outputs().items():
        assert path.read_text() == text, (
            f"{path.relative_to(REPO)} differs from conf/templates/generate.py's output: "
            "run conf/templates/generate.py")


def test_passive_and_active_differ_only_where_they_must():
    p, a = gen.model("passive"), gen.model("active")

    def strip(doc, flavour):
        text = repr(doc).replace(gen.FLAVOURS[flavour]["name"], "T")
        text = re.sub(r"'uuid': '[0-9a-f]{32}'", "'uuid': U", text)
        text = text.replace("'type': 'ZABBIX_ACTIVE', ", "")
        return re.sub(r"'description': 'TCP connection states of a Linux host.*?'(?=, 'groups')",
                      "D", text, flags=re.S)

    assert strip(p, "passive") == strip(a, "active")
    assert "type" not in tpl("passive")["items"][0]  # Zabbix agent (passive)
    assert tpl("active")["items"][0]["type"] == "ZABBIX_ACTIVE"


def test_names_follow_the_collection_method():
    assert gen.FLAVOURS["passive"]["name"] == "Linux TCP states by Zabbix agent"
    assert gen.FLAVOURS["active"]["name"] == "Linux TCP states by Zabbix agent active"
    for fl in gen.FLAVOURS:
        d = tpl(fl)["description"]
        assert "zabbix_agentd" in d and "agent 2" in d and "Plugins.LinuxStatus" in d, d


def test_legacy_keys_and_uuids_kept():
    text = (REPO / "conf/linux_status_template.yaml").read_text()
    legacy_keys = set(re.findall(r"^\s+key: '?([^'\n]+)'?$", text, re.M))
    model_keys = {i["key"] for i in tpl("passive")["items"]} | {
        p["key"] for p in tpl("passive")["discovery_rules"][0]["item_prototypes"]} | {
        tpl("passive")["discovery_rules"][0]["key"]}
    assert legacy_keys <= model_keys, sorted(legacy_keys - model_keys)
    legacy_uuids = set(re.findall(r"uuid: ([0-9a-f]{32})", text)) - {
        "08a2642f4e1c487da2fa556e29276831"}  # its group, now Zabbix's own uuid
    assert legacy_uuids == set(gen.LEGACY_UUIDS.values())
    assert legacy_uuids <= set(walk_uuids(gen.model("passive"), []))


def test_uuids_valid_and_unique():
    found = walk_uuids(gen.model("passive"), []) + walk_uuids(gen.model("active"), [])
    group = gen.GROUP["uuid"]
    found = [u for u in found if u != group]
    assert len(found) == len(set(found)), "duplicate uuids"
    for u in found:
        assert uuid.UUID(hex=u).version == 4 and uuid.UUID(hex=u).hex == u, u


@pytest.mark.parametrize("flavour", list(gen.FLAVOURS))
def test_guidelines(flavour):
    t = tpl(flavour)
    macros = {m["macro"]: m for m in t["macros"]}
    text = repr(gen.model(flavour))
    for m, v in macros.items():
        assert len(v["description"]) > 30, f"{m}: no real description"
        assert text.count(m[:-1]) > 1, f"{m} is never used"
    for item in [*t["items"], *(p for r in t["discovery_rules"] for p in r["item_prototypes"])]:
        assert any(tag["tag"] == "component" for tag in item["tags"]), item["key"]
        assert item.get("description"), item["key"]
    triggers = all_triggers(t)
    assert len(triggers) >= 8
    for tr, lld in triggers:
        name, expr = tr["name"], tr["expression"]
        assert "{ITEM.LASTVALUE" not in name, name
        assert "{ITEM.LASTVALUE1}" in tr["opdata"], name
        assert [tag for tag in tr["tags"] if tag["tag"] == "scope"], name
        assert tr["tags"][0]["value"] in ("availability", "performance", "notice", "security",
                                          "capacity"), name
        for m in re.findall(r"\{\$[^}]+\}", expr):
            assert m in name, f"{name!r} does not name the threshold {m}"
        period = re.findall(r",(\d+[smhd])\)", expr)
        for p in period:
            assert f"for {p}" in name, f"{name!r} does not name the period {p}"
        if lld:
            assert name.startswith(("Port {#PORT}: ", "Namespace {#NETNS} (")), name
        if not expr.startswith("nodata("):
            assert tr.get("recovery_mode") == "RECOVERY_EXPRESSION", name
    deps = [tr for tr, _ in triggers if tr.get("dependencies")]
    assert len(deps) >= 2, "TIME_WAIT warning -> high, drops -> overflows"
    names = {tr["name"] for tr, _ in triggers}
    for tr in deps:
        for d in tr["dependencies"]:
            assert d["name"] in names, d
    [dash] = t["dashboards"]
    for page in dash["pages"]:
        for w in page["widgets"]:
            assert int(w["x"]) + int(w["width"]) <= 24, w["name"]
            assert int(w["y"]) + int(w["height"]) <= 12, w["name"]
