"""The benchmark behind bench/run (issue 4, "Speed at 100k+ sockets").

Two roles in one file:

- the orchestrator (default, host network namespace): for each size starts a worker with
  `unshare -n`, bounded in time, and afterwards kills whatever is left in that namespace (by
  pid: every process whose /proc/<pid>/ns/net is the worker's); then prints the table and
  writes its report into docs/performance.md and draws docs/benchmark.png;
- the worker (`--worker`, inside its private namespace): builds the socket table with
  bench/build/sockgen, starts the in-process timer (bench/inproc) and three zabbix_agentd
  6.0 with the module, measures every method interleaved, and writes one JSON file.

Every timing is taken by bench/inproc (a long-lived Rust process) around exactly the work:
the /proc read, the module's `item::answer`, or one Zabbix passive check (connect, request,
reply to EOF, RST close). Python only chooses what runs next.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

# tests/lib (scripts/setup puts tests/ on PYTHONPATH): the ZBXD framing, the start-up wait.
from lib import agent as lib_agent
from lib import zbxd

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUILD = BENCH / "build"
SOCKGEN = BUILD / "sockgen"
INPROC = BENCH / "inproc" / "target" / "release" / "linux_status_bench"
MODULE = ROOT / "target" / "release" / "liblinux_status.so"
OUT = BENCH / "out"

DEFAULT_SIZES = "1000,10000,100000"
TW_LIFETIME = 60.0  # TCP_TIMEWAIT_LEN: a TIME_WAIT socket never lives shorter than this
TW_MARGIN = 1.0
# TIME_WAIT sockets that are not ours (zabbix_get's connections leave one on the agent).
TW_FOREIGN_SLACK = 20
AGENT_TIMEOUT = 30  # the agents' Timeout (the maximum), so a 1M-socket ss pipeline finishes
START_AGENTS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")

KERNEL_STATES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
                 "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING")
SS_NAMES = ("ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT",
            "UNCONN", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING")
SS_TO_KERNEL = dict(zip(SS_NAMES, KERNEL_STATES))

# (name, label, target, command). target: "inproc" (proc backend, no snapshot), "inproc_nl"
# (netlink backend, no snapshot), or an agent name; command: an inproc command line or a key.
METHODS = [
    ("floor", "read floor: /proc/net/tcp+tcp6, 64 KiB buffer, in-process", "inproc", "floor"),
    ("mod_state", "module in-process: tcp_status,ESTABLISHED", "inproc",
     "answer\ttcp_status\tESTABLISHED"),
    ("mod_summary", "module in-process: tcp_summary", "inproc", "answer\ttcp_summary"),
    ("nl_summary", "module in-process, netlink: tcp_summary (all states)", "inproc_nl",
     "answer\ttcp_summary"),
    ("nl_listen", "module in-process, netlink: tcp_status,LISTEN", "inproc_nl",
     "answer\ttcp_status\tLISTEN"),
    ("nl_tw", "module in-process, netlink: tcp_status,TIME_WAIT", "inproc_nl",
     "answer\ttcp_status\tTIME_WAIT"),
    ("agent_ping", "agent round trip: agent.ping", "proc0", "agent.ping"),
    ("agent_state", "agent + module: linux_status[tcp_status,ESTABLISHED]", "proc0",
     "linux_status[tcp_status,ESTABLISHED]"),
    ("agent_summary", "agent + module: linux_status[tcp_summary]", "proc0",
     "linux_status[tcp_summary]"),
    ("agent_nl_summary", "agent + module, netlink: linux_status[tcp_summary]", "netlink0",
     "linux_status[tcp_summary]"),
    ("agent_nl_listen", "agent + module, netlink: linux_status[tcp_status,LISTEN]", "netlink0",
     "linux_status[tcp_status,LISTEN]"),
    ("agent_nl_tw", "agent + module, netlink: linux_status[tcp_status,TIME_WAIT]", "netlink0",
     "linux_status[tcp_status,TIME_WAIT]"),
    # The shipped defaults, each call spaced past the 1 s snapshot lifetime so that it is a
    # real walk (what a poll every few seconds costs), not a reuse.
    ("def_listen", "agent + module, shipped defaults (auto, 1 s snapshot), calls 1 s apart: "
     "linux_status[tcp_status,LISTEN]", "default", "linux_status[tcp_status,LISTEN]"),
    ("def_tw", "agent + module, shipped defaults, calls 1 s apart: "
     "linux_status[tcp_status,TIME_WAIT]", "default", "linux_status[tcp_status,TIME_WAIT]"),
    ("def_state", "agent + module, shipped defaults, calls 1 s apart: "
     "linux_status[tcp_status,ESTABLISHED]", "default", "linux_status[tcp_status,ESTABLISHED]"),
    ("def_summary", "agent + module, shipped defaults, calls 1 s apart: "
     "linux_status[tcp_summary]", "default", "linux_status[tcp_summary]"),
    ("agent_old", "agent UserParameter (ss|awk|sort|uniq -c, grep): old_linux_status[tcp_status,ESTAB]",
     "proc0", "old_linux_status[tcp_status,ESTAB]"),
    ("agent_builtin", "agent built-in: net.tcp.socket.count[,,,,established]", "proc0",
     "net.tcp.socket.count[,,,,established]"),
]

# Rows on the shipped defaults, each call no closer than SPACING to the last call of any of
# them (the 1 s lifetime + 5%).
SPACED_METHODS = {"def_listen", "def_tw", "def_state", "def_summary"}
SPACING = 1.05

# Agent CPU for "all 11 states of one host", one polling interval each.
CPU_METHODS = [
    ("cpu_userparam", "(a) 11 UserParameter items old_linux_status[tcp_status,<ss state>]", "proc0",
     [f"old_linux_status[tcp_status,{s}]" for s in SS_NAMES]),
    ("cpu_builtin", "(b) 11 built-in items net.tcp.socket.count[,,,,<state>]", "proc0",
     [f"net.tcp.socket.count[,,,,{s.lower()}]" for s in KERNEL_STATES]),
    ("cpu_module_states", "(c) 11 module items linux_status[tcp_status,<state>], default snapshot",
     "default", [f"linux_status[tcp_status,{s}]" for s in KERNEL_STATES]),
    ("cpu_module_summary", "(d) 1 module item linux_status[tcp_summary], default snapshot",
     "default", ["linux_status[tcp_summary]"]),
]

# The agents of one worker: name -> (port, module configuration or None for "no file").
AGENTS = {
    "proc0": (9051, "Backend=proc\nSnapshotLifetime=0\n"),
    # The shipped defaults: an empty module configuration file, so every setting is at its
    # default (Backend=auto, that is netlink, and SnapshotLifetime=1000 shared by the
    # workers) and no host file can change it.
    "default": (9052, None),
    "netlink0": (9053, "Backend=netlink\nSnapshotLifetime=0\n"),
}

# The Timeout check (issue 4: "the scan respects the agent's Timeout: at 1M sockets it either
# finishes in time or fails cleanly"): agents with the agent's own Timeout set low (1 s) and
# at its default (3 s), every request a real scan. name -> (port, agent Timeout).
TIMEOUT_AGENTS = {
    "timeout1": (9054, 1),
    "timeout3": (9055, 3),
}
TIMEOUT_KEYS = ("linux_status[tcp_summary]", "linux_status[tcp_status,ESTABLISHED]")
TIMEOUT_QUERIES = 3  # per key and agent
TIMEOUT_SLACK = 0.5  # a clean failure must come within Timeout + this


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Small process helpers


class LineProcess:
    """A child speaking one line per request on stdin/stdout, read with a deadline."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 stderr_path: Path | None = None) -> None:
        self.stderr_path = stderr_path
        err = open(stderr_path, "wb") if stderr_path else None
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=err, env=env)
        if err:
            err.close()
        self._buffer = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def read_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.proc.args[0]}: no answer within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"{self.proc.args[0]} exited ({self.proc.poll()}); "
                                       f"{self.stderr_text()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    def stderr_text(self) -> str:
        if self.stderr_path and self.stderr_path.exists():
            return self.stderr_path.read_text(errors="replace")[-2000:]
        return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=5)


class Inproc(LineProcess):
    """bench/inproc: `call()` returns (ok, seconds, value)."""

    def __init__(self, config: Path, stderr_path: Path) -> None:
        env = dict(os.environ, LINUX_STATUS_CONFIG=str(config))
        env.pop("LINUX_STATUS_PROC_NET_DIR", None)
        super().__init__([str(INPROC)], env=env, stderr_path=stderr_path)
        status, _, _, text = self.read_line(30).split("\t", 3)
        self.ready = status == "ready"
        self.settings = text

    def call(self, command: str, timeout: float = 120) -> tuple[bool, float, str]:
        ok, seconds, _, value = self.call_cpu(command, timeout)
        return ok, seconds, value

    def call_cpu(self, command: str, timeout: float = 120) -> tuple[bool, float, float, str]:
        """(ok, wall seconds, thread CPU seconds, value)."""
        self.send(command)
        status, ns, cpu_ns, value = self.read_line(timeout).split("\t", 3)
        return status == "ok", int(ns) / 1e9, int(cpu_ns) / 1e9, value


def proc_stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def child_pids(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat_fields(int(entry))
            if fields and int(fields[1]) == pid:
                children.append(int(entry))
    return sorted(children)


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Agent:
    """One foreground zabbix_agentd 6.0 with the module, in the worker's namespace."""

    def __init__(self, name: str, port: int, module_settings: str | None, work: Path,
                 timeout: int = AGENT_TIMEOUT) -> None:
        self.name, self.port, self.timeout = name, port, timeout
        self.dir = work / f"agent-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "zabbix_agentd.conf"
        self.module_conf = self.dir / "linux_status.conf"
        self.log_file = self.dir / "zabbix_agentd.log"
        self.module_conf.write_text(module_settings or "")
        self.conf.write_text("\n".join([
            f"PidFile={self.dir / 'zabbix_agentd.pid'}",
            f"LogFile={self.log_file}",
            "LogType=file",
            "Server=127.0.0.1",
            "ServerActive=",
            "ListenIP=127.0.0.1",
            f"ListenPort={port}",
            f"Hostname=linux-status-bench-{name}",
            f"Timeout={timeout}",
            "AllowRoot=1",
            f"LoadModulePath={MODULE.parent}",
            f"LoadModule={MODULE.name}",
            f"StartAgents={START_AGENTS}",
            f'UserParameter=old_linux_status[*],/bin/bash {BENCH / "tcp_conn.sh"} "$1" "$2"',
            "",
        ]))
        self.env = dict(os.environ, LINUX_STATUS_CONFIG=str(self.module_conf),
                        TCP_CONN_TMP=str(self.dir / "tcp_conn.txt"))
        self.env.pop("LINUX_STATUS_PROC_NET_DIR", None)
        self.proc: subprocess.Popen | None = None
        self._pids: list[int] = []

    def start(self, client: Inproc) -> None:
        out = open(self.dir / "agent.stdout", "wb")
        self.proc = subprocess.Popen([os.environ["ZABBIX_AGENTD"], "-c", str(self.conf), "-f"],
                                     stdout=out, stderr=subprocess.STDOUT, env=self.env)
        out.close()

        def ping() -> tuple[bool, str]:
            # Through the persistent client: no zabbix_get fork in the measured namespace.
            ok, _, value = client.call(f"zbx\t{self.port}\tagent.ping", timeout=10)
            # Workers forked and listening: collector + StartAgents listeners.
            workers = child_pids(self.proc.pid)
            self._pids = [self.proc.pid] + workers
            return ok and value == "1" and len(workers) >= 1 + START_AGENTS, value

        lib_agent.wait_for_ping(self.proc, f"agent {self.name}", ping, self.log_tail, timeout=15)

    def pids(self) -> list[int]:
        """The main process and its workers, as listed at start (they do not change)."""
        return self._pids

    def workers(self) -> list[int]:
        assert self.proc is not None
        return child_pids(self.proc.pid)

    def cpu(self) -> tuple[float, int]:
        """CPU used so far by the main process and its workers, including the shells and
        pipelines the workers forked and reaped: (seconds, clock ticks).

        Ticks: utime+stime+cutime+cstime from /proc/<pid>/stat (10 ms resolution).
        Seconds: the same with the processes' own utime+stime replaced by their exact
        on-CPU time from /proc/<pid>/schedstat (ns), so a 3 ms scan is not rounded to 0 or
        10 ms; the reaped children still come from cutime+cstime."""
        seconds, ticks = 0.0, 0
        for pid in self.pids():
            fields = proc_stat_fields(pid)
            if not fields:
                continue
            ticks += sum(int(x) for x in fields[11:15])
            children = int(fields[13]) + int(fields[14])
            try:
                with open(f"/proc/{pid}/schedstat") as f:
                    own = int(f.read().split()[0]) / 1e9
            except OSError:
                own = (int(fields[11]) + int(fields[12])) / CLK_TCK
            seconds += own + children / CLK_TCK
        return seconds, ticks

    def rchar(self) -> int:
        """Bytes the main process and its workers have read with read() and friends
        (/proc/<pid>/io rchar): a /proc/net/tcp{,6} scan reads the whole table, so the
        difference over an interval divided by one table's size counts the scans."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/io") as f:
                    for line in f:
                        if line.startswith("rchar:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def alive_pids(self) -> list[int]:
        """The main process and its current children, if the main process still runs."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + child_pids(self.proc.pid)

    def worker_rss(self) -> dict[str, int]:
        return {str(pid): rss_kib(pid) or 0 for pid in self.workers()}

    def log_tail(self) -> str:
        texts = []
        for path in (self.dir / "agent.stdout", self.log_file):
            if path.exists():
                texts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(texts)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        workers = self.workers()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            for pid in [self.proc.pid] + workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=10)


def passive_checks_together(port: int, keys: list[str],
                            timeout: float = 120) -> list[tuple[bool, float, str]]:
    """Sends one Zabbix passive check per key at the same moment, each on its own
    connection from its own thread (as a server's pollers do for items of one host that fall
    due together), so the requests queue at the agent and spread over its workers. Returns
    (ok, seconds from the common start to the reply, value or error) per key, in order."""
    results: list[tuple[bool, float, str]] = [(False, 0.0, "not run")] * len(keys)
    barrier = threading.Barrier(len(keys) + 1)
    start = [0.0]

    def one(i: int, key: str) -> None:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as error:
            barrier.wait()
            results[i] = (False, 0.0, f"connect: {error}")
            return
        try:
            # RST on close: no TIME_WAIT socket on either side grows the table.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request = zbxd.frame(key.encode())
            barrier.wait()
            s.sendall(request)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            seconds = time.monotonic() - start[0]
            reply = zbxd.parse_reply(data)
            if reply.kind == "notsupported":
                results[i] = (False, seconds,
                              "ZBX_NOTSUPPORTED: " + reply.message.decode(errors="replace"))
            elif reply.kind == "value":
                results[i] = (True, seconds, reply.payload.decode(errors="replace"))
            else:
                results[i] = (False, seconds, f"bad reply: {reply.error}: {data[:40]!r}")
        except Exception as error:  # reported as a failed request
            results[i] = (False, time.monotonic() - start[0], f"{type(error).__name__}: {error}")
        finally:
            s.close()

    threads = [threading.Thread(target=one, args=(i, k), daemon=True) for i, k in enumerate(keys)]
    for t in threads:
        t.start()
    # Connected (in the agent's accept queue), not yet sent: release all requests at once.
    start[0] = time.monotonic()
    barrier.wait()
    for t in threads:
        t.join(timeout + 5)
    return results


# --------------------------------------------------------------------------------------------
# The worker (inside `unshare -n`)


def write_proc_sys(path: str, value: str) -> None:
    with open(f"/proc/sys/{path}", "w") as f:
        f.write(value)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def sockstat_tw() -> int:
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                words = line.split()
                return int(words[words.index("tw") + 1])
    return 0


def socket_mix(size: int) -> dict[str, int]:
    """About `size` sockets: 30% TIME_WAIT, 4% each FIN_WAIT2 and CLOSE_WAIT, 0.2% LISTEN
    (at least 10), the rest ESTABLISHED (pairs); every tenth of each kind over IPv6."""
    listen = max(10, size // 500)
    time_wait = size * 30 // 100
    wait_pairs = size * 4 // 100
    estab_pairs = max(1, (size - listen - time_wait - 2 * wait_pairs) // 2)
    return {"listen": listen, "estab_pairs": estab_pairs, "wait_pairs": wait_pairs,
            "time_wait": time_wait}


def ss_counts() -> dict[str, int]:
    out = subprocess.run(["ss", "-Htan"], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    counts = dict.fromkeys(KERNEL_STATES, 0)
    for line in out.splitlines():
        state = line.split(None, 1)[0]
        counts[SS_TO_KERNEL[state]] += 1
    return counts


class TimeWaitWindow:
    """Keeps the TIME_WAIT part of the table constant while measuring: a unit of work only
    starts if the current generation outlives it; otherwise we wait for that generation to
    expire (never earlier than 60 s after its first socket; the timer wheel may add a few
    seconds, so we watch /proc/net/sockstat) and have sockgen open a fresh one."""

    def __init__(self, sockgen: LineProcess, count: int, start: float, end: float) -> None:
        self.sockgen, self.count, self.start, self.end = sockgen, count, start, end
        self.refreshes = 0
        self.waited = 0.0

    def remaining(self) -> float:
        return self.start + TW_LIFETIME - TW_MARGIN - time.monotonic()

    def ensure(self, needed: float) -> None:
        if self.count == 0 or self.remaining() >= needed:
            return
        t0 = time.monotonic()
        log(f"TIME_WAIT window: {self.remaining():.1f} s left < {needed:.1f} s needed; "
            "waiting for the generation to expire, then refreshing")
        deadline = self.end + TW_LIFETIME + 15
        while sockstat_tw() > TW_FOREIGN_SLACK:
            if time.monotonic() > deadline:
                raise RuntimeError(f"TIME_WAIT sockets did not expire: {sockstat_tw()} left")
            time.sleep(0.25)
        start = time.monotonic()
        self.sockgen.send("tw")
        reply = self.sockgen.read_line(120 + self.count / 2000)
        assert reply.startswith("ok"), reply
        self.start, self.end = start, time.monotonic()
        self.refreshes += 1
        self.waited += self.end - t0
        if self.remaining() < needed:
            log(f"warning: a unit of {needed:.1f} s does not fit in one TIME_WAIT lifetime")


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def worker(args: argparse.Namespace) -> int:
    Path(args.ns_file).write_text(os.readlink("/proc/self/ns/net"))
    size = args.size
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result: dict = {"size_requested": size, "rounds": args.rounds,
                    "cpu_intervals": args.cpu_intervals, "loadavg_start": loadavg()}

    # The namespace: loopback up; fd00::/16 local (IPv6 client addresses); ephemeral ports
    # above sockgen's explicit client ports (10000..39999), so the agent clients' connect()
    # never searches through ports sockgen holds; room for every TIME_WAIT socket.
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-6", "route", "add", "local", "fd00::/16", "dev", "lo"], check=True)
    write_proc_sys("net/ipv4/ip_local_port_range", "40000 65535")
    mix = socket_mix(size)
    write_proc_sys("net/ipv4/tcp_max_tw_buckets", str(mix["time_wait"] + 100000))

    sockgen = None
    inprocs: list[Inproc] = []
    agents: dict[str, Agent] = {}
    try:
        log(f"size {size}: building {mix} ...")
        t = time.monotonic()
        sockgen = LineProcess([str(SOCKGEN), str(mix["listen"]), str(mix["estab_pairs"]),
                               str(mix["wait_pairs"]), str(mix["time_wait"])],
                              stderr_path=work / "sockgen.stderr")
        ready = sockgen.read_line(60 + size / 5000).split()
        assert ready[0] == "ready", ready
        end = time.monotonic()
        build_seconds, tw_seconds = float(ready[1]), float(ready[2])
        window = TimeWaitWindow(sockgen, mix["time_wait"], end - tw_seconds, end)
        result["build_seconds"] = build_seconds
        log(f"size {size}: table built in {build_seconds:.1f} s (wall {end - t:.1f} s)")

        # In-process timers: /proc without snapshot, and netlink without snapshot.
        (work / "proc0.conf").write_text("Backend=proc\nSnapshotLifetime=0\n")
        (work / "netlink0.conf").write_text("Backend=netlink\nSnapshotLifetime=0\n")
        inproc = Inproc(work / "proc0.conf", work / "inproc.stderr")
        inprocs.append(inproc)
        inproc_nl = Inproc(work / "netlink0.conf", work / "inproc_nl.stderr")
        inprocs.append(inproc_nl)
        features: dict = {"inproc_settings": inproc.settings,
                          "inproc_netlink_settings": inproc_nl.settings}
        features["config"] = inproc.ready and "snapshot_lifetime_ms=0" in inproc.settings
        nl_ok = inproc_nl.ready and "source=netlink" in inproc_nl.settings
        features["netlink_inproc"] = nl_ok
        ok, _, value = inproc.call("answer\ttcp_summary")
        features["tcp_summary"] = ok
        if not ok:
            features["tcp_summary_error"] = value

        for name, (port, settings) in AGENTS.items():
            if name == "netlink0" and not features["config"]:
                continue
            agents[name] = Agent(name, port, settings, work)
            agents[name].start(inproc)
        for name, (port, timeout) in TIMEOUT_AGENTS.items():
            agents[name] = Agent(name, port, "Backend=proc\nSnapshotLifetime=0\n", work,
                                 timeout=timeout)
            agents[name].start(inproc)
        rss_before = {name: a.worker_rss() for name, a in agents.items()}
        if "netlink0" in agents:
            text = agents["netlink0"].log_tail()
            features["netlink_agent"] = "netlink sock_diag unavailable" not in text
        else:
            features["netlink_agent"] = False
        result["features"] = features
        log(f"size {size}: features {json.dumps({k: v for k, v in features.items() if 'settings' not in k})}")

        # Every method must agree with ss (agents idle: their listeners are in the table).
        window.ensure(3 + size * 1e-5)
        check = {"ss": ss_counts()}
        if features["tcp_summary"]:
            ok, _, value = inproc.call("answer\ttcp_summary")
            check["module"] = {k: json.loads(value)[k] for k in KERNEL_STATES}
            if nl_ok:
                ok, _, value = inproc_nl.call("answer\ttcp_summary")
                check["module_netlink"] = {k: json.loads(value)[k] for k in KERNEL_STATES}
        else:
            check["module"] = {s: int(inproc.call(f"answer\ttcp_status\t{s}")[2])
                               for s in KERNEL_STATES}
        expected = dict.fromkeys(KERNEL_STATES, 0)
        expected.update(ESTABLISHED=2 * mix["estab_pairs"], FIN_WAIT2=mix["wait_pairs"],
                        CLOSE_WAIT=mix["wait_pairs"], TIME_WAIT=mix["time_wait"],
                        LISTEN=mix["listen"] + len(agents))
        check["expected"] = expected
        result["check"] = check
        result["agree"] = all(c == expected for c in check.values())
        result["size"] = sum(expected.values())
        log(f"size {size}: {result['size']} sockets; every count agrees: {result['agree']}")
        if not result["agree"]:
            for name, counts in check.items():
                log(f"  {name}: {counts}")

        def run(target: str, command: str) -> tuple[bool, float, float, str]:
            if target == "inproc":
                return inproc.call_cpu(command)
            if target == "inproc_nl":
                return inproc_nl.call_cpu(command)
            return inproc.call_cpu(f"zbx\t{agents[target].port}\t{command}")

        methods = [m for m in METHODS
                   if (m[2] != "inproc_nl" or nl_ok)
                   and (m[2] not in AGENTS or m[2] in agents)
                   and (m[2] != "netlink0" or features["netlink_agent"])
                   and ("tcp_summary" not in m[3] or features["tcp_summary"])]
        samples: dict[str, list[float]] = {m[0]: [] for m in methods}
        cpu_samples: dict[str, list[float]] = {m[0]: [] for m in methods}
        values: dict[str, str] = {}
        errors: dict[str, str] = {}

        # Warm-up round (discarded): also gives each method's expected duration, for the
        # TIME_WAIT window checks done before every sample (at a million sockets one round
        # outlasts a TIME_WAIT generation, so a refresh may fall between two samples).
        window.ensure(2 + size * 2e-5)
        expected_seconds: dict[str, float] = {}
        t = time.monotonic()
        for name, _, target, command in methods:
            t1 = time.monotonic()
            ok, _, _, value = run(target, command)
            expected_seconds[name] = time.monotonic() - t1
            (values if ok else errors)[name] = value
        log(f"size {size}: warm-up round {time.monotonic() - t:.2f} s; "
            f"{len(methods)} methods x {args.rounds} rounds")

        last_call: dict[str, float] = {}
        for r in range(args.rounds):
            order = methods[r % len(methods):] + methods[:r % len(methods)]
            for name, _, target, command in order:
                if name in SPACED_METHODS:
                    # Past the snapshot lifetime since the last call of any of these rows: a
                    # real walk of a lone item (a burst of per-state items shares one dump of
                    # every state instead, which the CPU-per-interval rows measure).
                    since = max((last_call.get(n, -SPACING) for n in SPACED_METHODS),
                                default=-SPACING)
                    wait = SPACING - (time.monotonic() - since)
                    if wait > 0:
                        time.sleep(wait)
                window.ensure(1.3 * expected_seconds[name] + 0.3)
                agent = agents.get(target)
                agent_before = agent.cpu()[0] if agent else 0.0
                t1 = time.monotonic()
                ok, seconds, cpu_seconds, value = run(target, command)
                expected_seconds[name] = max(expected_seconds[name], time.monotonic() - t1)
                last_call[name] = time.monotonic()
                if agent:
                    # The agent's CPU for this request (its processes and what they forked).
                    cpu_seconds = agent.cpu()[0] - agent_before
                if ok:
                    samples[name].append(seconds)
                    cpu_samples[name].append(cpu_seconds)
                else:
                    errors[name] = value

        result["methods"] = {
            name: {"label": label, "samples": samples[name], "median": median(samples[name]),
                   # CPU per request, robust to load: the timing thread's CPU for in-process
                   # rows, the agent's processes' CPU (with forked children) for agent rows.
                   "cpu_median": median(cpu_samples[name]),
                   "value": values.get(name), "error": errors.get(name)}
            for name, label, target, _ in methods}
        for name, label, target, _ in METHODS:
            if name not in result["methods"]:
                result["methods"][name] = {"label": label, "samples": [], "median": None,
                                           "cpu_median": None,
                                           "value": None, "error": "n/a (not supported)"}

        # Agent CPU per polling interval, all 11 states of one host.
        cpu: dict = {}
        # Expected duration of one interval, for the TIME_WAIT window: 11 requests at the
        # slowest single-request time seen for that kind of key.
        slowest = {"cpu_userparam": samples.get("agent_old"),
                   "cpu_builtin": samples.get("agent_builtin"),
                   "cpu_module_states": samples.get("agent_state"),
                   "cpu_module_summary": samples.get("agent_summary") or samples.get("agent_state")}
        est = {}
        for name, label, target, keys in CPU_METHODS:
            cpu[name] = {"label": label, "agent": target, "seconds": [], "ticks": [], "wall": [],
                         "rchar": [], "errors": 0, "error_examples": []}
            # With the shared snapshot (c) should scan once per interval; leave room for two.
            scans = min(len(keys), 2) if target == "default" else len(keys)
            est[name] = scans * max(slowest[name] or [1.0])
        for k in range(args.cpu_intervals):
            order = CPU_METHODS[k % 4:] + CPU_METHODS[:k % 4]
            for name, _, target, keys in order:
                if target not in agents:
                    continue
                if "tcp_summary" in keys[0] and not features["tcp_summary"]:
                    continue
                # The module's items share one interval: a server polls the items of one host
                # and one interval together, so all of them are sent at the same moment, each
                # on its own connection (they spread over the agent's workers), and the agent's
                # CPU is taken around the whole batch. The whole interval has to fit in the
                # TIME_WAIT window. The old pipelines and built-ins share nothing: at a million
                # sockets one interval outlasts the window, so their CPU is summed request by
                # request and the window may be refreshed between requests.
                shared = target == "default"
                per_key = est[name] / (min(len(keys), 2) if shared else len(keys))
                window.ensure(1.3 * est[name] + 2 if shared else 1.3 * per_key + 1)
                # Longer than the default SnapshotLifetime (1 s): each interval is a new poll.
                time.sleep(1.2)
                agent = agents[target]
                seconds = ticks = wall = 0.0
                rchar = 0
                if shared:
                    before, before_ticks = agent.cpu()
                    before_rchar = agent.rchar()
                    t = time.monotonic()
                    replies = passive_checks_together(agent.port, keys)
                    wall = time.monotonic() - t
                    after, after_ticks = agent.cpu()
                    rchar = agent.rchar() - before_rchar
                    seconds, ticks = after - before, after_ticks - before_ticks
                    for ok, _, value in replies:
                        if not ok:
                            cpu[name]["errors"] += 1
                            cpu[name]["error_examples"] = (cpu[name]["error_examples"] + [value])[:3]
                    cpu[name].setdefault("reply_seconds", []).append([round(r[1], 4) for r in replies])
                else:
                    for key in keys:
                        window.ensure(1.3 * per_key + 1)
                        before, before_ticks = agent.cpu()
                        before_rchar = agent.rchar()
                        t = time.monotonic()
                        ok, _, value = inproc.call(f"zbx\t{agent.port}\t{key}")
                        wall += time.monotonic() - t
                        if not ok:
                            cpu[name]["errors"] += 1
                            cpu[name]["error_examples"] = (cpu[name]["error_examples"] + [value])[:3]
                        # The reply follows the worker's waitpid(), so cutime/cstime are final.
                        after, after_ticks = agent.cpu()
                        rchar += agent.rchar() - before_rchar
                        seconds += after - before
                        ticks += after_ticks - before_ticks
                cpu[name]["seconds"].append(seconds)
                cpu[name]["ticks"].append(ticks)
                cpu[name]["wall"].append(wall)
                cpu[name]["rchar"].append(rchar)
                est[name] = max(est[name], wall)
        for entry in cpu.values():
            n = len(entry["ticks"])
            entry["cpu_ms_per_interval"] = (sum(entry["seconds"]) * 1000 / n) if n else None
            entry["tick_ms_per_interval"] = (sum(entry["ticks"]) * 1000 / CLK_TCK / n) if n else None
            # Scans per interval, counted: bytes the agent read / one /proc table's size.
            table = values.get("floor")
            entry["scans_per_interval"] = (
                sum(entry["rchar"]) / n / int(table)
                if n and table and table.isdigit() and int(table) else None)
        result["cpu"] = cpu

        # The agent's Timeout: every request a real scan, against an agent with Timeout=1 and
        # one with the default Timeout=3. Each reply must be a correct value within Timeout,
        # or a clean ZBX_NOTSUPPORTED naming the Timeout within Timeout + 0.5 s; the agent
        # must keep its main process and workers.
        timeouts: dict = {}
        for name, (port, timeout) in TIMEOUT_AGENTS.items():
            agent = agents[name]
            pids_before = agent.alive_pids()
            queries = []
            for k in range(TIMEOUT_QUERIES):
                for key in TIMEOUT_KEYS:
                    window.ensure(timeout + 3)
                    t = time.monotonic()
                    ok, seconds, _, value = inproc.call_cpu(f"zbx\t{port}\t{key}",
                                                            timeout=timeout + 60)
                    outside = time.monotonic() - t
                    want = dict(check["expected"])
                    correct = None
                    if ok:
                        try:
                            if "tcp_summary" in key:
                                got = {s: json.loads(value)[s] for s in KERNEL_STATES}
                            else:
                                got = {"ESTABLISHED": int(value)}
                            # The query's own connection: +2 ESTABLISHED (+ a few for
                            # requests of other agents closing meanwhile).
                            correct = all(
                                (0 <= got[s] - want[s] <= 4) if s == "ESTABLISHED"
                                else got[s] == want[s] for s in got)
                        except (ValueError, KeyError, TypeError):
                            correct = False
                    clean = (not ok and value.startswith("ZBX_NOTSUPPORTED")
                             and f"Timeout of {timeout} s" in value)
                    verdict = ((ok and correct and seconds <= timeout)
                               or (clean and seconds <= timeout + TIMEOUT_SLACK))
                    queries.append({"key": key, "ok": ok, "seconds": seconds,
                                    "outside_seconds": outside, "correct": correct,
                                    "clean_failure": clean, "pass": bool(verdict),
                                    "value": value[:200]})
            pids_after = agent.alive_pids()
            timeouts[name] = {"timeout": timeout, "pids_before": pids_before,
                              "pids_after": pids_after,
                              "stayed_up": bool(pids_before) and pids_after == pids_before,
                              "queries": queries}
            log(f"size {size}: Timeout={timeout}: " + "; ".join(
                f"{q['key'][13:-1]} {'value' if q['ok'] else 'NOTSUPPORTED'} "
                f"{q['seconds']:.2f} s" for q in queries)
                + f"; pids unchanged: {timeouts[name]['stayed_up']}")
        result["timeout"] = timeouts

        # zabbix_get once (three times), for context: a process start per check.
        walls = []
        for _ in range(3):
            t = time.monotonic()
            subprocess.run([os.environ["ZABBIX_GET"], "-s", "127.0.0.1", "-p",
                            str(agents["proc0"].port), "-k",
                            "linux_status[tcp_status,ESTABLISHED]"],
                           capture_output=True, timeout=60, check=True)
            walls.append(time.monotonic() - t)
        result["zabbix_get_seconds"] = median(walls)

        result["rss_kib"] = {name: {"before": rss_before[name], "after": a.worker_rss()}
                             for name, a in agents.items()}
        result["loadavg_end"] = loadavg()
        result["tw_refreshes"] = window.refreshes
        result["tw_wait_seconds"] = window.waited
        result["duration_seconds"] = time.monotonic() - started
        for name, a in agents.items():
            result.setdefault("agent_log_warnings", {})[name] = [
                line for line in a.log_tail().splitlines()
                if any(w in line for w in ("sock_diag", "crash", "Got signal", "linux_status:"))]
        Path(args.json).write_text(json.dumps(result, indent=1))
        log(f"size {size}: done in {result['duration_seconds']:.0f} s "
            f"({window.refreshes} TIME_WAIT refreshes, {window.waited:.0f} s waited)")
        return 0
    finally:
        for a in agents.values():
            try:
                a.stop()
            except Exception as error:  # keep cleaning up
                log(f"stopping agent {a.name}: {error}")
        for p in inprocs:
            p.close()
        if sockgen is not None:
            sockgen.close()


# --------------------------------------------------------------------------------------------
# The orchestrator (host namespace)


def processes_in_netns(ns: str) -> list[int]:
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == ns:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def kill_netns_processes(ns: str | None) -> None:
    """Kills, by pid, every process left in a worker's private namespace (all of them were
    started by that worker: sockgen and its children, agents, bench/inproc, ss)."""
    if not ns or ns == os.readlink("/proc/self/ns/net"):
        return
    for _ in range(3):
        pids = processes_in_netns(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def run_worker(size: int, args: argparse.Namespace) -> Path | None:
    OUT.mkdir(parents=True, exist_ok=True)
    json_path = OUT / f"size-{size}.json"
    ns_file = OUT / f"size-{size}.netns"
    work = OUT / f"work-{size}"
    for p in (json_path, ns_file):
        p.unlink(missing_ok=True)
    # A budget per size: generous, but bounded.
    budget = 240 + size / 1000 * (1.5 if size <= 200000 else 1.2)
    argv = ["unshare", "-n", "--", sys.executable, str(Path(__file__)), "--worker",
            "--size", str(size), "--rounds", str(args.rounds if size < 500000 else
                                                   min(args.rounds, args.rounds_1m)),
            "--cpu-intervals", str(args.cpu_intervals if size < 500000 else 1),
            "--json", str(json_path), "--ns-file", str(ns_file), "--work", str(work)]
    proc = subprocess.Popen(argv)
    ns = None
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        log(f"size {size}: over its budget of {budget:.0f} s; stopping it")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if ns_file.exists():
            ns = ns_file.read_text().strip()
        kill_netns_processes(ns)
    if proc.returncode != 0 or not json_path.exists():
        log(f"size {size}: worker failed (exit {proc.returncode}); see {work}")
        return None
    return json_path


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def fmt_size(n: int) -> str:
    if n >= 1000000:
        return f"{n / 1e6:.3g}M"
    if n >= 1000:
        return f"{n / 1e3:.3g}k"
    return str(n)


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"kernel": platform.release(), "cpu": cpu, "cores": str(os.cpu_count()),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def source_version() -> str:
    """The commit, and a digest of src/ as measured (the tree may hold uncommitted work)."""
    import hashlib
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src",
                                "Cargo.toml", "Cargo.lock", "build.rs"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        head = f"commit {head}" + (" with uncommitted changes to src/" if dirty else
                                   " (src/ as committed)")
    except OSError:
        head = "unknown"
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.rs")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{head or 'unknown'}, src/ sha256 {digest.hexdigest()[:12]}"


def judge(results: list[dict]) -> list[tuple[str, str, str]]:
    """(target, measured, PASS/FAIL/n/a) at the largest size >= 100k (or the largest)."""
    big = [r for r in results if r["size_requested"] >= 100000]
    ref = (big[0] if big else results[-1]) if results else None
    out = []
    if ref is None:
        return out
    at = f"at {fmt_size(ref['size_requested'])}"
    m = ref["methods"]
    floor = m["floor"]["median"]

    def ratio(name: str) -> float | None:
        v = m.get(name, {}).get("median")
        return v / floor if v is not None and floor else None

    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    # Marks use CPU time (robust on a shared machine: no run-queue waits); wall beside it.
    def cpu_ratio(name: str) -> float | None:
        v, f = m.get(name, {}).get("cpu_median"), m["floor"].get("cpu_median")
        return v / f if v is not None and f else None

    for name, what, limit, digits in (
            ("mod_state", "per-state key (module in-process, tcp_status,ESTABLISHED) within "
             "1.05x of the floor", 1.05, 3),
            ("nl_summary", "netlink, all states (tcp_summary, in-process) <= 0.8x the floor",
             0.8, 3),
            ("nl_listen", "netlink, LISTEN only (in-process) <= 0.01x the floor", 0.01, 4),
            ("def_listen", "shipped defaults through the agent: LISTEN count <= 0.01x the floor",
             0.01, 4),
            ("def_summary", "shipped defaults through the agent: all states (tcp_summary) "
             "<= 0.5x the floor", 0.5, 3)):
        c, w = cpu_ratio(name), ratio(name)
        if c is None:
            out.append((f"{what} {at}", "n/a (not supported)", "n/a"))
            continue
        out.append((f"{what} {at}", f"CPU time {c:.{digits}f}x (wall {w:.{digits}f}x)",
                    mark(c <= limit)))
    # A TIME_WAIT count on the shipped defaults costs what a TIME_WAIT-only dump costs (plus
    # the agent's own round trip), not a dump of every state.
    tw, nl_tw, ping = (m.get(k, {}).get("cpu_median") for k in ("def_tw", "nl_tw", "agent_ping"))
    what = (f"shipped defaults through the agent: TIME_WAIT count <= 1.25x (netlink TIME_WAIT "
            f"dump + agent.ping) {at}")
    if None in (tw, nl_tw, ping):
        out.append((what, "n/a (not supported)", "n/a"))
    else:
        limit = 1.25 * (nl_tw + ping)
        out.append((what, f"CPU {tw * 1e3:.2f} ms vs {limit * 1e3:.2f} ms", mark(tw <= limit)))
    cpu = ref.get("cpu", {})
    for mod in ("cpu_module_states", "cpu_module_summary"):
        for old in ("cpu_userparam", "cpu_builtin"):
            a = cpu.get(old, {}).get("cpu_ms_per_interval")
            b = cpu.get(mod, {}).get("cpu_ms_per_interval")
            if a is None or b is None:
                out.append((f"agent CPU: {mod[4:]} >= 10x cheaper than {old[4:]} {at}", "n/a", "n/a"))
                continue
            adv = a / b if b else float("inf")
            out.append((f"agent CPU per interval: {cpu[mod]['label'][:3]} >= 10x cheaper than "
                        f"{cpu[old]['label'][:3]} {at}",
                        f"{adv:.1f}x ({a:.0f} ms vs {b:.1f} ms)", mark(adv >= 10)))
    t_ref = timeout_reference(results)
    if t_ref is not None:
        ok, summary = timeout_verdict(t_ref)
        out.append((f"the scan respects the agent's Timeout at {fmt_size(t_ref['size_requested'])}: "
                    "each reply a correct value within Timeout or a clean ZBX_NOTSUPPORTED naming "
                    f"it within Timeout + {TIMEOUT_SLACK} s; the agent keeps its processes",
                    summary, mark(ok)))
    rss = [(r["size_requested"], max(r["rss_kib"]["default"]["after"].values()))
           for r in results if "default" in r.get("rss_kib", {})]
    if len(rss) >= 2:
        spread = max(v for _, v in rss) - min(v for _, v in rss)
        out.append(("agent worker RSS constant in socket count (module-only agent, max worker "
                    "after the run; spread across sizes <= 1 MiB)",
                    ", ".join(f"{fmt_size(s)}: {v} KiB" for s, v in rss) + f"; spread {spread} KiB",
                    mark(spread <= 1024)))
    return out


def timeout_reference(results: list[dict]) -> dict | None:
    """The largest size that ran the Timeout check (1M when --million)."""
    done = [r for r in results if r.get("timeout")]
    return done[-1] if done else None


def timeout_verdict(r: dict) -> tuple[bool, str]:
    parts, ok = [], True
    for name, t in r["timeout"].items():
        qs = t["queries"]
        values = [q for q in qs if q["ok"]]
        clean = [q for q in qs if q["clean_failure"]]
        ok = ok and all(q["pass"] for q in qs) and t["stayed_up"]
        parts.append(f"Timeout={t['timeout']}: {len(values)} values (max "
                     f"{fmt_time(max((q['seconds'] for q in values), default=None))}), "
                     f"{len(clean)} clean failures (max "
                     f"{fmt_time(max((q['seconds'] for q in clean), default=None))}), "
                     f"{len(qs) - sum(q['pass'] for q in qs)} bad of {len(qs)}; pids "
                     f"{'unchanged' if t['stayed_up'] else 'CHANGED'}")
    return ok, "; ".join(parts)


def render_timeout(results: list[dict]) -> list[str]:
    lines = []
    r_ref = timeout_reference(results)
    if r_ref is None:
        return lines
    lines.append(f"## The agent Timeout at {fmt_size(r_ref['size_requested'])} sockets\n")
    lines.append("The scan must respect the agent's Timeout (the module gets it from "
                 "`zbx_module_item_timeout`): finish in time or fail cleanly, never block the "
                 "worker. Two more agents run at each size with `SnapshotLifetime=0` (every "
                 "request a real /proc scan), one with `Timeout=1` and one with the default "
                 f"`Timeout=3`; each is asked {TIMEOUT_QUERIES} times for each of "
                 + ", ".join(f"`{k}`" for k in TIMEOUT_KEYS) + " (passive checks from the "
                 "persistent client, one after another). A reply passes if it is a correct value "
                 "(every state as built; ESTABLISHED may count the query's own connection) within "
                 "Timeout, or ZBX_NOTSUPPORTED with a message naming the Timeout within Timeout + "
                 f"{TIMEOUT_SLACK} s; the agent passes if its main process and worker pids are the "
                 "same before and after.\n")
    lines.append("| size | agent | key | replies (time: value / NOTSUPPORTED) | slowest | pids unchanged | |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in results:
        for name, t in r.get("timeout", {}).items():
            for key in TIMEOUT_KEYS:
                qs = [q for q in t["queries"] if q["key"] == key]
                if not qs:
                    continue
                cells = ", ".join(
                    f"{fmt_time(q['seconds'])}: "
                    + ("value" + ("" if q["correct"] else " (WRONG)") if q["ok"]
                       else ("NOTSUPPORTED" if q["clean_failure"] else "ERROR"))
                    for q in qs)
                good = all(q["pass"] for q in qs) and t["stayed_up"]
                lines.append(f"| {fmt_size(r['size_requested'])} | Timeout={t['timeout']} | "
                             f"`{key}` | {cells} | {fmt_time(max(q['seconds'] for q in qs))} | "
                             f"{'yes' if t['stayed_up'] else '**no**'} | "
                             f"**{'PASS' if good else 'FAIL'}** |")
    ok, summary = timeout_verdict(r_ref)
    lines.append("")
    messages = sorted({q["value"] for t in r_ref["timeout"].values() for q in t["queries"]
                       if not q["ok"]})
    if messages:
        lines.append(f"Messages at {fmt_size(r_ref['size_requested'])}: "
                     + "; ".join(f"`{m}`" for m in messages[:4]) + "\n")
    lines.append(f"**{'PASS' if ok else 'FAIL'}** at {fmt_size(r_ref['size_requested'])}: "
                 f"{summary}.\n")
    return lines


def md(text: str) -> str:
    return text.replace("|", "\\|")


def render(results: list[dict], command: str, elapsed: float, info: dict[str, str],
           source: str) -> str:
    sizes = [r["size_requested"] for r in results]
    lines = []
    lines.append("# Benchmarks: counting TCP states at 1k to 100k+ sockets\n")
    lines.append(f"Generated by `{command}` on {info['date']} in {elapsed / 60:.1f} min.  ")
    lines.append(f"Kernel {info['kernel']}, CPU {info['cpu']}, {info['cores']} cores; "
                 f"zabbix_agentd 6.0 (Debian) with `target/release/liblinux_status.so` built "
                 f"from {source}.\n")
    lines.append("Each size runs in its own network namespace holding a built socket table "
                 "(30% TIME_WAIT, 4% FIN_WAIT2, 4% CLOSE_WAIT, ~0.2% LISTEN, the rest "
                 "ESTABLISHED; every tenth socket of each kind IPv6). Times are medians of "
                 f"{results[0]['rounds'] if results else '?'} interleaved rounds (round-robin over "
                 "the methods, the starting method rotating), each timed inside one long-lived "
                 "process (bench/inproc): the module in-process through "
                 "`linux_status::answer` with `SnapshotLifetime=0` (every call a real scan; "
                 "`Backend=proc` unless the row says netlink); agent rows are one Zabbix passive "
                 "check each from a persistent client (connect, `ZBXD\\x01` request, reply, "
                 "close) against agents with `SnapshotLifetime=0` (`Backend=proc` unless the row "
                 "says netlink), except the rows marked *shipped defaults*: an agent whose module "
                 "has every setting at its default (`Backend=auto`, `SnapshotLifetime=1000`), "
                 "each call more than the lifetime after the last of those rows. Ratios are to "
                 "the floor of the same size.\n")
    header = "| method | " + " | ".join(fmt_size(r["size"]) + " sockets" for r in results) + " |"
    lines.append("## Time per request (median) and ratio to the floor\n")
    lines.append(header)
    lines.append("|---|" + "---|" * len(results))
    for name, label, _, _ in METHODS:
        cells = []
        for r in results:
            m = r["methods"][name]
            floor = r["methods"]["floor"]["median"]
            if m["median"] is None:
                cells.append("n/a")
            elif name == "floor":
                cells.append(f"**{fmt_time(m['median'])}**")
            else:
                cells.append(f"{fmt_time(m['median'])} ({m['median'] / floor:.3g}x)")
        lines.append(f"| {md(label)} | " + " | ".join(cells) + " |")
    cells = [fmt_time(r.get("zabbix_get_seconds")) for r in results]
    zget_row = cells
    lines.append("| for context: `zabbix_get` wall time, linux_status[tcp_status,ESTABLISHED] "
                 "(its own process start) | " + " | ".join(zget_row) + " |")
    lines.append("")
    lines.append("### CPU time per request (median) and ratio to the floor's\n")
    lines.append("The same samples counted in CPU time, which leaves out time spent waiting for a "
                 "CPU and so holds up better when other work shares the machine (load averages "
                 "below). In-process rows: the timing thread's CPU (CLOCK_THREAD_CPUTIME_ID). "
                 "Agent rows: the CPU the agent's processes used for the request "
                 "(/proc/<pid>/schedstat of the main process and workers, plus the cutime+cstime "
                 "of what they forked, in 10 ms ticks: coarse for the UserParameter row at 1k).\n")
    lines.append(header)
    lines.append("|---|" + "---|" * len(results))
    for name, label, target, _ in METHODS:
        cells = []
        for r in results:
            m = r["methods"][name]
            floor = r["methods"]["floor"].get("cpu_median")
            if m.get("cpu_median") is None or not floor:
                cells.append("n/a")
            elif name == "floor":
                cells.append(f"**{fmt_time(m['cpu_median'])}**")
            else:
                cells.append(f"{fmt_time(m['cpu_median'])} ({m['cpu_median'] / floor:.3g}x)")
        lines.append(f"| {md(label)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("## Agent CPU per polling interval, all 11 states of one host\n")
    lines.append("CPU of the agent's main process and workers per interval: utime+stime+"
                 "cutime+cstime from /proc/<pid>/stat (cutime/cstime carry the shells and "
                 "pipelines the workers forked and reaped), with the processes' own "
                 "utime+stime taken exactly from /proc/<pid>/schedstat instead of in "
                 f"{1000 // CLK_TCK} ms ticks (the tick-only figure is in bench/out/*.json). Mean "
                 f"of {results[0]['cpu_intervals'] if results else '?'} "
                 f"intervals, 1.2 s apart (longer than the default SnapshotLifetime of 1 s). "
                 "(c) and (d) run on an agent with the default module settings (SnapshotLifetime "
                 "1000 ms, one snapshot shared by all its workers). (c)'s 11 requests are sent at "
                 "the same moment, each on its own connection, as a server polls the items of one "
                 "host that fall due together; they queue at the agent and spread over its "
                 f"{START_AGENTS} passive workers, and the agent's CPU is taken around the whole "
                 "batch. (a) and (b) share nothing, so their 11 requests are sent one after "
                 "another and their CPU summed. The scans per interval are counted, not "
                 "inferred: the bytes the agent's processes read during the interval "
                 "(/proc/<pid>/io rchar) divided by the size of one /proc/net/tcp+tcp6 table "
                 "(the floor's read).\n")
    lines.append("| items | " + " | ".join(fmt_size(r["size"]) for r in results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for name, label, _, _ in CPU_METHODS:
        cells = []
        for r in results:
            v = r.get("cpu", {}).get(name, {}).get("cpu_ms_per_interval")
            cells.append("n/a" if v is None else f"{v:.1f} ms")
        lines.append(f"| {md(label)} | " + " | ".join(cells) + " |")
    for mod in ("cpu_module_states", "cpu_module_summary"):
        for old in ("cpu_userparam", "cpu_builtin"):
            cells = []
            for r in results:
                a = r.get("cpu", {}).get(old, {}).get("cpu_ms_per_interval")
                b = r.get("cpu", {}).get(mod, {}).get("cpu_ms_per_interval")
                if a is None or b is None:
                    cells.append("n/a")
                elif b == 0:
                    cells.append("inf")
                else:
                    cells.append(f"{a / b:.1f}x")
            lines.append(f"| ratio {old[4:]} / {mod[4:]} | " + " | ".join(cells) + " |")
    for mod, what in (("cpu_module_states", "(c)"), ("cpu_module_summary", "(d)")):
        cells = []
        for r in results:
            v = r.get("cpu", {}).get(mod, {}).get("scans_per_interval")
            cells.append("n/a" if v is None else f"{v:.2f}")
        lines.append(f"| scans per interval behind {what} (bytes read / one table) | "
                     + " | ".join(cells) + " |")
    cells = []
    for r in results:
        e = r.get("cpu", {}).get("cpu_module_states", {})
        cells.append(str(e.get("errors", "n/a")))
    lines.append("| failed requests in (c) | " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(render_timeout(results))
    lines.append("## Agent worker memory (VmRSS, KiB, largest worker) before / after the run\n")
    lines.append("| agent | " + " | ".join(fmt_size(r["size"]) for r in results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for name, desc in (("proc0", "module SnapshotLifetime=0 + UserParameter + built-in"),
                       ("default", "module, default settings (module items only)"),
                       ("netlink0", "module Backend=netlink, SnapshotLifetime=0")):
        cells = []
        for r in results:
            rss = r.get("rss_kib", {}).get(name)
            cells.append("n/a" if not rss else
                         f"{max(rss['before'].values())} / {max(rss['after'].values())}")
        lines.append(f"| {desc} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("## Targets (issue 4)\n")
    lines.append("| target | measured | |")
    lines.append("|---|---|---|")
    for target, measured, mark in judge(results):
        lines.append(f"| {target} | {measured} | **{mark}** |")
    lines.append("")
    lines.append("## Checks and notes\n")
    for r in results:
        f = r.get("features", {})
        lines.append(f"- {fmt_size(r['size'])} sockets ({r['size']}): load average "
                     f"{r.get('loadavg_start')} at the start, {r.get('loadavg_end')} at the end; "
                     "table built in "
                     f"{r.get('build_seconds', 0):.1f} s; every count agrees (expected = ss -tan "
                     f"= module{' = module netlink' if 'module_netlink' in r.get('check', {}) else ''}): "
                     f"**{r.get('agree')}**; TIME_WAIT generation refreshed {r.get('tw_refreshes')} "
                     f"time(s) ({r.get('tw_wait_seconds', 0):.0f} s waiting for expiry); "
                     f"worker run {r.get('duration_seconds', 0):.0f} s. tcp_summary: "
                     f"{'yes' if f.get('tcp_summary') else 'n/a'}; netlink in-process: "
                     f"{'yes' if f.get('netlink_inproc') else 'n/a'}, in the agent: "
                     f"{'yes' if f.get('netlink_agent') else 'n/a'}.")
        errs = {k: v["error"] for k, v in r["methods"].items()
                if v.get("error") and not v["error"].startswith("n/a")}
        if errs:
            lines.append(f"  - errors: {errs}")
    lines.append("- Method values at the last size (first answer): " + "; ".join(
        f"{k}={v['value'][:60]}" for k, v in results[-1]["methods"].items()
        if v.get("value") is not None and k != "floor") if results else "")
    lines.append("- Agent rows include the agent's round trip (see agent.ping) and count the "
                 "query's own connection (+2 ESTABLISHED). The UserParameter row is "
                 "`bench/tcp_conn.sh`, the classic script: `ss -tan | awk | sort | uniq -c` "
                 "into a temp file, then `grep | awk`.")
    lines.append("")
    return "\n".join(lines)


# The picture: a few panels of a few lines each, one question per panel, instead of one panel
# of every method (17 lines could not be told apart). Each time panel repeats the floor (one
# read of /proc/net/tcp+tcp6) in black as the common yardstick; every figure is also in the
# tables of docs/performance.md. Panel title -> method names (METHODS), in legend order.
PANELS = [
    ("/proc backend: the module costs one read (SnapshotLifetime=0)",
     ["mod_state", "mod_summary", "agent_state", "agent_summary"]),
    ("netlink backend, in-process", ["nl_summary", "nl_tw", "nl_listen"]),
    ("netlink backend, through the agent",
     ["agent_nl_summary", "agent_nl_tw", "agent_nl_listen", "agent_ping"]),
    ("shipped defaults through the agent (auto, 1 s snapshot)",
     ["def_summary", "def_state", "def_tw", "def_listen"]),
    ("one ESTABLISHED count through the agent: the alternatives",
     ["agent_old", "agent_builtin", ("agent_state", "module, Backend=proc"),
      ("def_state", "module, shipped defaults")]),
]
# Shorter legend labels than the tables' (the panel title carries the context).
SHORT = {
    "mod_state": "in-process: tcp_status,ESTABLISHED",
    "mod_summary": "in-process: tcp_summary",
    "agent_state": "agent + module: tcp_status,ESTABLISHED",
    "agent_summary": "agent + module: tcp_summary",
    "nl_summary": "tcp_summary (all states)",
    "nl_tw": "tcp_status,TIME_WAIT",
    "nl_listen": "tcp_status,LISTEN",
    "agent_nl_summary": "tcp_summary",
    "agent_nl_tw": "tcp_status,TIME_WAIT",
    "agent_nl_listen": "tcp_status,LISTEN",
    "agent_ping": "agent.ping (the round trip alone)",
    "def_summary": "tcp_summary",
    "def_state": "tcp_status,ESTABLISHED",
    "def_tw": "tcp_status,TIME_WAIT",
    "def_listen": "tcp_status,LISTEN",
    "agent_old": "old UserParameter (ss | awk, grep)",
    "agent_builtin": "built-in net.tcp.socket.count",
}
CPU_SHORT = {
    "cpu_userparam": "11 UserParameter items",
    "cpu_builtin": "11 built-in net.tcp.socket.count items",
    "cpu_module_states": "11 linux_status[tcp_status,<state>] items",
    "cpu_module_summary": "1 linux_status[tcp_summary] (the template)",
}


def plot(results: list[dict], path: Path, source_note: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["size"] for r in results]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), dpi=100)
    colors = plt.get_cmap("tab10").colors

    def frame(ax, title, ylabel):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([fmt_size(s) for s in sizes])
        ax.minorticks_off()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("TCP sockets", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")

    def line(ax, xs_ys, label, **style):
        if xs_ys:
            ax.plot([p[0] for p in xs_ys], [p[1] for p in xs_ys], label=label, **style)

    def points(name):
        return [(r["size"], r["methods"][name]["median"]) for r in results
                if r["methods"].get(name, {}).get("median") is not None]

    for ax, (title, names) in zip(axes.flat, PANELS):
        line(ax, points("floor"), "floor: one read of /proc/net/tcp+tcp6", color="black",
             linewidth=2.5, marker="s")
        for i, entry in enumerate(names):
            name, label = entry if isinstance(entry, tuple) else (entry, SHORT[entry])
            line(ax, points(name), label, color=colors[i], marker="o", linewidth=1.6,
                 linestyle=":" if name == "agent_ping" else "-")
        frame(ax, title, "median wall time per request (s)")
    ax = axes.flat[len(PANELS)]
    for i, (name, _label, _agent, _keys) in enumerate(CPU_METHODS):
        pts = [(r["size"], r.get("cpu", {}).get(name, {}).get("cpu_ms_per_interval"))
               for r in results]
        line(ax, [(x, y / 1e3) for x, y in pts if y], CPU_SHORT[name], color=colors[i],
             marker="o", linewidth=1.6)
    frame(ax, "agent CPU per polling interval, all 11 states", "agent CPU per interval (s)")
    fig.suptitle("linux_status: cost per request and per polling interval vs socket count "
                 f"(bench/run){source_note}", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def parse_time(cell: str) -> float | None:
    """A figure as fmt_time wrote it ("9.05 ms (1.03x)", "**177 ms**", "50.1 us"), in s."""
    m = re.match(r"\**([0-9.]+) (s|ms|us)\b", cell.strip())
    if not m:
        return None
    return float(m.group(1)) * {"s": 1.0, "ms": 1e-3, "us": 1e-6}[m.group(2)]


def results_from_report(text: str) -> list[dict]:
    """The plotted figures back from the generated section of docs/performance.md: its first
    wall-time table (one row per METHODS label) and the CPU-per-interval table. For redrawing
    the picture when bench/out/ (not kept in git) is gone; figures are as rounded there."""
    by_label = {label: name for name, label, _t, _k in METHODS}
    cpu_by_label = {label: name for name, label, _a, _k in CPU_METHODS}
    sizes: list[int] = []
    methods: dict[str, list] = {}
    cpu: dict[str, list] = {}
    for row in text.splitlines():
        # Cells split on unescaped pipes: the UserParameter row's label holds "ss\\|awk".
        cells = [c.strip().replace("\\|", "|")
                 for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        if cells[0] == "method" and not sizes:
            sizes = [int(float(c.split()[0].rstrip("kM")) * (1e6 if "M" in c else 1e3))
                     for c in cells[1:]]
        elif cells[0] in by_label and by_label[cells[0]] not in methods:
            methods[by_label[cells[0]]] = [parse_time(c) for c in cells[1:]]
        elif cells[0] in cpu_by_label:
            cpu[cpu_by_label[cells[0]]] = [float(c.split()[0]) for c in cells[1:]]
    assert sizes and "floor" in methods, "no wall-time table in the report"
    return [{"size": size,
             "methods": {n: {"median": v[i]} for n, v in methods.items()},
             "cpu": {n: {"cpu_ms_per_interval": v[i]} for n, v in cpu.items()}}
            for i, size in enumerate(sizes)]


def print_table(results: list[dict]) -> None:
    width = max(len(m[1]) for m in METHODS)
    print()
    print(f"{'method'.ljust(width)} | " + " | ".join(f"{fmt_size(r['size']) + ' sockets':>22}"
                                                      for r in results))
    for name, label, _, _ in METHODS:
        cells = []
        for r in results:
            m = r["methods"][name]
            floor = r["methods"]["floor"]["median"]
            cells.append("n/a" if m["median"] is None else
                         f"{fmt_time(m['median'])} ({m['median'] / floor:.3g}x)")
        print(f"{label.ljust(width)} | " + " | ".join(f"{c:>22}" for c in cells))
    print()
    for name, label, _, _ in CPU_METHODS:
        cells = []
        for r in results:
            v = r.get("cpu", {}).get(name, {}).get("cpu_ms_per_interval")
            cells.append("n/a" if v is None else f"{v:.1f} ms CPU")
        print(f"{label.ljust(width)} | " + " | ".join(f"{c:>22}" for c in cells))
    print()
    for target, measured, mark in judge(results):
        print(f"[{mark}] {target}: {measured}")
    print()


# The report lives in docs/performance.md between these two lines (the text around them is
# written by hand); bench/run replaces what is between them.
REPORT = ROOT / "docs" / "performance.md"
REPORT_BEGIN = "<!-- bench:begin (generated by bench/run from bench/out/; do not edit) -->"
REPORT_END = "<!-- bench:end -->"
PICTURE = ROOT / "docs" / "benchmark.png"


def write_report(generated: str) -> None:
    """Puts bench/run's report between the markers of docs/performance.md, one heading level
    down (the file has its own title)."""
    text = REPORT.read_text()
    head, sep, rest = text.partition(REPORT_BEGIN)
    _old, sep2, tail = rest.partition(REPORT_END)
    if not (sep and sep2):
        sys.exit(f"bench: {REPORT}: the lines {REPORT_BEGIN!r} and {REPORT_END!r} are missing")
    body = "\n".join("#" + line if line.startswith("#") else line
                     for line in generated.splitlines())
    REPORT.write_text(head + REPORT_BEGIN + "\n" + body.strip("\n") + "\n" + REPORT_END + tail)


def replot() -> int:
    """--plot-only: redraw docs/benchmark.png from bench/out/results.json, or, when that is
    gone (bench/out is not kept in git), from the figures recorded in docs/performance.md."""
    saved = OUT / "results.json"
    if saved.exists():
        plot(json.loads(saved.read_text()), PICTURE)
        log(f"drew {PICTURE.relative_to(ROOT)} from {saved}")
        return 0
    text = REPORT.read_text().partition(REPORT_BEGIN)[2].partition(REPORT_END)[0]
    m = re.search(r"from commit ([0-9a-f]{7})", text)
    plot(results_from_report(text), PICTURE,
         "; figures of docs/performance.md" + (f", commit {m.group(1)}" if m else ""))
    log(f"drew {PICTURE.relative_to(ROOT)} from the tables of {REPORT.relative_to(ROOT)}")
    return 0


def orchestrate(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.million and 1000000 not in sizes:
        sizes.append(1000000)
    started = time.monotonic()
    source = source_version()  # before the run: the tree may change while it runs
    paths = {}

    def on_signal(signum, frame):  # turn SIGTERM into the same cleanup path as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    if not args.report_only:
        for size in sizes:
            path = run_worker(size, args)
            if path:
                paths[size] = path
    else:
        # The sizes of the last full run, unless --sizes/--million were given.
        meta_path = OUT / "meta.json"
        if meta_path.exists() and args.sizes == DEFAULT_SIZES and not args.million:
            sizes = json.loads(meta_path.read_text()).get("sizes", sizes)
        paths = {s: OUT / f"size-{s}.json" for s in sizes if (OUT / f"size-{s}.json").exists()}
    results = [json.loads(paths[s].read_text()) for s in sizes if s in paths]
    if not results:
        log("no size completed")
        return 1
    meta_path = OUT / "meta.json"
    if args.report_only and meta_path.exists():
        meta = json.loads(meta_path.read_text())
    else:
        meta = {"command": os.environ.get("BENCH_COMMAND", "bench/run"),
                "elapsed": time.monotonic() - started, "machine": machine(),
                "source": source, "sizes": sizes}
        meta_path.write_text(json.dumps(meta, indent=1))
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    write_report(render(results, meta["command"], meta["elapsed"], meta["machine"],
                        meta.get("source", "?")))
    plot(results, PICTURE)
    print_table(results)
    log(f"wrote {REPORT.relative_to(ROOT)}, docs/benchmark.png, {OUT}/results.json "
        f"in {(time.monotonic() - started) / 60:.1f} min")
    return 0 if len(results) == len(sizes) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help="comma-separated socket counts (default 1000,10000,100000)")
    parser.add_argument("--million", action="store_true", help="add a 1,000,000-socket run")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds (default 21)")
    parser.add_argument("--rounds-1m", type=int, default=5,
                        help="rounds at sizes >= 500k (default 5)")
    parser.add_argument("--cpu-intervals", type=int, default=3,
                        help="polling intervals per CPU method (default 3; 1 at >= 500k)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild docs/performance.md's report and the plot from bench/out/*.json")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw docs/benchmark.png only (from bench/out/results.json, else "
                        "from the figures in docs/performance.md); measures nothing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--ns-file", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plot_only:
        return replot()
    if args.worker:
        signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
        return worker(args)
    try:
        return orchestrate(args)
    except KeyboardInterrupt:
        log("interrupted; the size that was running has been cleaned up")
        return 130


if __name__ == "__main__":
    sys.exit(main())
