"""Driving real Zabbix agent 2 binaries with the linux_status plugin.

Two agent lines, one plugin executable:

- 6.0: Debian 12's `zabbix_agent2` 6.0.14, unpacked by scripts/setup, run on the host;
- 7.0: Debian 13's `zabbix_agent2` 7.0.22, installed in the cached trixie chroot and run
  there: `unshare --mount` gives the agent a mount namespace of its own in which /proc,
  /dev, the plugin's folder (at /mnt) and the agent's temporary folder (at /tmp) are bound
  into the chroot, so nothing of the shared chroot changes and two agents never see each
  other's files. The chroot shares the network namespace it is entered from: the test's.

`Agent2` is lib/agent.py's agent runner for agent 2: `start()` runs it in the foreground
and waits (bounded) until it answers `agent.ping`; `plugin_pids()` lists its plugin
processes; `stop()` sends SIGTERM and returns the exit status. `test_key()` runs `zabbix_agent2 -t KEY`, which starts the plugin
too (registration and serving runs) and opens no network socket.

Every configuration is written whole by the test: no host file (/etc/zabbix/...) is read.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
from pathlib import Path

from lib import agent as ag  # the agent runner, result parsing, pids, zabbix_get
from lib import process

HOSTNAME = "linux-status-agent2"
PLUGIN_NAME = "zabbix-agent2-plugin-linux-status"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
CMD_TIMEOUT = 60.0
# What a dying agent 2 prints (a Go panic, the plugin-died path, a fatal error).
CRASH_PATTERNS = ("panic", "goroutine ", "plugin LinuxStatus died", "fatal error")
# Exact tests compare every answer with ss taken just before it: no reuse of earlier scans.
EXACT_SETTINGS = ("SnapshotLifetime=0",)

# Where the 7.0 chroot sees the plugin folder and the agent's folder.
CHROOT_PLUGIN_DIR = "/mnt"
CHROOT_AGENT_DIR = "/tmp"


@dataclasses.dataclass(frozen=True)
class Line:
    """One agent line: its version and how to run its binary."""

    version: str  # "6.0" or "7.0"
    binary: str  # the host path (6.0) or the path inside the chroot (7.0)
    chroot: str | None = None

    def plugin_path(self, plugin: Path) -> str:
        return f"{CHROOT_PLUGIN_DIR}/{plugin.name}" if self.chroot else str(plugin)

    def agent_dir(self, directory: Path) -> str:
        return CHROOT_AGENT_DIR if self.chroot else str(directory)

    def command(self, plugin: Path, directory: Path, *args: str) -> list[str]:
        if not self.chroot:
            return [self.binary, *args]
        script = (
            'set -e; c="$1"; shift; '
            'mount -t proc proc "$c/proc"; mount --bind /dev "$c/dev"; '
            f'mount --bind "$PLUGIN_DIR" "$c{CHROOT_PLUGIN_DIR}"; '
            f'mount --bind "$AGENT_DIR" "$c{CHROOT_AGENT_DIR}"; '
            'exec chroot "$c" "$@"'
        )
        return [
            "env", f"PLUGIN_DIR={plugin.parent}", f"AGENT_DIR={directory}",
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", script, "sh", self.chroot, self.binary, *args,
        ]


@dataclasses.dataclass(frozen=True)
class Config:
    line: Line
    plugin: Path
    directory: Path
    path: Path  # on the host
    port: int
    log_file: Path  # on the host

    @property
    def inside_path(self) -> str:
        return f"{self.line.agent_dir(self.directory)}/{self.path.name}"


def write_config(
    line: Line,
    plugin: Path,
    directory: Path,
    port: int,
    settings: tuple[str, ...] = EXACT_SETTINGS,
    extra_lines: tuple[str, ...] = (),
    timeout: int = 3,
) -> Config:
    """An agent 2 configuration with the plugin and `Plugins.LinuxStatus.<settings>`."""
    directory.mkdir(parents=True, exist_ok=True)
    inside = line.agent_dir(directory)
    cfg = Config(
        line=line, plugin=plugin, directory=directory,
        path=directory / "zabbix_agent2.conf", port=port,
        log_file=directory / "zabbix_agent2.log",
    )
    cfg.path.write_text(
        "\n".join(
            [
                f"PidFile={inside}/zabbix_agent2.pid",
                f"LogFile={inside}/zabbix_agent2.log",
                "LogType=file",
                "DebugLevel=3",
                "Server=127.0.0.1",
                "ServerActive=",
                "ListenIP=127.0.0.1",
                f"ListenPort={port}",
                f"Hostname={HOSTNAME}",
                f"Timeout={timeout}",
                f"ControlSocket={inside}/agent.sock",
                f"PluginSocket={inside}/plugin.sock",
                f"Plugins.LinuxStatus.System.Path={line.plugin_path(plugin)}",
                *(f"Plugins.LinuxStatus.{setting}" for setting in settings),
                *extra_lines,
                "",
            ]
        )
    )
    return cfg


def agent_env() -> dict[str, str]:
    """Ours, minus the module's test-only /proc override."""
    env = dict(os.environ)
    env.pop("LINUX_STATUS_PROC_NET_DIR", None)
    env.pop("LINUX_STATUS_CONFIG", None)
    return env


def run(cfg: Config, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        cfg.line.command(cfg.plugin, cfg.directory, "-c", cfg.inside_path, *args),
        capture_output=True, text=True, timeout=CMD_TIMEOUT, env=env or agent_env(),
    )


def test_key(cfg: Config, key: str) -> ag.ItemResult:
    """`zabbix_agent2 -c CONF -t KEY`: exactly one result line for KEY."""
    proc = run(cfg, "-t", key)
    assert proc.returncode == 0, (
        f"agent 2 {cfg.line.version} -t {key!r} exited {proc.returncode}\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"-t {key!r}: expected one line, got {proc.stdout!r} {proc.stderr!r}"
    # Agent 2 pads the key to 45 columns, with no space at all after a longer one.
    assert lines[0].startswith(key), f"-t {key!r} printed {lines[0]!r}"
    result = ag.parse_item_line(f"{key} {lines[0][len(key):].lstrip()}")
    assert result.key == key, f"-t echoed key {result.key!r}, asked {key!r}"
    return result


test_key.__test__ = False


def plugin_pids_of(parent: int) -> list[int]:
    """Children of `parent` running the plugin executable."""
    return [pid for pid in ag.child_pids(parent) if is_plugin(pid)]


def is_plugin(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return argv0.endswith(PLUGIN_NAME.encode()) and ag.pid_alive(pid)


def all_plugin_processes() -> list[int]:
    return sorted(int(e) for e in os.listdir("/proc") if e.isdigit() and is_plugin(int(e)))


def reap(pid: int) -> None:
    """Collects `pid` if it is our child (the suite is a subreaper: orphans come here)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class Agent2(ag.AgentProcess):
    """A foreground `zabbix_agent2 -c CONF` (on this machine or in the 7.0 chroot), started
    and stopped by the tests (lib/agent.py's AgentProcess)."""

    crash_patterns = CRASH_PATTERNS
    start_timeout = START_TIMEOUT
    stop_timeout = STOP_TIMEOUT

    def __init__(self, cfg: Config, get_bin: str, env: dict[str, str] | None = None) -> None:
        super().__init__(process.HostRoot(), str(cfg.directory), cfg.log_file.name,
                         "agent.stdout")
        self.name = f"agent 2 {cfg.line.version}"
        self.cfg = cfg
        self.get_bin = get_bin
        self.env = env or agent_env()
        self.stdout_path = self.stdout
        self.initial_pids: tuple[int, list[int]] | None = None

    def start(self) -> "Agent2":
        self.start_agent(
            self.cfg.line.command(self.cfg.plugin, self.cfg.directory, "-c", self.cfg.inside_path),
            self.env, ping=ag.zabbix_get_ping(self.get_bin, self.cfg.port))
        return self

    def plugin_pids(self) -> list[int]:
        return plugin_pids_of(self.pid)

    def pids(self) -> tuple[int, list[int]]:
        return self.pid, self.plugin_pids()

    def assert_unchanged(self, when: str) -> None:
        assert self.alive(), f"{when}: agent 2 is gone\n{self.describe()}"
        assert self.pids() == self.initial_pids, (
            f"{when}: pids changed from {self.initial_pids} to {self.pids()}\n{self.describe()}"
        )
        crash = self.crash_lines()
        assert not crash, f"{when}: agent output has crash lines:\n" + "\n".join(crash)


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Waits until none of `pids` runs (reaping those re-parented to us); returns the rest."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            reap(pid)
        left = [pid for pid in pids if is_plugin(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


VERSION_LINE = re.compile(r"\(Zabbix\) (\d+\.\d+\.\d+)")


def version_of(line: Line, plugin: Path, directory: Path) -> str:
    proc = subprocess.run(
        line.command(plugin, directory, "-V"), capture_output=True, text=True,
        timeout=CMD_TIMEOUT, env=agent_env(),
    )
    match = VERSION_LINE.search(proc.stdout)
    assert match, f"agent 2 {line.version} -V: {proc.stdout!r} {proc.stderr!r}"
    return match[1]
