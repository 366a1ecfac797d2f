"""The key registry for the Python suites: tests/lib/keys.json, rendered from the Rust key
registry (src/request/registry.rs, which a Rust test keeps it current with), so a new key
reaches every Python list of keys (hostile keys, load) without editing them.

- `KEYS`: the entries, in the registry's order: metric, usage, filters, description, sample;
- `METRICS`: the metric names (the keys' first parameters);
- `SAMPLES`: one valid key per metric that any Linux host answers;
- `metric_of(key)`: the metric a `linux_status[...]` key asks for, so a test holding its own
  per-key checks can assert it covers every metric (and fails when a key is added).
"""

from __future__ import annotations

import json
from pathlib import Path

KEYS: list[dict] = json.loads((Path(__file__).parent / "keys.json").read_text())["keys"]
METRICS: tuple[str, ...] = tuple(entry["metric"] for entry in KEYS)
SAMPLES: dict[str, str] = {entry["metric"]: entry["sample"] for entry in KEYS}


def metric_of(key: str | bytes) -> str | None:
    """The first parameter of `linux_status[...]`, unquoted and lower-cased (the module
    matches it ignoring case and surrounding spaces); None for another item key."""
    if isinstance(key, bytes):
        key = key.decode()
    prefix = "linux_status["
    if not (key.startswith(prefix) and key.endswith("]")):
        return None
    first = key[len(prefix):-1].split(",", 1)[0].strip().strip('"')
    return first.lower()
