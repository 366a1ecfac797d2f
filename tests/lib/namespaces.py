"""Network namespaces the tests create and destroy, each holding a known socket table, for
the `netns_*` keys.

`HeldNamespace.start(kind, size)` runs a Python child under `unshare -n` (its pid is the
namespace's only process, so it is the representative the module must report): the child
brings `lo` up, builds its sockets, prints its pid, and holds everything until its stdin
closes. Kinds:

- `full`: the e2e scenario (lib/scenario.py: every state, IPv4 and IPv6, 6 listeners);
- `small`: `size` listeners on 127.0.0.1, `size + 1` ESTABLISHED pairs to the first,
  `size` CLOSE_WAIT (+ their FIN_WAIT2 peers), `size` TIME_WAIT: every count depends on
  `size`, so namespaces of different sizes have different tables;
- `empty`: no socket.

The oracle is `nsenter -n -t <pid> ss -Htan` (root's view inside the namespace), never the
module's own reading; `ss_counts()` returns the per-state counts once two consecutive
listings agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lib import oracle as orc
from lib import process
from lib import scenario as sc

TESTS_DIR = Path(__file__).resolve().parent.parent

CHILD = r"""
import os, socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
kind, size = sys.argv[1], int(sys.argv[2])
held = []
if kind == "full":
    from lib import scenario
    held.append(scenario.Scenario().build())
elif kind == "small":
    listeners = []
    for n in range(size):
        ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 30001 + n)); ls.listen(64); listeners.append(ls)
    held += listeners
    def pair():
        c = socket.create_connection(("127.0.0.1", 30001), timeout=5)
        s, _ = listeners[0].accept()
        return c, s
    for _ in range(size + 1):
        held += pair()
    for _ in range(size):            # CLOSE_WAIT (server) + FIN_WAIT2 (client)
        c, s = pair(); c.shutdown(socket.SHUT_WR); assert s.recv(1) == b""; held += [c, s]
    for _ in range(size):            # TIME_WAIT (client)
        c, s = pair(); c.close(); assert s.recv(1) == b""; s.close()
    # Ready once the FINs are acknowledged (no FIN_WAIT1 or LAST_ACK left in passing).
    import time
    for _ in range(200):
        states = [line.split()[3] for line in open("/proc/net/tcp").read().splitlines()[1:]]
        if "04" not in states and "09" not in states:
            break
        time.sleep(0.01)
print(os.getpid(), flush=True)
sys.stdin.read()
"""

SMALL_STATES = ("LISTEN", "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT2", "TIME_WAIT")


def expected_small(size: int) -> dict[str, int]:
    """What a `small` namespace of `size` holds, by construction (ss must agree)."""
    counts = dict.fromkeys(sc.KERNEL_STATES, 0)
    counts.update(LISTEN=size, ESTABLISHED=2 * (size + 1), CLOSE_WAIT=size, FIN_WAIT2=size,
                  TIME_WAIT=size)
    return counts


class HeldNamespace:
    """One child process in a network namespace of its own, holding a socket table."""

    def __init__(self, kind: str, size: int = 1) -> None:
        self.kind, self.size = kind, size
        env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
        self.proc = subprocess.Popen(
            ["unshare", "-n", "--", sys.executable, "-c", CHILD, kind, str(size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), f"namespace child ({kind}) failed to start: {line!r}"
        self.pid = int(line)
        assert self.pid == self.proc.pid, (self.pid, self.proc.pid)
        self.inode = os.stat(f"/proc/{self.pid}/net/tcp").st_ino
        self.start_time = int(Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])

    @classmethod
    def start(cls, kind: str, size: int = 1) -> "HeldNamespace":
        return cls(kind, size)

    def ss_sockets(self) -> list[sc.SsSocket]:
        return [sc.SsSocket(sc.SS_TO_KERNEL[f[0]], int(f[1]), int(f[2]), f[3], f[4])
                for _, f in sc.output_fields(["nsenter", "-n", "-t", str(self.pid), "ss", "-Htan"])]

    def ss_counts(self) -> dict[str, int]:
        """Per-state counts as ss sees them inside the namespace, once stable."""
        previous = None
        for _ in range(50):
            now = sc.count_states(self.ss_sockets())
            if now == previous:
                return now
            previous = now
            time.sleep(0.05)
        raise AssertionError(f"namespace {self.inode}: ss never gave the same table twice")

    def cgroup(self) -> str:
        lines = Path(f"/proc/{self.pid}/cgroup").read_text().splitlines()
        v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
        return v2[0] if v2 else lines[0].split(":", 2)[2]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        process.end_holder(self.proc)
        self.proc.stdout.close()

    def __enter__(self) -> "HeldNamespace":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SeenNamespace:
    """A namespace something else made (a container's), seen through one process of it: the
    same `ss` oracle as `HeldNamespace`, for `exact()`."""

    ss_sockets = HeldNamespace.ss_sockets
    ss_counts = HeldNamespace.ss_counts

    def __init__(self, kind: str, pid: int, inode: int) -> None:
        self.kind, self.size, self.pid, self.inode = kind, 0, pid, inode


@contextlib.contextmanager
def nobody_agent(agentd, env, settings: str, prefix: str = "linux-status-netns-"):
    """A running zabbix_agentd as `nobody` (no capability) with the module's `settings`,
    its copy of the module and configuration staged for that user in a temporary folder
    (named `prefix`...), removed when the agent has stopped."""
    from lib import agent as ag
    from lib import fixtures

    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        directory.chmod(0o777)
        module = ag.staged_for_nobody(env.so, directory / "module")
        cfg = ag.write_config(directory, module, fixtures.new_port(), module_settings=settings)
        for path in (cfg.path, cfg.module_config):
            path.chmod(0o644)
        with ag.running_agent(agentd, env.get, cfg, prefix=ag.AS_NOBODY) as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def held_namespaces():
    """The namespaces of HELD_KINDS, each holding its known table, stopped on exit."""
    made = []
    try:
        for kind, size in HELD_KINDS:
            made.append(HeldNamespace.start(kind, size))
        yield made
    finally:
        for ns in made:
            ns.stop()


# -- checks both agents' suites run (tests/e2e/test_netns.py, tests/agent2/test_plugin_netns.py):
# `ask(key)` returns the agent's ItemResult for a key; `held` are the suite's namespaces: the
# full scenario, small tables of sizes 1 and 3, an empty one.

HELD_KINDS = (("full", 1), ("small", 1), ("small", 3), ("empty", 0))


def value(ask, key: str) -> str:
    result = ask(key)
    assert result.supported, result.raw
    return result.value


def identities(data: dict) -> set[tuple[str, int]]:
    """(id, pid) of each namespace: an id reused by a new namespace is a new table."""
    return {(ident, item["pid"]) for ident, item in data["netns"].items()}


def states_of(data: dict) -> dict[str, int]:
    return {state: data[state] for state in sc.KERNEL_STATES}


def exact(ns: HeldNamespace, answer) -> None:
    """`answer()` (per-state counts) equals ss inside `ns` before and after it."""
    for _ in range(3):
        before = ns.ss_counts()
        got = answer()
        if before == ns.ss_counts():
            assert got == before, (ns.kind, ns.size, got, before)
            return
    raise AssertionError(f"namespace {ns.inode}: the table kept changing")


def check_the_test_namespaces_hold_what_they_were_built_with(held):
    for ns in held:
        if ns.kind == "small":
            assert ns.ss_counts() == expected_small(ns.size)
        if ns.kind == "empty":
            assert sum(ns.ss_counts().values()) == 0
    assert len({ns.inode for ns in held}) == len(held)


def check_discovery_lists_every_namespace_with_its_process(ask, held):
    rows = json.loads(value(ask, "linux_status[netns_discovery]"))
    by_id = {row["{#NETNS}"]: row for row in rows}
    assert len(by_id) == len(rows), rows
    for ns in held:
        row = by_id[str(ns.inode)]
        assert row["{#NETNS.PID}"] == str(ns.pid), row
        assert row["{#NETNS.COMM}"] == Path(f"/proc/{ns.pid}/comm").read_text().strip(), row
        assert row["{#NETNS.CGROUP}"] == ns.cgroup(), row
        assert row["{#NETNS.AGENT}"] == "0" and row["{#NETNS.HOST}"] == "0", row
    own = [row for row in rows if row["{#NETNS.AGENT}"] == "1"]
    assert len(own) == 1, rows
    assert own[0]["{#NETNS}"] == str(Path("/proc/self/net/tcp").stat().st_ino), own
    # The host (pid 1's namespace) is not the suite's: exactly one row says host.
    host = str(Path("/proc/1/net/tcp").stat().st_ino)
    assert [row["{#NETNS}"] for row in rows if row["{#NETNS.HOST}"] == "1"] == [host]


def check_summary_per_namespace_is_exact(ask, held, selector):
    for ns in held:
        if selector == "cgroup":
            # The test's children share the test's cgroup: a cgroup selecting several
            # namespaces is refused, never answered with one of them.
            result = ask(f"linux_status[netns_summary,{ns.cgroup()}]")
            assert not result.supported and "matches" in result.message, result.raw
            continue
        def answer():
            data = json.loads(value(ask, f"linux_status[netns_summary,{ns.inode}]"))
            assert data["TOTAL"] == sum(states_of(data).values())
            return states_of(data)
        exact(ns, answer)


def check_status_per_state_and_filter_is_exact(ask, held):
    for ns in held[:3]:
        exact(ns, lambda: {s: int(value(ask, f"linux_status[netns_status,{ns.inode},{s}]"))
                           for s in sc.KERNEL_STATES})
    full = held[0]
    for laddr, lport, raddr, rport in orc.FILTERS[:8]:
        for _ in range(3):
            before = full.ss_sockets()
            got = {s: int(value(ask, f"linux_status[netns_status,{full.inode},{s},{laddr},{lport},{raddr},{rport}]"))
                   for s in ("ESTABLISHED", "LISTEN", "TIME_WAIT", "CLOSE_WAIT")}
            if {x.ident for x in before} == {x.ident for x in full.ss_sockets()}:
                break
        want = orc.oracle(before, laddr, lport, raddr, rport)
        assert got == {s: want[s] for s in got}, (laddr, lport, raddr, rport, got, want)


def check_all_namespaces_in_one_json(ask, held):
    def entry(ns):
        data = json.loads(value(ask, "linux_status[netns_all]"))
        assert data["namespaces"] == len(data["netns"])
        assert data["hidepid"] is None and data["processes_unreadable"] == 0, data
        item = data["netns"][str(ns.inode)]
        assert item["pid"] == ns.pid and item["counters_error"] is None, item
        assert item["states_error"] is None and item["states_age_ms"] < 3000, item
        return item
    for ns in held:
        exact(ns, lambda: {s: entry(ns)["states"][s] for s in sc.KERNEL_STATES})
        counters = entry(ns)["counters"]
        established = ns.ss_counts()["ESTABLISHED"]
        # sockstat's inuse counts every socket but TIME_WAIT; CurrEstab ESTAB + CLOSE_WAIT.
        assert counters["tw"] >= ns.ss_counts()["TIME_WAIT"] - 1, counters
        assert counters["CurrEstab"] >= established, counters
        if ns.kind == "empty":
            assert counters["inuse"] == 0 and counters["CurrEstab"] == 0, counters


def check_info_reports_the_last_pass(ask):
    """linux_status[info] says what the answering worker's last pass over /proc skipped (each
    worker has its own: asked until one that made a pass answers)."""
    for _ in range(20):
        value(ask, "linux_status[netns_discovery]")
        info = json.loads(value(ask, "linux_status[info]"))
        if info["netns_last_pass"] is not None:
            last = info["netns_last_pass"]
            assert last["namespaces"] >= 1 and last["processes"] >= last["namespaces"], info
            assert last["processes_unreadable"] == 0 and last["hidepid"] is None, info
            assert isinstance(info["netns_table_interval_s"], int), info
            return
    raise AssertionError("no worker reported a pass over /proc in linux_status[info]")


def check_selectors_that_name_nothing_or_too_much_are_refused(ask, held):
    for key, phrase in (
        ("linux_status[netns_summary,1]", "No network namespace matches \"1\""),
        ("linux_status[netns_status,nosuchcontainer,LISTEN]", "No network namespace matches"),
        ("linux_status[netns_summary,]", "Missing namespace selector"),
        ("linux_status[netns_status,self,BOGUS]", "Unknown TCP state"),
    ):
        result = ask(key)
        assert not result.supported and phrase in result.message, (key, result.raw)


def check_a_gone_namespace_is_not_supported_never_another_number(ask):
    ns = HeldNamespace.start("small", 2)
    try:
        exact(ns, lambda: states_of(json.loads(value(ask, f"linux_status[netns_summary,{ns.inode}]"))))
    finally:
        ns.stop()
    for key in (f"linux_status[netns_summary,{ns.inode}]", f"linux_status[netns_status,{ns.inode},LISTEN]"):
        result = ask(key)
        if result.supported:
            # Only if the kernel already reused the inode for a new namespace: then the
            # answer must be that namespace's, whose process is another.
            rows = json.loads(value(ask, "linux_status[netns_discovery]"))
            row = next(r for r in rows if r["{#NETNS}"] == str(ns.inode))
            assert row["{#NETNS.PID}"] != str(ns.pid), row
        else:
            assert "No network namespace matches" in result.message, result.raw
    data = json.loads(value(ask, "linux_status[netns_all]"))
    assert all(item["pid"] != ns.pid for item in data["netns"].values())


def check_namespaces_made_and_destroyed_while_the_agent_polls(ask, held):
    """Two threads create and destroy namespaces of known, distinct tables while the test
    polls: every namespace answered carries its own process's table, never another's, and
    a namespace once gone never answers. A table is known from the child's "ready" line to
    the moment the test asks it to stop; a poll is checked against it only if the whole poll
    fell inside that window (before and after it, the table is being built or torn down)."""
    static = {ns.pid: (ns.ss_counts(), 0.0, float("inf")) for ns in held}
    known: dict[int, tuple[dict[str, int], float, float]] = dict(static)
    gone_ids: list[tuple[str, int]] = []
    stop = threading.Event()
    failures: list[str] = []
    lock = threading.Lock()

    def churn(offset):
        size = offset
        while not stop.is_set():
            try:
                ns = HeldNamespace.start("small", 1 + size % 4)
                with lock:
                    known[ns.pid] = (expected_small(ns.size), time.monotonic(), float("inf"))
                time.sleep(0.4)
                with lock:
                    table, ready, _ = known[ns.pid]
                    known[ns.pid] = (table, ready, time.monotonic())
                ns.stop()
                with lock:
                    gone_ids.append((str(ns.inode), ns.pid))
                size += 1
            except Exception as error:  # reported by the test thread
                failures.append(repr(error))
                return

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    polls = checked = summaries = 0
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            started = time.monotonic()
            data = json.loads(value(ask, "linux_status[netns_all]"))
            ended = time.monotonic()
            polls += 1
            with lock:
                window = dict(known)
            for ident, item in data["netns"].items():
                entry = window.get(item["pid"])
                if entry is None or item["states"] is None:
                    continue
                table, ready, stopping = entry
                if ready <= started and ended <= stopping:
                    checked += 1
                    got = {s: item["states"][s] for s in sc.KERNEL_STATES}
                    assert got == table, (ident, item, table)
            with lock:
                recent = list(window.items())[-4:]
            for pid, (table, ready, stopping) in recent:
                ident = next((i for i, it in data["netns"].items() if it["pid"] == pid), None)
                if ident is None:
                    continue
                started = time.monotonic()
                result = ask(f"linux_status[netns_summary,{ident}]")
                ended = time.monotonic()
                with lock:
                    stopping = known[pid][2]  # as of now: the window may have closed meanwhile
                if result.supported and ready <= started and ended <= stopping:
                    summaries += 1
                    assert states_of(json.loads(result.value)) == table, (ident, result.value, table)
                elif not result.supported:
                    assert "matches" in result.message or "gone" in result.message, result.raw
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures
    assert polls >= 10 and checked >= polls and summaries >= 10, (polls, checked, summaries)
    # Every namespace destroyed is gone from the answers (unless its inode was reused by a
    # namespace of another process).
    data = json.loads(value(ask, "linux_status[netns_all]"))
    for ident, pid in gone_ids:
        item = data["netns"].get(ident)
        assert item is None or item["pid"] != pid, (ident, item)
    assert len(gone_ids) >= 8, gone_ids
