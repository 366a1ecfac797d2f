"""Driving the real Zabbix agent 6.0 with linux_status loaded.

- `write_config()` writes a minimal agent configuration into a temporary directory.
- `AgentProcess` is the one agent runner (this module's `Agent`, lib/agent2.py's `Agent2`,
  lib/system.py's packaged `Service`, the server suites' chroot and active agents): started
  in its own session, ready when it answers `agent.ping` (or, active-only, on a log line),
  its main and worker pids, crash lines, a bounded SIGTERM stop.
- `Agent` runs this machine's `zabbix_agentd -c CONF -f` in the foreground.
- `test_key()` runs `zabbix_agentd -c CONF -t KEY` (the item runs in that short-lived
  process; no socket is opened), `print_all()` runs `-p`, `zabbix_get()` asks the running
  agent over its passive-check port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from lib import process
from lib import scenario as scenario_mod

HOSTNAME = "linux-status-e2e"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
CMD_TIMEOUT = 30.0
START_AGENTS = 3
# Workers forked by the main process: the collector and StartAgents passive listeners
# (ServerActive is empty, so no active-check process).
EXPECTED_WORKERS = 1 + START_AGENTS
# A crashing module makes the agent log one of these (SIGSEGV / SIGABRT / "crashed").
CRASH_PATTERNS = ("Got signal", "SIGSEGV", "crash")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    path: Path
    directory: Path
    port: int
    pid_file: Path
    log_file: Path
    module: Path
    # The module's own configuration file, passed as LINUX_STATUS_CONFIG; None: no file at
    # all (the variable unset, and the default path hidden by the suite: shipped defaults).
    module_config: Path | None


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """One `KEY [t|value]` line of `zabbix_agentd -t`/`-p`, or one zabbix_get answer."""

    key: str
    type: str  # 'u', 'd', 's', 't', 'm' (-t/-p type letter) or 'get' for zabbix_get
    value: str  # the value, or "ZBX_NOTSUPPORTED"
    message: str | None  # the error message of an unsupported item
    raw: str

    @property
    def supported(self) -> bool:
        return self.value != "ZBX_NOTSUPPORTED"

    def uint(self) -> int:
        assert self.supported and re.fullmatch(r"\d+", self.value), (
            f"{self.key}: expected an unsigned integer, got {self.raw!r}"
        )
        if self.type != "get":
            assert self.type == "u", f"{self.key}: expected type u, got {self.raw!r}"
        return int(self.value)


def free_port(host: str = "127.0.0.1", avoid: tuple[int, ...] = (), first: int = 20050) -> int:
    """A TCP port nobody uses, below the ephemeral range (the agent's ListenPort must be
    1024..32767). A socket bound but never listening leaves nothing behind."""
    for port in range(first, first + 200):
        if port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise AssertionError(f"no free port in {first}..{first + 199}")


# Exact tests compare every answer with ss taken just before it: no reuse of earlier scans.
EXACT_MODULE_SETTINGS = "SnapshotLifetime=0\n"


def free_ports(count: int, avoid: tuple[int, ...] = (), first: int = 20100) -> list[int]:
    """`count` distinct free loopback ports, none of the scenario's or `avoid`'s."""
    taken = [*scenario_mod.SCENARIO_PORTS, *avoid]
    for _ in range(count):
        taken.append(free_port(avoid=tuple(taken), first=first))
    return taken[-count:]


def write_config(
    directory: Path,
    module: Path,
    port: int,
    module_settings: str | None = EXACT_MODULE_SETTINGS,
    extra_lines: tuple[str, ...] = (),
    start_agents: int = START_AGENTS,
    debug_level: int = 3,
) -> AgentConfig:
    """The agent configuration, and the module's (linux_status.conf) beside it; with
    `module_settings=None`, no module configuration at all (the shipped defaults)."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = AgentConfig(
        path=directory / "zabbix_agentd.conf",
        directory=directory,
        port=port,
        pid_file=directory / "zabbix_agentd.pid",
        log_file=directory / "zabbix_agentd.log",
        module=module,
        module_config=None if module_settings is None else directory / "linux_status.conf",
    )
    if cfg.module_config is not None:
        cfg.module_config.write_text(module_settings)
    cfg.path.write_text(
        "\n".join(
            [
                f"PidFile={cfg.pid_file}",
                f"LogFile={cfg.log_file}",
                "LogType=file",
                "Server=127.0.0.1",
                "ServerActive=",
                "ListenIP=127.0.0.1",
                f"ListenPort={port}",
                f"Hostname={HOSTNAME}",
                "Timeout=3",
                "AllowRoot=1",
                f"LoadModulePath={module.parent}",
                f"LoadModule={module.name}",
                f"StartAgents={start_agents}",
                f"DebugLevel={debug_level}",
                *extra_lines,
                "",
            ]
        )
    )
    return cfg


AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def staged_for_nobody(module: Path, directory: Path) -> Path:
    """A copy of `module` in `directory` (made world-readable), for an agent run as `nobody`:
    the built module may lie under a folder only root can enter (a clone under a mode-700
    folder), so such tests never load it from where it was built. Fails, naming the path,
    when `nobody` cannot reach the agent binaries or their libraries either."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    staged = directory / module.name
    staged.write_bytes(module.read_bytes())
    staged.chmod(0o644)
    for needed in (staged, *os.environ.get("LD_LIBRARY_PATH", "").split(":")):
        if needed and Path(needed).exists():
            reached = subprocess.run([*AS_NOBODY, "test", "-r", str(needed)], timeout=10)
            assert reached.returncode == 0, f"the user nobody cannot read {needed}"
    return staged


def agent_env(cfg: AgentConfig) -> dict[str, str]:
    """The agent's environment: ours, minus the module's test-only /proc override, plus
    the module configuration of `cfg`."""
    env = dict(os.environ)
    env.pop("LINUX_STATUS_PROC_NET_DIR", None)
    env.pop("LINUX_STATUS_CONFIG", None)
    if cfg.module_config is not None:
        env["LINUX_STATUS_CONFIG"] = str(cfg.module_config)
    return env


# `KEY<spaces>[t|value]`, or `KEY<spaces>[m|ZBX_NOTSUPPORTED] [message]`; values (JSON) and
# messages may contain brackets, so the value runs to the line's last `]`.
_HEAD = re.compile(r"^(?P<key>.*?)\s+\[(?P<type>[a-z])\|")
# A whole result line (the continuation lines of multi-line text values do not match).
_RESULT_LINE = re.compile(r"^\S.*?\s+\[[a-z]\|.*\]\s*$")
_UNSUPPORTED = re.compile(r"^ZBX_NOTSUPPORTED\](?:\s+\[(?P<msg>.*)\])?\s*$")


def parse_item_line(line: str) -> ItemResult:
    head = _HEAD.match(line)
    assert head, f"unparsable item line: {line!r}"
    rest = line[head.end():]
    if head["type"] == "m":
        m = _UNSUPPORTED.match(rest)
        assert m, f"unexpected message line: {line!r}"
        return ItemResult(head["key"], "m", "ZBX_NOTSUPPORTED", m["msg"], line)
    rest = rest.rstrip()
    assert rest.endswith("]"), f"unparsable item line: {line!r}"
    return ItemResult(head["key"], head["type"], rest[:-1], None, line)


def test_key(agentd: str, cfg: AgentConfig, key: str) -> ItemResult:
    """`zabbix_agentd -c CONF -t KEY`: exactly one result line for KEY."""
    proc = subprocess.run(
        [agentd, "-c", str(cfg.path), "-t", key],
        capture_output=True, text=True, timeout=CMD_TIMEOUT, env=agent_env(cfg),
    )
    assert proc.returncode == 0, (
        f"zabbix_agentd -t {key!r} exited {proc.returncode}\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"zabbix_agentd -t {key!r}: expected one line, got {proc.stdout!r}"
    result = parse_item_line(lines[0])
    assert result.key == key, f"-t echoed key {result.key!r}, asked {key!r}"
    return result


# Not collected by pytest even though the name starts with "test".
test_key.__test__ = False


def print_all(agentd: str, cfg: AgentConfig) -> dict[str, ItemResult]:
    """`zabbix_agentd -c CONF -p`: every key with its test parameters."""
    proc = subprocess.run(
        [agentd, "-c", str(cfg.path), "-p"],
        capture_output=True, text=True, timeout=CMD_TIMEOUT, env=agent_env(cfg),
    )
    assert proc.returncode == 0, (
        f"zabbix_agentd -p exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    results = {}
    for line in proc.stdout.splitlines():
        # Text values (vfs.file.contents, ...) span several lines: only result lines match.
        if _RESULT_LINE.match(line):
            r = parse_item_line(line)
            results[r.key] = r
    return results


def zabbix_get(get_bin: str, port: int, key: str) -> ItemResult:
    """`zabbix_get -s 127.0.0.1 -p PORT -k KEY`."""
    proc = subprocess.run(
        [get_bin, "-s", "127.0.0.1", "-p", str(port), "-k", key],
        capture_output=True, text=True, timeout=CMD_TIMEOUT,
    )
    out = proc.stdout.rstrip("\n")
    assert proc.returncode == 0, (
        f"zabbix_get -k {key!r} exited {proc.returncode} (agent down?)\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    if out.startswith("ZBX_NOTSUPPORTED"):
        prefix = "ZBX_NOTSUPPORTED: "
        assert out.startswith(prefix), f"unexpected zabbix_get output {out!r}"
        return ItemResult(key, "get", "ZBX_NOTSUPPORTED", out[len(prefix):], out)
    return ItemResult(key, "get", out, None, out)


def zabbix_get_ping(get_bin: str, port: int) -> Callable[[], tuple[bool, str]]:
    """agent.ping through `zabbix_get`: (answered 1, what zabbix_get printed)."""

    def ping() -> tuple[bool, str]:
        r = subprocess.run(
            [get_bin, "-s", "127.0.0.1", "-p", str(port), "-k", "agent.ping"],
            capture_output=True, text=True, timeout=CMD_TIMEOUT,
        )
        return r.returncode == 0 and r.stdout.strip() == "1", r.stdout + r.stderr

    return ping


def wait_for_ping(proc: subprocess.Popen, name: str, ping: Callable[[], tuple[bool, str]],
                  describe: Callable[[], str], timeout: float = START_TIMEOUT,
                  interval: float = 0.05) -> None:
    """The one start-up wait of every agent driver (zabbix_agentd, agent 2, a packaged
    service): returns once `ping()` says the agent answered agent.ping; fails, with
    `describe()`, when the process exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode} at start-up\n{describe()}")
        answered, last = ping()
        if answered:
            return
        time.sleep(interval)
    raise AssertionError(
        f"{name} did not answer agent.ping within {timeout} s (last: {last!r})\n{describe()}"
    )


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 (ppid) follows the ")" that closes the command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry))
    return sorted(children)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class AgentProcess(process.Process):
    """The one agent runner: zabbix_agentd or zabbix_agent2, on this machine, in a chroot or
    as a packaged service (lib/process.py's Process: own session, bounded stop). `start_agent`
    waits until it answers agent.ping (`ping`, passive agents) or until `ready()` (active-only
    agents, which listen nowhere)."""

    crash_patterns = CRASH_PATTERNS
    start_timeout = START_TIMEOUT
    stop_timeout = STOP_TIMEOUT

    def start_agent(self, argv: list[str], env: dict | None = None, *,
                    ping: Callable[[], tuple[bool, str]] | None = None,
                    ready: Callable[[], bool] | None = None, interval: float = 0.05,
                    **spawn) -> None:
        assert (ping is None) != (ready is None), "an agent is ready on a ping or a log line"
        self.spawn(argv, env=env, **spawn)
        if ping is not None:
            wait_for_ping(self.proc, self.name, ping, self.describe,
                          timeout=self.start_timeout, interval=interval)
        else:
            self.wait_ready(ready, self.start_timeout, f"{self.name} to start",
                            interval=interval)

    def pids(self) -> tuple[int, list[int]]:
        """(main pid, sorted worker pids)."""
        return self.pid, child_pids(self.pid)

    def alive(self) -> bool:
        return super().alive() and pid_alive(self.pid)

    def crash_lines(self) -> list[str]:
        return [
            ln for ln in self.output().splitlines()
            if any(p.lower() in ln.lower() for p in self.crash_patterns)
        ]

    def describe(self) -> str:
        return f"--- {self.name} stdout and log ---\n{self.output()[-6000:]}"

    def stop_checked(self) -> None:
        """Stops the agent; fails if its output has crash lines or SIGTERM did not end it
        with status 0."""
        crash = self.crash_lines()
        status = self.stop()
        assert not crash, f"{self.name} has crash lines:\n" + "\n".join(crash)
        assert status == 0, f"{self.name} exited {status} on SIGTERM\n{self.describe()}"


class Agent(AgentProcess):
    """A foreground `zabbix_agentd -c CONF -f` of this machine, started and stopped by the
    tests."""

    name = "zabbix_agentd"

    def __init__(self, agentd: str, get_bin: str, cfg: AgentConfig,
                 prefix: tuple[str, ...] = ()) -> None:
        super().__init__(process.HostRoot(), str(cfg.directory), cfg.log_file.name,
                         "agent.stdout")
        self.agentd = agentd
        # Run under this command (AS_NOBODY: the agent as an unprivileged user).
        self.prefix = prefix
        self.get_bin = get_bin
        self.cfg = cfg
        self.stdout_path = self.stdout

    def start(self) -> None:
        self.start_agent([*self.prefix, self.agentd, "-c", str(self.cfg.path), "-f"],
                         agent_env(self.cfg),
                         ping=zabbix_get_ping(self.get_bin, self.cfg.port))


@contextlib.contextmanager
def running_agent(agentd: str, get_bin: str, cfg: AgentConfig, prefix: tuple[str, ...] = ()):
    """A running zabbix_agentd with linux_status loaded, its pids recorded once every worker
    is forked; on exit it must stop cleanly with no crash in its log. `prefix`: a command to
    run it under (AS_NOBODY)."""
    a = Agent(agentd, get_bin, cfg, prefix)
    a.start()
    # Wait until the agent has forked every worker (collector + StartAgents listeners)
    # before taking the reference pid list.
    scenario_mod.wait_until(
        lambda: len(a.pids()[1]) == EXPECTED_WORKERS,
        5.0,
        f"zabbix_agentd to fork its {EXPECTED_WORKERS} workers",
    )
    time.sleep(0.1)
    a.initial_pids = a.pids()
    assert len(a.initial_pids[1]) == EXPECTED_WORKERS, a.initial_pids
    try:
        yield a
    finally:
        crash = a.crash_lines()
        status = a.stop()
        assert not crash, "agent log has crash lines:\n" + "\n".join(crash)
        assert status == 0, f"zabbix_agentd exited {status} on SIGTERM\n{a.describe()}"
