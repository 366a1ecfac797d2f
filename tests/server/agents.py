"""The agents and the proxy that report to the servers of the template tests.

- `MonitoredAgent` (lib/agent.py's agent runner): zabbix_agentd with the module or
  zabbix_agent2 with the plugin, under a root (this machine's 6.0, or the 7.0 chroot's
  Debian 13 binaries), passive (listening on 127.0.0.1:port) or ACTIVE-ONLY (`ServerActive`
  set; zabbix_agentd with `StartAgents=0`, no listener at all; it fetches its item list from
  the server and sends the values). `Hostname` is the host's name on the server; the module
  or plugin is copied into the agent's folder and runs with its shipped defaults (an empty
  linux_status.conf): the template is tested the way it is run.
- `Proxy`: a real `zabbix_proxy` 6.0 (Debian's zabbix-proxy-sqlite3, unpacked by
  scripts/setup), active mode: it fetches its configuration from the server, polls its hosts'
  passive agents and sends the values on. Its SQLite database is made from the package's own
  schema. `reload_config()` asks it (runtime control) to fetch the configuration now.

Everything listens on 127.0.0.1 only, in the test's network namespace; every process is
stopped with SIGTERM to the main pid (bounded wait, then SIGKILL of its process group).
"""
from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from lib import agent, process, server

START_TIMEOUT = 30.0
PROXY_NAME = "linux-status-test-proxy"


class MonitoredAgent(agent.AgentProcess):
    """One monitored host's agent (`kind` "passive" or "active"; `agent2`: zabbix_agent2
    with the plugin, else zabbix_agentd with the module), its files in the folder `inside`
    of `root`, the binaries at the root's /usr/sbin unless `binary` says otherwise."""

    start_timeout = 90.0

    def __init__(self, root, inside: str, version: str, hostname: str, kind: str,
                 server_port: int, port: int | None, module: Path, agent2: bool = False,
                 binary: str | None = None, refresh: int = 5) -> None:
        super().__init__(root, inside)
        program = "zabbix_agent2" if agent2 else "zabbix_agentd"
        self.name = f"{program} {version} ({hostname})"
        self.binary = binary or f"/usr/sbin/{program}"
        self.hostname = hostname
        self.kind = kind
        self.port = port
        self.agent2 = agent2
        shutil.copy2(module, self.dir / module.name)
        (self.dir / "linux_status.conf").write_text("")  # the module's shipped defaults
        lines = [f"LogFile={inside}/log", "LogType=file", "DebugLevel=3",
                 f"PidFile={inside}/agent.pid", f"Hostname={hostname}", "Timeout=3"]
        if kind == "passive":
            lines += ["Server=127.0.0.1", "ServerActive=", "ListenIP=127.0.0.1",
                      f"ListenPort={port}"]
        else:
            lines += [f"ServerActive=127.0.0.1:{server_port}", f"RefreshActiveChecks={refresh}",
                      "BufferSend=5"]
            lines += ["Server="] if agent2 else ["StartAgents=0"]
        if agent2:
            lines += [f"ControlSocket={inside}/agent.sock", f"PluginSocket={inside}/plugin.sock",
                      f"Plugins.LinuxStatus.System.Path={inside}/{module.name}"]
        else:
            lines += ["AllowRoot=1", f"LoadModulePath={inside}", f"LoadModule={module.name}"]
        if kind == "active" and agent2:
            # Agent 2 always listens unless told not to; keep it off any real port.
            lines += ["ListenIP=127.0.0.1", f"ListenPort={port or 10050}"]
        (self.dir / "agent.conf").write_text("\n".join([*lines, ""]))

    def start(self, get_bin: str) -> float:
        t0 = time.monotonic()
        env = dict(os.environ, LINUX_STATUS_CONFIG=f"{self.inside}/linux_status.conf")
        env.pop("LINUX_STATUS_PROC_NET_DIR", None)
        if not isinstance(self.root, process.HostRoot):
            env.pop("LD_LIBRARY_PATH", None)  # the host's Zabbix 6.0 libraries, not the root's
        argv = [self.binary, "-c", f"{self.inside}/agent.conf", "-f"]
        if self.kind == "passive":
            self.start_agent(argv, env, ping=agent.zabbix_get_ping(get_bin, self.port),
                             interval=0.1)
        else:
            self.start_agent(argv, env, ready=self.active_ready, interval=0.1)
        return time.monotonic() - t0

    def active_ready(self) -> bool:
        if not self.agent2:
            return "active checks #1]" in self.log_text()
        # Agent 2 says it is up on its standard output; the data proves the rest.
        return "Press Ctrl+C to exit" in process.read_text(self.stdout)


class Proxy(process.Process):
    name = "zabbix_proxy"
    log_lines = 60

    def __init__(self, binary: str, schema: Path, name: str, port: int,
                 server_port: int) -> None:
        super().__init__(process.HostRoot(), str(process.private_dir("zbx-proxy-")),
                         "zabbix_proxy.log")
        self.binary = binary
        self.schema = schema
        self.hostname = name
        self.port = port
        self.conf = self.dir / "zabbix_proxy.conf"
        self.db = self.dir / "proxy.db"
        self.conf.write_text("\n".join([
            "ProxyMode=0",
            f"Server=127.0.0.1:{server_port}",
            f"Hostname={name}",
            "ListenIP=127.0.0.1",
            f"ListenPort={port}",
            f"LogFile={self.log}",
            "LogFileSize=0",
            "DebugLevel=3",
            f"PidFile={self.dir / 'zabbix_proxy.pid'}",
            f"SocketDir={self.dir}",
            f"DBName={self.db}",
            "AllowRoot=1",
            # The proxy preprocesses (dependent items, discovery): it needs the items the
            # server discovers from its data, so it fetches the configuration often.
            "ConfigFrequency=10",
            "DataSenderFrequency=1",
            "HeartbeatFrequency=60",
            "Timeout=4",
            "StartPollers=2",
            "StartPollersUnreachable=1",
            "StartPreprocessors=1",
            "StartTrappers=1",
            "StartPingers=0",
            "StartDiscoverers=0",
            "StartHTTPPollers=0",
            "CacheSize=16M",
            "",
        ]))

    def start(self, env: dict) -> float:
        t0 = time.monotonic()
        # The package's own schema, loaded with Python's sqlite3 (no sqlite3 program needed).
        with gzip.open(self.schema, "rt") as f, sqlite3.connect(self.db) as db:
            db.executescript(f.read())
        self.spawn([self.binary, "-c", str(self.conf), "-f"], env=env)
        self.wait_ready(
            lambda: server.port_open(self.port) and "started [trapper #1]" in self.log_text(),
            START_TIMEOUT, "zabbix_proxy to start")
        return time.monotonic() - t0

    def reload_config(self, env: dict) -> None:
        r = subprocess.run([self.binary, "-c", str(self.conf), "-R", "config_cache_reload"],
                           capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 0, f"zabbix_proxy -R config_cache_reload: {r.stdout}{r.stderr}"
