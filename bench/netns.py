"""bench/run --netns: what linux_status[netns_all] costs per polling interval (issue 18, item 8).

Reuses bench.py's machinery (imported): bench/build/sockgen (the socket tables), bench/inproc
(one Zabbix passive check per call) and the zabbix_agentd driver (CPU from /proc/<pid>/schedstat
of the agent's main process and workers). Everything runs inside `unshare -p -f --mount-proc -n`:
the pid namespace's /proc shows only what the bench started (so discovery lists exactly the
bench's namespaces, not other work on the machine), and when the worker's shell (its pid 1) exits the
kernel kills every holder, agent and pipeline left: nothing outlives the run.

Per scenario (N namespaces x S sockets, each namespace one `unshare -n` holder running sockgen
with S sockets: LISTEN + ESTABLISHED pairs + FIN_WAIT2/CLOSE_WAIT pairs, no TIME_WAIT so the
tables stay put), interleaved over --netns-rounds rounds, CPU per polling interval:

- floor (cAdvisor's method): one read of /proc/<pid>/net/tcp and tcp6 per namespace, 64 KiB
  reads, timed in this process (thread CPU);
- script: the root UserParameter an admin writes, one `nsenter -n -t <pid> ss -tan | awk`
  per namespace in a bash loop (CPU of everything forked: getrusage(RUSAGE_CHILDREN));
- agent, all tables due: `linux_status[netns_all]` through zabbix_agentd + module with
  NetnsTableInterval=0 (every request reads every table);
- agent, tables kept (at 500 x 10 only): NetnsTableInterval=3600, default SnapshotLifetime,
  calls more than 1 s apart: discovery + the cheap counters of every namespace.

Every agent reply is checked: tables_read / tables_kept as the row expects and each holder's
TOTAL equal to what it built. Writes bench/out/netns.json and bench/out/netns.md (also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import bench as b

PORT_FULL, PORT_KEPT = 10161, 10162
# (label, namespaces, sockets each, tcp_child_ehash_entries in the parent, cheap row too)
SCENARIOS = [
    ("500x10", 500, 10, 0, True),
    ("100x1k", 100, 1000, 0, False),
    ("1x100k", 1, 100000, 0, False),
    ("500x10 ehash", 500, 10, 1024, False),
]
SCRIPT = ('for p in "$@"; do nsenter -n -t "$p" ss -tan | '
          "awk 'NR>1{c[$1]++} END{for(s in c) print s, c[s]}' >/dev/null; done")


def say(message: str) -> None:
    print(f"[bench netns {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def mix(sockets: int) -> tuple[int, int, int]:
    """sockgen's (LISTEN, ESTAB_PAIRS, WAIT_PAIRS) for exactly `sockets` sockets."""
    if sockets <= 10:  # sockgen needs at least 10 listeners (one of them IPv6)
        return sockets, 0, 0
    listen, wait = max(10, sockets // 1000), sockets // 20
    return listen, (sockets - listen - 2 * wait) // 2, wait


def holder(sockets: int, work: Path, i: int) -> b.LineProcess:
    listen, estab, wait = mix(sockets)
    script = ("ip link set lo up && ip -6 route add local fd00::/16 dev lo && "
              f"exec {b.SOCKGEN} {listen} {estab} {wait} 0")
    return b.LineProcess(["unshare", "-n", "--", "sh", "-c", script],
                         stderr_path=work / f"holder-{i}.stderr")


def read_tables(pid: int) -> None:
    for name in ("tcp", "tcp6"):
        fd = os.open(f"/proc/{pid}/net/{name}", os.O_RDONLY)
        try:
            while os.read(fd, 65536):
                pass
        finally:
            os.close(fd)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def scenario(label: str, count: int, sockets: int, ehash: int, cheap: bool, rounds: int,
             work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    b.write_proc_sys("net/ipv4/tcp_child_ehash_entries", str(ehash))
    t = time.monotonic()
    holders = [holder(sockets, work, i) for i in range(count)]
    for h in holders:
        ready = h.read_line(120).split()
        assert ready and ready[0] == "ready", ready
    pids = [h.proc.pid for h in holders]  # sh exec'd sockgen: the holder pid is the namespace's
    built = sum(mix(sockets)[0] + 2 * mix(sockets)[1] + 2 * mix(sockets)[2] for _ in pids)
    say(f"{label}: {count} namespaces, {built} sockets built in {time.monotonic() - t:.1f} s")
    inodes = {str(os.stat(f"/proc/{p}/net/tcp").st_ino): p for p in pids}
    (work / "client.conf").write_text("SnapshotLifetime=0\n")
    client = b.Inproc(work / "client.conf", work / "inproc.stderr")
    agents = {"full": b.Agent(f"full-{count}-{sockets}-{ehash}", PORT_FULL,
                              "NetnsTableInterval=0\n", work)}
    if cheap:
        agents["kept"] = b.Agent(f"kept-{count}-{sockets}", PORT_KEPT,
                                 "NetnsTableInterval=3600\n", work)
    result: dict = {"label": label, "namespaces": count, "sockets_each": sockets,
                    "tcp_child_ehash_entries": ehash, "rounds": rounds,
                    "loadavg_start": b.loadavg(), "samples": {}, "wall": {}, "errors": []}
    try:
        for a in agents.values():
            a.start(client)

        def check(name: str, value: str) -> None:
            data = json.loads(value)
            ns = data["netns"]
            want_read = len(ns) if name == "full" else 0
            if data["tables_read"] != want_read:
                result["errors"].append(f"{name}: tables_read {data['tables_read']} != {want_read}")
            for inode, pid in inodes.items():
                states = (ns.get(inode) or {}).get("states")
                total = states and states.get("TOTAL")
                if total != sockets:
                    result["errors"].append(f"{name}: namespace {inode} TOTAL {total} != {sockets}")
                    break

        def agent_row(name: str) -> tuple[float, float]:
            a = agents[name]
            before, _ = a.cpu()
            ok, seconds, value = client.call(f"zbx\t{a.port}\tlinux_status[netns_all]", timeout=60)
            after, _ = a.cpu()
            if not ok:
                result["errors"].append(f"{name}: {value[:200]}")
            else:
                check(name, value)
            return after - before, seconds

        def floor() -> tuple[float, float]:
            w, c = time.monotonic(), time.thread_time()
            for p in pids:
                read_tables(p)
            return time.thread_time() - c, time.monotonic() - w

        def script() -> tuple[float, float]:
            w, c = time.monotonic(), children_cpu()
            subprocess.run(["bash", "-c", SCRIPT, "script", *map(str, pids)], check=True)
            return children_cpu() - c, time.monotonic() - w

        methods = {"floor": floor, "script": script, "agent_full": lambda: agent_row("full")}
        if cheap:
            agent_row("kept")  # warm: the first poll reads every table once, then keeps them
            result["errors"] = [e for e in result["errors"] if not e.startswith("kept: tables_read")]
            methods["agent_kept"] = lambda: agent_row("kept")
        last_kept = time.monotonic()
        names = list(methods)
        for r in range(rounds):
            for k in range(len(names)):
                name = names[(r + k) % len(names)]
                if name == "agent_kept":  # past SnapshotLifetime (1 s): discovery is redone
                    time.sleep(max(0.0, 1.05 - (time.monotonic() - last_kept)))
                cpu, wall = methods[name]()
                if name == "agent_kept":
                    last_kept = time.monotonic()
                result["samples"].setdefault(name, []).append(cpu)
                result["wall"].setdefault(name, []).append(wall)
        result["rss_kib"] = max((b.rss_kib(p) or 0) for p in agents["full"].workers())
    finally:
        for a in agents.values():
            a.stop()
        client.close()
        for h in holders:
            h.close()
    result["loadavg_end"] = b.loadavg()
    say(f"{label}: " + ", ".join(f"{k} {b.fmt_time(b.median(v))}" for k, v in result["samples"].items())
        + (f"; errors {result['errors'][:3]}" if result["errors"] else ""))
    return result


def worker(args: argparse.Namespace) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = b.OUT / "netns-work"
    results = []
    for label, count, sockets, ehash, cheap in SCENARIOS:
        if args.netns_quick and count * sockets > 10000:
            continue
        results.append(scenario(label, count, sockets, ehash, cheap, args.netns_rounds,
                                work / label.replace(" ", "-")))
    Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def render(results: list[dict], command: str, elapsed: float) -> str:
    def med(r, k):
        return b.median(r["samples"].get(k, [])) if r["samples"].get(k) else None

    lines = [f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
             f"in {elapsed / 60:.1f} min; CPU per polling interval, median of the rounds "
             "(min-max in brackets), ratio to the floor of the same scenario.", "",
             "| scenario | floor: one /proc/<pid>/net/tcp+tcp6 read per namespace (cAdvisor) "
             "| root `nsenter ... ss \\| awk` loop | agent `netns_all`, every table due "
             "(NetnsTableInterval=0) | agent `netns_all`, tables kept (cheap counters) | errors |",
             "|---|---|---|---|---|---|"]
    for r in results:
        f = med(r, "floor")

        def cell(k):
            m = med(r, k)
            if m is None:
                return ""
            lo, hi = min(r["samples"][k]), max(r["samples"][k])
            ratio = f" **{m / f:.2f}x**" if f and k != "floor" else ""
            return f"{b.fmt_time(m)} [{b.fmt_time(lo)}-{b.fmt_time(hi)}]{ratio}"

        ehash = (f", tcp_child_ehash_entries={r['tcp_child_ehash_entries']}"
                 if r["tcp_child_ehash_entries"] else "")
        lines.append(f"| {r['namespaces']} x {r['sockets_each']} sockets{ehash} | {cell('floor')} "
                     f"| {cell('script')} | {cell('agent_full')} | {cell('agent_kept')} "
                     f"| {len(r['errors'])} |")
    lines.append("")
    for r in results:
        if r.get("samples", {}).get("agent_kept"):
            m = med(r, "agent_kept")
            lines.append(f"Target, cheap counters of {r['namespaces']} namespaces < 50 ms per "
                         f"interval: {b.fmt_time(m)}: **{'PASS' if m < 0.05 else 'FAIL'}**.  ")
    for r in results:
        f, a = med(r, "floor"), med(r, "agent_full")
        if f and a:
            noise = (max(r["samples"]["floor"]) - min(r["samples"]["floor"])) / f
            lines.append(f"Target, full tables <= ~1.1x the floor at {r['label']}: {a / f:.2f}x "
                         f"(floor spread {noise:.0%}): **{'PASS' if a / f <= 1.1 else 'FAIL'}**.  ")
    lines.append("")
    lines.append("Load average start/end: " + "; ".join(
        f"{r['label']} {r['loadavg_start']} / {r['loadavg_end']}" for r in results))
    for r in results:
        for e in r["errors"][:3]:
            lines.append(f"- {r['label']}: {e}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netns", action="store_true")
    parser.add_argument("--netns-rounds", type=int, default=3,
                        help="interleaved rounds per scenario (default 3)")
    parser.add_argument("--netns-quick", action="store_true",
                        help="only the 500 x 10 scenarios (no 100 x 1k, 1 x 100k)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.worker:
        signal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))
        return worker(args)
    b.OUT.mkdir(parents=True, exist_ok=True)
    json_path = b.OUT / "netns.json"
    json_path.unlink(missing_ok=True)
    started = time.monotonic()
    # The worker runs under a shell that is the pid namespace's pid 1 (sockgen refuses to run
    # as pid 1's child, its orphan test); --kill-child: if unshare dies, the namespace dies.
    argv = ["unshare", "-p", "-f", "--kill-child", "--mount-proc", "-n", "--", "sh", "-c",
            '"$@"; exit $?', "sh", sys.executable, __file__,
            "--worker", "--json", str(json_path), "--netns-rounds", str(args.netns_rounds)]
    if args.netns_quick:
        argv.append("--netns-quick")
    proc = subprocess.Popen(argv)
    try:
        proc.wait(timeout=900)  # bounded: the pid namespace dies with its pid 1
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        say("over 900 s or interrupted; stopping the worker (its pid namespace dies with it)")
        proc.kill()
        proc.wait()
        return 1
    if proc.returncode != 0 or not json_path.exists():
        say(f"worker failed (exit {proc.returncode})")
        return 1
    results = json.loads(json_path.read_text())
    text = render(results, os.environ.get("BENCH_COMMAND", "bench/run --netns"),
                  time.monotonic() - started)
    (b.OUT / "netns.md").write_text(text)
    print(text)
    return 0 if not any(r["errors"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
