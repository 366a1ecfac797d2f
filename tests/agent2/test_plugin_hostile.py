"""Thousands of hostile keys (tests/lib/hostile_keys.py) through a running agent 2:
the agent and the plugin stay alive (same pids), every key gets a value or ZBX_NOTSUPPORTED
with a message, and the plugin still answers right afterwards.
"""

from __future__ import annotations

import collections
import os

from lib import hostile_keys
from lib import scenario as sc
from lib import zbxd

KEYS = int(os.environ.get("AGENT2_HOSTILE_KEYS", "10000"))
SEED = 20261201
MAX_MESSAGE = 4096


def test_hostile_keys_leave_agent_and_plugin_alive(agent2, scenario):
    generated = list(hostile_keys.generate(KEYS, SEED))
    keys = [key for _, key in generated]
    replies = zbxd.run_requests(agent2.cfg.port, keys, concurrency=8, timeout=30.0)
    kinds: collections.Counter = collections.Counter()
    problems = []
    for (category, key), reply in zip(generated, replies):
        kinds[reply.kind] += 1
        if reply.kind == "notsupported":
            message = reply.message
            if not message or b"\0" in message or len(message) > MAX_MESSAGE:
                problems.append(f"{category}: bad message {message[:100]!r} for {key[:80]!r}")
        elif reply.kind != "value":
            problems.append(f"{category}: {reply.kind} {reply.error} for {key[:80]!r}")
    print(f"\n[agent2] {len(keys)} hostile keys on {agent2.cfg.line.version}: {dict(kinds)}")
    assert not problems, "\n".join(problems[:20])
    assert kinds["value"] >= KEYS // 100 and kinds["notsupported"] >= KEYS // 2, kinds
    agent2.assert_unchanged(f"after {KEYS} hostile keys")
    listen = sc.count_states(sc.ss_sockets())["LISTEN"]
    after = zbxd.one(agent2.cfg.port, "linux_status[tcp_status,LISTEN]")
    assert after.kind == "value" and int(after.payload) == listen, after
