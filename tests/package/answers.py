"""An installed agent's linux_status[...] answers against `ss`, in the test's namespace.

Each query is bracketed by two `ss -Htan` snapshots; when a socket of the first is gone or
changed in the second (an old TIME_WAIT on the agent port expiring) or one appeared that is not
the query's own (an active-check connection attempt of the agent), the query is repeated. While the agent runs the item, the query's own connection is two more ESTABLISHED
sockets (the client's end and the agent's accepted end), which `ss` just before cannot show.

The package ships the module's defaults (SnapshotLifetime=1000 ms: unfiltered tcp_status
answers may be up to 1 s old), so each tcp_status query waits that long after the previous
one: the value is then a fresh scan of the table `ss` shows.
"""

from __future__ import annotations

import json
import time

from lib import scenario as sc
from lib import system as sysmod
from lib import zbxd

ATTEMPTS = 6
QUERY_OWN_SOCKETS = {"ESTABLISHED": 2}
DEFAULT_SNAPSHOT_LIFETIME = 1.0


def _bracketed(port: int, key: str) -> tuple[tuple[str, str], dict[str, int]]:
    """The reply, and what the module must have counted: the `ss` table just before plus the
    query's own two ESTABLISHED sockets. Repeated when a socket of the first snapshot vanished
    or changed state by the second, or a socket appeared that is not the finished query's own
    (on the agent port: the agent closes first, so its end lingers in TIME_WAIT)."""
    last = None
    for _ in range(ATTEMPTS):
        before = sc.ss_sockets()
        reply = zbxd.check(port, key)
        after = sc.ss_sockets()
        gone = {s.ident for s in before} - {s.ident for s in after}
        new = [s for s in after if s.ident not in {b.ident for b in before}]
        if not gone and all(s.touches_port(port) for s in new):
            want = sc.count_states(before)
            for state, extra in QUERY_OWN_SOCKETS.items():
                want[state] += extra
            return reply, want
        last = (sorted(gone), new)
        time.sleep(0.2)
    raise AssertionError(f"the socket table kept changing around {key!r}: gone, new = {last}")


def assert_match_ss(label: str, port: int = sysmod.AGENT_PORT) -> dict[str, int]:
    """Every state through tcp_status (the old UserParameter's key form) and all of them
    through tcp_summary equal `ss`; returns the summary's counts."""
    for state in sc.KERNEL_STATES:
        time.sleep(DEFAULT_SNAPSHOT_LIFETIME + 0.1)
        ss_name = sc.KERNEL_TO_SS[state]
        key = f"linux_status[tcp_status,{ss_name}]"
        reply, want = _bracketed(port, key)
        assert reply[0] == "value", f"[{label}] {key}: {reply}"
        assert int(reply[1]) == want[state], (
            f"[{label}] {key} = {reply[1]}, ss shows {want[state]} (with the query's own sockets)"
        )
    reply, want = _bracketed(port, "linux_status[tcp_summary]")
    assert reply[0] == "value", f"[{label}] tcp_summary: {reply}"
    summary = json.loads(reply[1])
    got = {state: summary[state] for state in sc.KERNEL_STATES}
    assert got == want, f"[{label}] tcp_summary {got} != ss {want}"
    assert summary["TOTAL"] == sum(want.values()), summary
    return got


def assert_scenario_visible(label: str, scenario, port: int = sysmod.AGENT_PORT) -> None:
    """The known table is what ss shows besides the agent's own port."""
    scenario.verify(exclude_ports=(port,))
