"""Hostile keys: at least 100,000 generated `linux_status[...]` keys (hostile_keys.py) sent
over the passive protocol, straight to a real zabbix_agentd 6.0 running the module.

Each key goes on its own connection (the agent closes after each reply), from several
client processes with several connections in flight each. Every reply must be a value
(an unsigned integer, JSON text or the version) or ZBX_NOTSUPPORTED with a non-empty,
NUL-free, bounded message that is not a scan timeout (the namespace's tables are tiny); the agent's main pid and worker pids never change, and its log
shows no crash. Some malformed keys are rejected by the agent itself before the module
sees them ("Invalid item key format.", ...): they are counted separately.

Figures printed: keys tried (per category), replies by kind, agent-level vs module-level
rejections, the longest message, elapsed time and keys per second.

Environment: HOSTILE_KEYS (default 100000), HOSTILE_SEED.
"""

from __future__ import annotations

import collections
import json
import os
import re
import time

from lib import hostile_keys
from lib import zbxd

KEYS = int(os.environ.get("HOSTILE_KEYS", "100000"))
SEED = int(os.environ.get("HOSTILE_SEED", "20260425"))
BATCH = 5000
PROCESSES = 4
CONCURRENCY = 6  # connections in flight per client process
MAX_MESSAGE = 2048
# Messages the agent itself gives for keys it rejects before calling the module.
AGENT_MESSAGES = {
    "Invalid item key format.",
    "Unsupported item key.",
    "Item does not allow parameters.",
}
VERSION = re.compile(rb"^\d+\.\d+\.\d+\S*$")


def classify(key: bytes, reply: zbxd.Reply) -> tuple[str, str | None]:
    """(kind, problem or None)."""
    if reply.kind == "notsupported":
        message = reply.message
        if not message:
            return "notsupported", "empty ZBX_NOTSUPPORTED message"
        if b"\0" in message:
            return "notsupported", "NUL inside the message"
        if len(message) > MAX_MESSAGE:
            return "notsupported", f"message of {len(message)} bytes"
        text = message.decode("utf-8", "replace")
        if "ran past the agent Timeout" in text:
            # The namespace's tables are tiny: a scan never needs the agent's Timeout.
            return "module_error", f"scan timed out: {text[:200]}"
        return ("agent_rejected" if text in AGENT_MESSAGES else "module_error"), None
    if reply.kind == "value":
        value = reply.payload
        if b"\0" in value:
            return "value", "NUL in value"
        if value.isdigit() or VERSION.match(value):
            return "value", None
        try:
            json.loads(value)
        except ValueError:
            return "value", f"value is neither a number, JSON nor a version: {value[:100]!r}"
        return "value", None
    return reply.kind, reply.error or "no reply"


def send_batch(port: int, keys: list[bytes]) -> list[tuple[str, str | None, int]]:
    replies = zbxd.run_requests(port, keys, concurrency=CONCURRENCY, timeout=30.0)
    out = []
    for key, reply in zip(keys, replies):
        kind, problem = classify(key, reply)
        out.append((kind, problem, len(reply.message)))
    return out


def test_hostile_keys_never_hurt_the_agent(start_agent, figures):
    agent = start_agent(start_agents=4)
    port = agent.cfg.port
    assert zbxd.one(port, "linux_status[tcp_status,LISTEN]").payload.isdigit()

    categories: collections.Counter = collections.Counter()
    kinds: collections.Counter = collections.Counter()
    problems: list[str] = []
    longest_message = 0
    longest_key = 0
    total_bytes = 0
    started = time.monotonic()
    generator = hostile_keys.generate(KEYS, SEED)
    for batch in zbxd.chunks(generator, BATCH * PROCESSES):
        for category, key in batch:
            categories[category] += 1
            longest_key = max(longest_key, len(key))
            total_bytes += len(key)
        keys = [key for _, key in batch]
        slices = [(port, keys[i::PROCESSES]) for i in range(PROCESSES)]
        results = zbxd.in_processes(send_batch, slices, timeout=600)
        for slice_index, part in enumerate(results):
            for j, (kind, problem, message_length) in enumerate(part):
                kinds[kind] += 1
                longest_message = max(longest_message, message_length)
                if problem and len(problems) < 20:
                    key = keys[slice_index + j * PROCESSES]
                    problems.append(f"{kind}: {problem} for key {key[:120]!r}")
        agent.assert_unchanged(f"after {sum(kinds.values())} hostile keys")
    elapsed = time.monotonic() - started

    figures.update(
        keys_tried=sum(categories.values()),
        keys_per_category=dict(sorted(categories.items())),
        replies_by_kind=dict(sorted(kinds.items())),
        longest_key_bytes=longest_key,
        bytes_sent=total_bytes,
        longest_message_bytes=longest_message,
        elapsed_s=round(elapsed, 1),
        keys_per_s=round(sum(kinds.values()) / elapsed),
        agent_pids=agent.pids(),
    )
    assert sum(categories.values()) == KEYS
    assert sum(kinds.values()) == KEYS, kinds
    assert not problems, "bad replies:\n" + "\n".join(problems)
    assert set(kinds) <= {"value", "module_error", "agent_rejected"}, kinds
    # The generator reached both the module and the agent's own key checks.
    assert kinds["value"] >= KEYS // 100, kinds
    assert kinds["module_error"] >= KEYS // 2, kinds
    assert kinds["agent_rejected"] >= KEYS // 100, kinds
    # Still answering correctly afterwards.
    after = zbxd.one(port, "linux_status[tcp_status,LISTEN]")
    assert after.kind == "value" and after.payload.isdigit(), after
    agent.assert_unchanged("at the end")
