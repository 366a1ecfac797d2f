"""cgroup v2 for the tests: the host's cgroup2 mount, cgroups the test creates, processes
moved into them that hold TCP sockets in several states, and `ss --cgroup` as the oracle.

- `mount()`: the cgroup2 mount of this process (first `cgroup2` line of
  /proc/self/mountinfo), or, when the host has none (a cgroup v1 host), one mounted by
  `ensure_mount()` on a temporary folder inside a private mount namespace of the test
  process (`unshare(CLONE_NEWNS)`, propagation private): the agents the test starts later
  inherit that namespace; the host's mounts are untouched.
- `Cgroup(name)`: a directory `ls-test-<pid>-<name>` under the mount's root, its path as
  `ss --cgroup` prints it (`/ls-test-...`) and its id (the directory's inode). `remove()`
  kills what is left in it and in the child cgroups a runtime made, and removes them all.
- `SocketHolder`: a child process that first moves itself into a cgroup (writes 0 to its
  cgroup.procs), then builds a small known table (a listener, ESTABLISHED pairs, CLOSE_WAIT
  / FIN_WAIT2 pairs, TIME_WAIT, connections to another holder's listener), prints its counts
  by construction, and keeps everything open until stopped.
- `nested_netns()`: a context in which this process (and what it starts) is in a fresh
  network namespace with `lo` up, for tables whose TIME_WAIT sockets must not outlive the
  test in the suite's namespace; the suite's namespace is entered again on exit.
- `two_cgroups()`: the attribution table both agent suites check (`TwoCgroups`), and
  `check_whole_summary()` / `check_discovery()`, their shared assertions.
- `ss_by_cgroup()`: per cgroup path (None: no cgroup id, as ss prints nothing) the
  per-kernel-state counts of `ss -Htan --cgroup`.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lib import process
from lib import scenario as sc

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_private_mount: Path | None = None


def _unescape(field: str) -> str:
    out, at = [], 0
    while at < len(field):
        if field[at] == "\\" and field[at + 1:at + 4].isdigit():
            out.append(chr(int(field[at + 1:at + 4], 8)))
            at += 4
        else:
            out.append(field[at])
            at += 1
    return "".join(out)


def mount() -> Path | None:
    """The first cgroup2 mount of this process's mount namespace, or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            before, _, after = line.partition(" - ")
            if after.split(" ")[0] == "cgroup2":
                return Path(_unescape(before.split(" ")[4]))
    return None


def ensure_mount() -> Path:
    """The cgroup2 mount; on a host without one, cgroup2 mounted in a private mount
    namespace of this process (see the module doc)."""
    global _private_mount
    found = mount()
    if found is not None:
        return found
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) for a private cgroup2 mount")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    target = Path(tempfile.mkdtemp(prefix="linux-status-cgroup2-"))
    subprocess.run(["mount", "-t", "cgroup2", "none", str(target)], check=True, timeout=10)
    _private_mount = target
    return target


def private_mount() -> Path | None:
    """The cgroup2 mount `ensure_mount()` made because the host has none, if it did."""
    return _private_mount


def host_usable() -> bool:
    """True if the agents can answer per-cgroup keys here (what the module checks): a cgroup2
    mount whose root has at least one child cgroup."""
    found = mount()
    return found is not None and any(p.is_dir() for p in found.iterdir())


@contextlib.contextmanager
def nested_netns():
    """This process in a fresh network namespace (lo up) until the block ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/self/ns/net") as outer:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
            yield
        finally:
            if libc.setns(outer.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the suite's network namespace")


class Cgroup:
    """A cgroup the test creates under the cgroup2 root."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.root = root or ensure_mount()
        self.dir = self.root / f"ls-test-{os.getpid()}-{name}"
        self.dir.mkdir()
        self.path = "/" + self.dir.name
        self.id = self.dir.stat().st_ino

    def pids(self) -> list[int]:
        """The processes in the cgroup and in its child cgroups (a runtime may add some)."""
        pids = []
        for directory in [self.dir, *(p for p in self.dir.rglob("*") if p.is_dir())]:
            try:
                pids += [int(p) for p in (directory / "cgroup.procs").read_text().split()]
            except FileNotFoundError:
                pass
        return pids

    def remove(self) -> None:
        """Kills what is left in it (and its child cgroups), then removes them, deepest first."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        if not self.dir.exists():
            return
        children = sorted((p for p in self.dir.rglob("*") if p.is_dir()),
                          key=lambda p: len(p.parts), reverse=True)
        for directory in [*children, self.dir]:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Cgroup":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


# The holder: moves itself into the cgroup, builds its table, prints its counts, waits.
HOLDER = r'''
import json, socket, struct, sys
spec = json.loads(sys.argv[1])
with open(spec["procs"], "w") as f:
    f.write("0")
held, counts = [], {}
def add(state, n=1):
    counts[state] = counts.get(state, 0) + n
def pair(port):
    c = socket.create_connection(("127.0.0.1", port))
    a, _ = listener.accept()
    held.extend((c, a))
    return c, a
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", spec["port"]))
listener.listen(64)
held.append(listener); add("LISTEN")
for _ in range(spec["estab"]):
    pair(spec["port"]); add("ESTABLISHED", 2)
for _ in range(spec["close_wait"]):
    c, a = pair(spec["port"])
    c.shutdown(socket.SHUT_WR)
    add("FIN_WAIT2"); add("CLOSE_WAIT")
time_wait = 0
for _ in range(spec["time_wait"]):
    c, a = pair(spec["port"])
    c.close(); a.recv(1); a.close()
    held.remove(c); held.remove(a)
    time_wait += 1
# Pending requests: a TCP_DEFER_ACCEPT listener keeps them in SYN_RECV (no cgroup id); the
# clients are ESTABLISHED here.
if spec["syn_recv"]:
    deferred = socket.socket()
    deferred.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deferred.setsockopt(socket.IPPROTO_TCP, 9, 3600)  # TCP_DEFER_ACCEPT
    deferred.bind(("127.0.0.1", spec["port"] + 1000))
    deferred.listen(64)
    held.append(deferred); add("LISTEN")
    for _ in range(spec["syn_recv"]):
        held.append(socket.create_connection(("127.0.0.1", spec["port"] + 1000)))
        add("ESTABLISHED")
for _ in range(spec["connect_to_count"]):
    held.append(socket.create_connection(("127.0.0.1", spec["connect_to"])))
    add("ESTABLISHED")
print(json.dumps({"counts": counts, "time_wait": time_wait}), flush=True)
sys.stdin.read()
# Reset, not close: no TIME_WAIT or FIN_WAIT2 outlives the holder in the test's namespace.
for s in held:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
'''


class SocketHolder:
    """A process in `cgroup` holding a known table (see HOLDER); `counts` is what it built in
    its own cgroup, `time_wait` and `syn_recv` its TIME_WAIT sockets and pending requests (no
    cgroup id; the requests' listener is on `port` + 1000)."""

    def __init__(self, cgroup: Cgroup, port: int, estab: int = 0, close_wait: int = 0,
                 time_wait: int = 0, connect_to: int = 0, connect_to_count: int = 0,
                 syn_recv: int = 0, user: tuple[str, ...] = ()) -> None:
        spec = dict(procs=str(cgroup.dir / "cgroup.procs"), port=port, estab=estab,
                    close_wait=close_wait, time_wait=time_wait, connect_to=connect_to,
                    connect_to_count=connect_to_count, syn_recv=syn_recv)
        self.syn_recv = syn_recv
        self.cgroup = cgroup
        self.proc = subprocess.Popen([*user, sys.executable, "-c", HOLDER, json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise AssertionError(f"socket holder in {cgroup.path} failed: exit {self.proc.returncode}")
        built = json.loads(line)
        self.counts: dict[str, int] = built["counts"]
        self.time_wait: int = built["time_wait"]

    def stop(self) -> None:
        process.end_holder(self.proc)


def ss_by_cgroup(netns_of: int | None = None) -> dict[str | None, dict[str, int]]:
    """Per cgroup path (None: the socket has no cgroup id) the per-state counts of
    `ss -Htan --cgroup` (every state present, zeros included), in this network namespace or
    in that of the process `netns_of` (`nsenter -n`)."""
    table: dict[str | None, dict[str, int]] = collections.defaultdict(
        lambda: dict.fromkeys(sc.KERNEL_STATES, 0))
    enter = ["nsenter", "-n", "-t", str(netns_of)] if netns_of else []
    for line, fields in sc.output_fields([*enter, "ss", "-Htan", "--cgroup"], timeout=10):
        assert fields[0] in sc.SS_TO_KERNEL, f"unknown ss state in {line!r}"
        path = None
        for field in fields[5:]:
            if field.startswith("cgroup:"):
                path = field[len("cgroup:"):]
        table[path][sc.SS_TO_KERNEL[fields[0]]] += 1
    return dict(table)


def states_of(member: dict) -> dict[str, int]:
    """The per-state counts of one member of `cgroup_summary` (TOTAL checked and left out)."""
    counts = {state: member[state] for state in sc.KERNEL_STATES}
    assert member["TOTAL"] == sum(counts.values()), member
    return counts


def settled_summary(query, attempts: int = 5) -> tuple[dict, dict]:
    """`query()` (a cgroup_summary JSON text) run between two equal `ss --cgroup` tables:
    (the parsed answer, the table)."""
    for _ in range(attempts):
        before = ss_by_cgroup()
        answer = query()
        if ss_by_cgroup() == before:
            return json.loads(answer), before
    raise AssertionError(f"the socket table kept changing around {attempts} queries")


# The attribution table both agent suites check (tests/e2e, tests/agent2).
PORT_A, PORT_B = 20081, 20082


@dataclasses.dataclass
class TwoCgroups:
    """Cgroup A (`...-a.service`: a listener, 2 ESTABLISHED pairs, 3 CLOSE_WAIT / FIN_WAIT2
    pairs) and B (`...-b.scope`: a listener, 1 pair, 1 CLOSE_WAIT pair, 4 connections to A's
    listener), each with a holder process; `time_wait` more sockets per holder, `syn_recv`
    pending requests on a second listener of A's."""

    a: Cgroup
    b: Cgroup
    in_a: SocketHolder
    in_b: SocketHolder

    def expected(self) -> dict[str, dict[str, int]]:
        """What the holders built, per cgroup path. The kernel gives an accepted socket its
        listener's cgroup, so A also holds the accepted halves of B's 4 connections."""
        expected = {}
        for group, holder in ((self.a, self.in_a), (self.b, self.in_b)):
            counts = dict.fromkeys(sc.KERNEL_STATES, 0)
            counts.update(holder.counts)
            expected[group.path] = counts
        expected[self.a.path]["ESTABLISHED"] += 4
        return expected


@contextlib.contextmanager
def two_cgroups(time_wait: tuple[int, int] = (0, 0), syn_recv: int = 0):
    root = ensure_mount()
    a = Cgroup("a.service", root)
    b = Cgroup("b.scope", root)
    started: list[SocketHolder] = []
    try:
        started.append(SocketHolder(a, PORT_A, estab=2, close_wait=3, time_wait=time_wait[0],
                                    syn_recv=syn_recv))
        started.append(SocketHolder(b, PORT_B, estab=1, close_wait=1, time_wait=time_wait[1],
                                    connect_to=PORT_A, connect_to_count=4))
        yield TwoCgroups(a, b, started[0], started[1])
    finally:
        for holder in started:
            holder.stop()
        a.remove()
        b.remove()


SUMMARY_MEMBERS = ["cgroups", "no_cgroup", "unresolved", "unresolved_ids", "other", "overflow",
                   "max_cgroups", "cgroup2_mount"]
# What the kernel reports without a cgroup id: mini-sockets and pending requests.
NO_CGROUP_STATES = ("TIME_WAIT", "FIN_WAIT2", "SYN_RECV")


def check_whole_summary(got: dict, table: dict, two: TwoCgroups, mount_path: str) -> None:
    """`cgroup_summary` taken in a namespace holding only `two`'s sockets equals ss's table
    path by path, `no_cgroup` included; ss agrees with what was built."""
    assert list(got) == SUMMARY_MEMBERS, got
    assert got["cgroup2_mount"] == mount_path
    answered = {path: states_of(member) for path, member in got["cgroups"].items()}
    assert answered == {path: counts for path, counts in table.items() if path is not None}
    assert states_of(got["no_cgroup"]) == table.get(None, dict.fromkeys(sc.KERNEL_STATES, 0))
    assert got["unresolved_ids"] == 0 and not any(states_of(got["unresolved"]).values())
    assert got["overflow"] is False and not any(states_of(got["other"]).values())
    assert got["max_cgroups"] == 1024
    # The oracle itself checked against construction: the test is not empty.
    assert {path: table[path] for path in two.expected()} == two.expected()
    assert table[None]["TIME_WAIT"] == two.in_a.time_wait + two.in_b.time_wait > 0
    assert table[None]["SYN_RECV"] == two.in_a.syn_recv + two.in_b.syn_recv
    assert all(table[None][state] == 0 for state in sc.KERNEL_STATES
               if state not in NO_CGROUP_STATES), table[None]


def check_discovery(rows: list[dict], two: TwoCgroups) -> None:
    by_path = {row["{#CGROUP}"]: row for row in rows}
    for group in (two.a, two.b):
        assert by_path[group.path] == {"{#CGROUP}": group.path, "{#CGROUP.ID}": str(group.id),
                                       "{#UNIT}": group.dir.name}
