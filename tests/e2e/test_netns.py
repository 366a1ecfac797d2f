"""The network-namespace keys through a real zabbix_agentd (6.0 and 7.0) running as `nobody`
(what `User=zabbix` is on a packaged agent): namespaces the test creates with known sockets
(lib/namespaces.py), every count exact against `nsenter -n -t <pid> ss -tan` run inside each,
namespaces created and destroyed while the agent polls (never a number of another namespace,
never a gone namespace answering), and /proc mounted with hidepid.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from lib import agent as ag
from lib import fixtures
from lib import namespaces as nsl
from lib import oracle as orc
from lib import scenario as sc

EXACT = "SnapshotLifetime=0\nNetnsTableInterval=0\n"


@pytest.fixture(scope="module")
def held():
    """Four namespaces: the full scenario, two small tables of different sizes, an empty one."""
    made = []
    try:
        for kind, size in (("full", 1), ("small", 1), ("small", 3), ("empty", 0)):
            made.append(nsl.HeldNamespace.start(kind, size))
        yield made
    finally:
        for ns in made:
            ns.stop()


def nobody_agent(agentd, env, settings: str, directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o777)
    module = ag.staged_for_nobody(env.so, directory / "module")
    cfg = ag.write_config(directory, module, fixtures.new_port(), module_settings=settings)
    for path in (cfg.path, cfg.module_config):
        path.chmod(0o644)
    return ag.running_agent(agentd, env.get, cfg, prefix=ag.AS_NOBODY)


@pytest.fixture(scope="module")
def agent(agentd, env, held):
    directory = Path(tempfile.mkdtemp(prefix="linux-status-netns-"))
    try:
        with nobody_agent(agentd, env, EXACT, directory) as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def get(agent, key: str) -> ag.ItemResult:
    return ag.zabbix_get(agent.get_bin, agent.cfg.port, key)


def value(agent, key: str) -> str:
    result = get(agent, key)
    assert result.supported, result.raw
    return result.value


def states_of(data: dict) -> dict[str, int]:
    return {state: data[state] for state in sc.KERNEL_STATES}


def exact(ns: nsl.HeldNamespace, answer) -> None:
    """`answer()` (per-state counts) equals ss inside `ns` before and after it."""
    for _ in range(3):
        before = ns.ss_counts()
        got = answer()
        if before == ns.ss_counts():
            assert got == before, (ns.kind, ns.size, got, before)
            return
    raise AssertionError(f"namespace {ns.inode}: the table kept changing")


def test_the_agent_runs_as_nobody(agent):
    status = Path(f"/proc/{agent.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["65534"] * 4, uid_line
    cap_line = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    assert int(cap_line.split()[1], 16) == 0, cap_line


def test_the_test_namespaces_hold_what_they_were_built_with(held):
    for ns in held:
        if ns.kind == "small":
            assert ns.ss_counts() == nsl.expected_small(ns.size)
        if ns.kind == "empty":
            assert sum(ns.ss_counts().values()) == 0
    assert len({ns.inode for ns in held}) == len(held)


def test_discovery_lists_every_namespace_with_its_process(agent, held):
    rows = json.loads(value(agent, "linux_status[netns_discovery]"))
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


@pytest.mark.parametrize("selector", ["inode", "cgroup"])
def test_summary_per_namespace_is_exact(agent, held, selector):
    for ns in held:
        if selector == "cgroup":
            # The test's children share the test's cgroup: a cgroup selecting several
            # namespaces is refused, never answered with one of them.
            result = get(agent, f"linux_status[netns_summary,{ns.cgroup()}]")
            assert not result.supported and "matches" in result.message, result.raw
            continue
        def answer():
            data = json.loads(value(agent, f"linux_status[netns_summary,{ns.inode}]"))
            assert data["TOTAL"] == sum(states_of(data).values())
            return states_of(data)
        exact(ns, answer)


def test_status_per_state_and_filter_is_exact(agent, held):
    for ns in held[:3]:
        exact(ns, lambda: {s: int(value(agent, f"linux_status[netns_status,{ns.inode},{s}]"))
                           for s in sc.KERNEL_STATES})
    full = held[0]
    for laddr, lport, raddr, rport in orc.FILTERS[:8]:
        for _ in range(3):
            before = full.ss_sockets()
            got = {s: int(value(agent, f"linux_status[netns_status,{full.inode},{s},{laddr},{lport},{raddr},{rport}]"))
                   for s in ("ESTABLISHED", "LISTEN", "TIME_WAIT", "CLOSE_WAIT")}
            if {x.ident for x in before} == {x.ident for x in full.ss_sockets()}:
                break
        want = orc.oracle(before, laddr, lport, raddr, rport)
        assert got == {s: want[s] for s in got}, (laddr, lport, raddr, rport, got, want)


def test_all_namespaces_in_one_json(agent, held):
    def entry(ns):
        data = json.loads(value(agent, "linux_status[netns_all]"))
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


def test_selectors_that_name_nothing_or_too_much_are_refused(agent, held):
    for key, phrase in (
        ("linux_status[netns_summary,1]", "No network namespace matches \"1\""),
        ("linux_status[netns_status,nosuchcontainer,LISTEN]", "No network namespace matches"),
        ("linux_status[netns_summary,]", "Missing namespace selector"),
        ("linux_status[netns_status,self,BOGUS]", "Unknown TCP state"),
    ):
        result = get(agent, key)
        assert not result.supported and phrase in result.message, (key, result.raw)


def test_a_gone_namespace_is_not_supported_never_another_number(agent):
    ns = nsl.HeldNamespace.start("small", 2)
    try:
        exact(ns, lambda: states_of(json.loads(value(agent, f"linux_status[netns_summary,{ns.inode}]"))))
    finally:
        ns.stop()
    for key in (f"linux_status[netns_summary,{ns.inode}]", f"linux_status[netns_status,{ns.inode},LISTEN]"):
        result = get(agent, key)
        if result.supported:
            # Only if the kernel already reused the inode for a new namespace: then the
            # answer must be that namespace's, whose process is another.
            rows = json.loads(value(agent, "linux_status[netns_discovery]"))
            row = next(r for r in rows if r["{#NETNS}"] == str(ns.inode))
            assert row["{#NETNS.PID}"] != str(ns.pid), row
        else:
            assert "No network namespace matches" in result.message, result.raw
    data = json.loads(value(agent, "linux_status[netns_all]"))
    assert all(item["pid"] != ns.pid for item in data["netns"].values())


def test_namespaces_made_and_destroyed_while_the_agent_polls(agent, held):
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
                ns = nsl.HeldNamespace.start("small", 1 + size % 4)
                with lock:
                    known[ns.pid] = (nsl.expected_small(ns.size), time.monotonic(), float("inf"))
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
            data = json.loads(value(agent, "linux_status[netns_all]"))
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
                result = get(agent, f"linux_status[netns_summary,{ident}]")
                ended = time.monotonic()
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
    data = json.loads(value(agent, "linux_status[netns_all]"))
    for ident, pid in gone_ids:
        item = data["netns"].get(ident)
        assert item is None or item["pid"] != pid, (ident, item)
    assert len(gone_ids) >= 8, gone_ids
    orc.assert_agent_unharmed(agent)


def test_tables_are_read_once_per_interval_for_every_worker(agentd, env, held):
    """Under the shipped NetnsTableInterval (60 s), later polls (on any worker) reuse each
    table and report its age; the cheap counters are read every time."""
    directory = Path(tempfile.mkdtemp(prefix="linux-status-netns-interval-"))
    try:
        with nobody_agent(agentd, env, "", directory) as running:
            first = json.loads(value(running, "linux_status[netns_all]"))
            assert first["tables_read"] == first["namespaces"], first
            time.sleep(0.2)
            for _ in range(6):  # several polls: they land on different workers
                later = json.loads(value(running, "linux_status[netns_all]"))
                assert later["tables_read"] == 0, later
                for ns in held:
                    item = later["netns"][str(ns.inode)]
                    assert item["states"] == first["netns"][str(ns.inode)]["states"], item
                    assert 200 <= item["states_age_ms"] < 60_000, item
                    assert item["counters"] is not None, item
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("hidepid", ["2", "1"])
def test_hidepid_hides_other_users_namespaces_and_says_so(agentd, env, held, hidepid):
    """/proc mounted with hidepid (in a private mount namespace): the agent's user sees only
    its own processes; other namespaces are not listed and selecting one says it may be
    hidden; the agent's own namespace still answers."""
    directory = Path(tempfile.mkdtemp(prefix="linux-status-hidepid-"))
    try:
        hidepid_checks(agentd, env, held, hidepid, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def hidepid_checks(agentd, env, held, hidepid, directory):
    directory.chmod(0o777)
    module = ag.staged_for_nobody(env.so, directory / "module")
    cfg = ag.write_config(directory, module, fixtures.new_port(), module_settings=EXACT)
    for path in (cfg.path, cfg.module_config):
        path.chmod(0o644)
    keys = ["linux_status[netns_all]", f"linux_status[netns_summary,{held[1].inode}]",
            "linux_status[netns_status,self,LISTEN]"]
    script = (f"mount -t proc -o hidepid={hidepid} proc /proc && for k in \"$@\"; do "
              f"{' '.join(ag.AS_NOBODY)} {agentd} -c {cfg.path} -t \"$k\"; done")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                           "sh", *keys], capture_output=True, text=True, timeout=60,
                          env=ag.agent_env(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("linux_status[")]
    results = [ag.parse_item_line(line) for line in lines]
    assert len(results) == 3, proc.stdout
    data = json.loads(results[0].value)
    assert data["hidepid"] in (hidepid, {"1": "noaccess", "2": "invisible"}[hidepid]), data
    assert not any(item["pid"] in {ns.pid for ns in held} for item in data["netns"].values())
    if hidepid == "1":
        assert data["processes_unreadable"] > 0, data
    assert not results[1].supported and "hidden from the agent's user" in results[1].message
    assert results[2].supported and results[2].value.isdigit(), results[2].raw
