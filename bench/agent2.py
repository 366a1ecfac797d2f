"""bench/run --agent2: the plugin through Zabbix agent 2 beside the module through
zabbix_agentd, at 1k to 100k sockets (issue 11, point 3).

Reuses bench.py's machinery (imported): the socket table (bench/build/sockgen), the
TIME_WAIT window, the in-process timer bench/inproc (which times one Zabbix passive check:
connect, request, reply, RST close) and the zabbix_agentd driver. Per size, in a private
network namespace (`unshare -n`), with Debian 12's agent 2 6.0.14 and zabbix_agentd 6.0.14:

- per-request wall time (median of interleaved rounds) and the agent's CPU for it (its
  processes, plugin included, from /proc/<pid>/schedstat): agent.ping on both agents;
  linux_status[tcp_status,ESTABLISHED] through the module and through the plugin
  (SnapshotLifetime=0: every request scans); linux_status[tcp_summary] through the plugin;
  agent 2's built-in net.tcp.socket.count[,,,,established];
- agent 2 + plugin CPU per polling interval of the template's counts, all 11 states at once
  (as a server polls one host's items together): 11 plugin items linux_status[tcp_status,S]
  with the shipped default SnapshotLifetime (one scan shared), 1 plugin item tcp_summary,
  and 11 built-in items net.tcp.socket.count[,,,,s].

Writes bench/out/agent2-<size>.json and bench/out/agent2.md (the table, also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bench as b
from lib import agent as lib_agent  # tests/lib (on PYTHONPATH by scripts/setup): the start-up wait

PLUGIN = b.ROOT / "target" / "release" / "zabbix-agent2-plugin-linux-status"
STATES = b.KERNEL_STATES
BUILTIN_STATES = [s for s in STATES if s != "CLOSE"]


def say(message: str) -> None:
    print(f"[bench agent2] {message}", file=sys.stderr, flush=True)


class Agent2:
    """A foreground zabbix_agent2 6.0.14 with the plugin."""

    def __init__(self, name: str, port: int, settings: list[str], work: Path) -> None:
        self.name, self.port = name, port
        self.dir = work / f"agent2-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "zabbix_agent2.conf"
        self.conf.write_text("\n".join([
            f"PidFile={self.dir}/zabbix_agent2.pid", f"LogFile={self.dir}/zabbix_agent2.log",
            "LogType=file", "Server=127.0.0.1", "ServerActive=", "ListenIP=127.0.0.1",
            f"ListenPort={port}", f"Hostname=linux-status-bench-{name}",
            f"Timeout={b.AGENT_TIMEOUT}", f"ControlSocket={self.dir}/agent.sock",
            f"PluginSocket={self.dir}/plugin.sock",
            f"Plugins.LinuxStatus.System.Path={PLUGIN}",
            *(f"Plugins.LinuxStatus.{s}" for s in settings), "",
        ]))
        self.proc: subprocess.Popen | None = None

    def start(self, client: b.Inproc) -> None:
        env = dict(os.environ)
        env.pop("LINUX_STATUS_PROC_NET_DIR", None)
        out = open(self.dir / "agent.stdout", "wb")
        self.proc = subprocess.Popen([os.environ["ZABBIX_AGENT2"], "-c", str(self.conf)],
                                     stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()

        def ping() -> tuple[bool, str]:
            # The plugin's own key: the agent is up and its plugin answers.
            ok, _, value = client.call(f"zbx\t{self.port}\tlinux_status[version]", timeout=10)
            return bool(ok and value and value[0].isdigit()), value

        lib_agent.wait_for_ping(self.proc, f"agent 2 {self.name}", ping, lambda: "", timeout=15)

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid] + b.child_pids(self.proc.pid)

    def cpu(self) -> float:
        """On-CPU seconds of the agent and its plugin processes so far, every thread (Go's
        and the plugin's workers are long-lived, so live threads hold nearly all of it)."""
        total = 0.0
        for pid in self.pids():
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                        total += int(f.read().split()[0]) / 1e9
                except OSError:
                    pass
        return total

    def rss_kib(self) -> dict[str, int]:
        return {str(pid): b.rss_kib(pid) or 0 for pid in self.pids()}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def worker(args: argparse.Namespace) -> int:
    Path(args.ns_file).write_text(os.readlink("/proc/self/ns/net"))
    size, work = args.size, Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-6", "route", "add", "local", "fd00::/16", "dev", "lo"], check=True)
    b.write_proc_sys("net/ipv4/ip_local_port_range", "40000 65535")
    mix = b.socket_mix(size)
    b.write_proc_sys("net/ipv4/tcp_max_tw_buckets", str(mix["time_wait"] + 100000))
    result: dict = {"size_requested": size, "rounds": args.rounds, "loadavg_start": b.loadavg()}
    sockgen = inproc = None
    agentd: b.Agent | None = None
    agents2: dict[str, Agent2] = {}
    try:
        sockgen = b.LineProcess([str(b.SOCKGEN), str(mix["listen"]), str(mix["estab_pairs"]),
                                 str(mix["wait_pairs"]), str(mix["time_wait"])],
                                stderr_path=work / "sockgen.stderr")
        ready = sockgen.read_line(60 + size / 5000).split()
        assert ready[0] == "ready", ready
        end = time.monotonic()
        window = b.TimeWaitWindow(sockgen, mix["time_wait"], end - float(ready[2]), end)
        (work / "proc0.conf").write_text("SnapshotLifetime=0\n")
        inproc = b.Inproc(work / "proc0.conf", work / "inproc.stderr")
        agentd = b.Agent("proc0", 9051, "SnapshotLifetime=0\n", work)
        agentd.start(inproc)
        agents2["exact"] = Agent2("exact", 9061, ["SnapshotLifetime=0"], work)
        agents2["default"] = Agent2("default", 9062, [], work)
        for agent in agents2.values():
            agent.start(inproc)

        window.ensure(3 + size * 1e-5)
        ss = b.ss_counts()
        ok, _, value = inproc.call(f"zbx\t9061\tlinux_status[tcp_summary]")
        plugin = {k: json.loads(value)[k] for k in STATES} if ok else {}
        result["check"] = {"ss": ss, "plugin": plugin}
        # During the query its own connection is ESTABLISHED at both ends.
        result["agree"] = dict(ss, ESTABLISHED=ss["ESTABLISHED"] + 2) == plugin
        result["size"] = sum(ss.values())
        say(f"size {size}: {result['size']} sockets; plugin agrees with ss: {result['agree']}")

        methods = [
            ("agentd_ping", "zabbix_agentd: agent.ping", "agentd", "agent.ping"),
            ("agentd_module", "zabbix_agentd + module: linux_status[tcp_status,ESTABLISHED]",
             "agentd", "linux_status[tcp_status,ESTABLISHED]"),
            ("a2_ping", "agent 2: agent.ping", "exact", "agent.ping"),
            ("a2_plugin", "agent 2 + plugin: linux_status[tcp_status,ESTABLISHED]", "exact",
             "linux_status[tcp_status,ESTABLISHED]"),
            ("a2_plugin_summary", "agent 2 + plugin: linux_status[tcp_summary]", "exact",
             "linux_status[tcp_summary]"),
            ("a2_builtin", "agent 2 built-in: net.tcp.socket.count[,,,,established]", "exact",
             "net.tcp.socket.count[,,,,established]"),
        ]
        port = {"agentd": 9051, "exact": 9061}
        samples = {m[0]: [] for m in methods}
        cpu_samples = {m[0]: [] for m in methods}
        errors: dict[str, str] = {}
        for r in range(args.rounds + 1):
            order = methods[r % len(methods):] + methods[:r % len(methods)]
            for name, _, target, key in order:
                window.ensure(2 + size * 2e-5)
                before = agentd.cpu()[0] if target == "agentd" else agents2[target].cpu()
                ok, seconds, _, value = inproc.call_cpu(f"zbx\t{port[target]}\t{key}")
                after = agentd.cpu()[0] if target == "agentd" else agents2[target].cpu()
                if not ok:
                    errors[name] = value
                elif r > 0:  # round 0 warms up
                    samples[name].append(seconds)
                    cpu_samples[name].append(after - before)
        result["methods"] = {
            name: {"label": label, "median": b.median(samples[name]),
                   "cpu_median": b.median(cpu_samples[name]), "n": len(samples[name]),
                   "error": errors.get(name)}
            for name, label, _, _ in methods}

        intervals = [
            ("cpu_plugin_states", "11 plugin items linux_status[tcp_status,<state>], default snapshot",
             [f"linux_status[tcp_status,{s}]" for s in STATES]),
            ("cpu_plugin_summary", "1 plugin item linux_status[tcp_summary], default snapshot",
             ["linux_status[tcp_summary]"]),
            ("cpu_builtin", "11 built-in items net.tcp.socket.count[,,,,<state>] (10 states: no CLOSE)",
             [f"net.tcp.socket.count[,,,,{s.lower()}]" for s in BUILTIN_STATES]),
        ]
        agent = agents2["default"]
        cpu: dict = {name: {"label": label, "seconds": [], "wall": [], "errors": 0}
                     for name, label, _ in intervals}
        for k in range(args.cpu_intervals):
            for name, _, keys in intervals[k % 3:] + intervals[:k % 3]:
                window.ensure(5 + size * 1e-4)
                time.sleep(1.2)  # past the default SnapshotLifetime: a new poll
                before = agent.cpu()
                t = time.monotonic()
                replies = b.passive_checks_together(9062, keys)
                cpu[name]["wall"].append(time.monotonic() - t)
                cpu[name]["seconds"].append(agent.cpu() - before)
                cpu[name]["errors"] += sum(1 for ok, _, _ in replies if not ok)
        for entry in cpu.values():
            entry["median"] = b.median(entry["seconds"])
        result["cpu"] = cpu
        result["rss_kib"] = {name: a.rss_kib() for name, a in agents2.items()}
        result["loadavg_end"] = b.loadavg()
        Path(args.json).write_text(json.dumps(result, indent=1))
        return 0
    finally:
        for a in agents2.values():
            a.stop()
        if agentd:
            agentd.stop()
        for p in (inproc, sockgen):
            if p:
                p.close()


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f} ms"


def render(results: list[dict], command: str) -> str:
    lines = [f"# linux_status through Zabbix agent 2 ({command})", "",
             "Debian 12's zabbix_agent2 6.0.14 with the plugin beside zabbix_agentd 6.0.14 with "
             "the module, in a private network namespace; medians of interleaved rounds. "
             "CPU: the agent's processes (plugin included), /proc/<pid>/schedstat.", "",
             "## Per request (wall / agent CPU)", ""]
    names = [(n, m["label"]) for n, m in results[0]["methods"].items()]
    lines.append("| method | " + " | ".join(b.fmt_size(r["size"]) + " sockets" for r in results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for name, label in names:
        cells = []
        for r in results:
            m = r["methods"][name]
            cells.append(m["error"] and f"error: {m['error'][:60]}"
                         or f"{ms(m['median'])} / {ms(m['cpu_median'])}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Agent 2 + plugin CPU per polling interval (all states of one host)", ""]
    lines.append("| items polled together | " + " | ".join(b.fmt_size(r["size"]) + " sockets" for r in results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for name in results[0]["cpu"]:
        label = results[0]["cpu"][name]["label"]
        cells = [f"{ms(r['cpu'][name]['median'])} ({r['cpu'][name]['errors']} errors)"
                 for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Counts agree with ss: " + ", ".join(
        f"{b.fmt_size(r['size'])}: {r['agree']}" for r in results), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agent2", action="store_true")
    parser.add_argument("--sizes", default=b.DEFAULT_SIZES)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--cpu-intervals", type=int, default=3)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--size", type=int)
    parser.add_argument("--json")
    parser.add_argument("--ns-file")
    parser.add_argument("--work")
    args, _ = parser.parse_known_args()
    if args.worker:
        return worker(args)
    b.OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        json_path, ns_file = b.OUT / f"agent2-{size}.json", b.OUT / f"agent2-{size}.netns"
        for p in (json_path, ns_file):
            p.unlink(missing_ok=True)
        argv = ["unshare", "-n", "--", sys.executable, __file__, "--worker", "--size", str(size),
                "--rounds", str(args.rounds), "--cpu-intervals", str(args.cpu_intervals),
                "--json", str(json_path), "--ns-file", str(ns_file),
                "--work", str(b.OUT / f"work-agent2-{size}")]
        proc = subprocess.Popen(argv)
        try:
            proc.wait(timeout=300 + size / 500)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            b.kill_netns_processes(ns_file.read_text().strip() if ns_file.exists() else None)
        if proc.returncode != 0 or not json_path.exists():
            say(f"size {size}: worker failed (exit {proc.returncode})")
            return 1
        results.append(json.loads(json_path.read_text()))
    text = render(results, os.environ.get("BENCH_COMMAND", "bench/run --agent2"))
    (b.OUT / "agent2.md").write_text(text)
    print(text)
    return 0 if all(r["agree"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
