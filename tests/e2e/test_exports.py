"""The shared object's dynamic interface: exactly the five zbx_module_* functions.

The agent links itself with -rdynamic and exports its own zbx_* symbols, so the module must
export nothing but its entry points (docs/architecture.md, "The ABI contract"). The item table is
then read through those entry points in a separate Python process (ctypes), so a faulty module
cannot take the test session down with it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from lib import scenario as sc

EXPECTED_EXPORTS = {
    "zbx_module_api_version",
    "zbx_module_init",
    "zbx_module_uninit",
    "zbx_module_item_list",
    "zbx_module_item_timeout",
}


def defined_dynamic_symbols(path) -> list[tuple[str, str]]:
    symbols = []
    for line, fields in sc.output_fields(["nm", "-D", "--defined-only", str(path)]):
        # "ADDRESS TYPE NAME" (NAME may carry a @VERSION suffix).
        assert len(fields) == 3, f"unexpected nm line: {line!r}"
        symbols.append((fields[1], fields[2]))
    return symbols


def test_exports_exactly_the_module_api(env):
    symbols = defined_dynamic_symbols(env.so)
    names = {name for _, name in symbols}
    extra = sorted(names - EXPECTED_EXPORTS)
    missing = sorted(EXPECTED_EXPORTS - names)
    assert not extra and not missing, (
        f"nm -D --defined-only {env.so}: unexpected exports {extra}, missing {missing}\n"
        f"all: {symbols}"
    )
    assert len(symbols) == len(EXPECTED_EXPORTS), f"duplicate or versioned entries: {symbols}"
    not_text = [(t, n) for t, n in symbols if t != "T"]
    assert not not_text, f"exports that are not global functions (type T): {not_text}"


# Runs in a child interpreter: dlopen the module and walk the entry points.
_PROBE = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])

class Metric(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("flags", ctypes.c_uint),
                ("function", ctypes.c_void_p), ("test_param", ctypes.c_char_p)]

out = {"api_version": lib.zbx_module_api_version(), "init": lib.zbx_module_init()}
lib.zbx_module_item_list.restype = ctypes.POINTER(Metric)
table = lib.zbx_module_item_list()
items = []
i = 0
while table[i].key is not None and i < 64:
    m = table[i]
    items.append({"key": m.key.decode(), "flags": m.flags, "has_function": bool(m.function),
                  "test_param": None if m.test_param is None else m.test_param.decode()})
    i += 1
out["items"] = items
lib.zbx_module_item_timeout(3)
out["uninit"] = lib.zbx_module_uninit()
print(json.dumps(out))
"""


def test_entry_points_and_item_table(env):
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(env.so)],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 0, f"probe exited {proc.returncode}: {proc.stderr}"
    got = json.loads(proc.stdout)
    assert got["api_version"] == 2, got
    assert got["init"] == 0, f"zbx_module_init() returned {got['init']}, expected 0"
    assert got["uninit"] == 0, f"zbx_module_uninit() returned {got['uninit']}, expected 0"
    assert got["items"] == [
        {"key": "linux_status", "flags": 1, "has_function": True, "test_param": "tcp_status,LISTEN"}
    ], f"item table: {got['items']}"
