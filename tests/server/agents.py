"""The other ways a value reaches the server, for the template tests.

- `ActiveAgent`: `zabbix_agentd` with the module in ACTIVE-ONLY mode: `ServerActive` set,
  `StartAgents=0` (no passive listener at all), `Hostname` the host's name on the server. It
  fetches its item list from the server and sends the values; nothing connects to it.
- `Proxy`: a real `zabbix_proxy` 6.0 (Debian's zabbix-proxy-sqlite3, unpacked by
  scripts/setup), active mode: it fetches its configuration from the server, polls its hosts'
  passive agents and sends the values on. Its SQLite database is made from the package's own
  schema. `reload_config()` asks it (runtime control) to fetch the configuration now.

Both listen on 127.0.0.1 only, in the test's network namespace; both are stopped with
SIGTERM to the main pid (bounded wait, then SIGKILL of the process group we created).
"""
from __future__ import annotations

import gzip
import sqlite3
import subprocess
import time
from pathlib import Path

from lib import server

import stack as stack_mod

START_TIMEOUT = 30.0
PROXY_NAME = "linux-status-test-proxy"


class ActiveAgent(server.Process):
    name = "active zabbix_agentd"

    def __init__(self, agentd: str, module: Path, hostname: str, server_port: int) -> None:
        super().__init__(server.HostRoot(), str(stack_mod.private_dir("zbx-active-agent-")),
                         "zabbix_agentd.log")
        self.agentd = agentd
        self.hostname = hostname
        self.conf = self.dir / "zabbix_agentd.conf"
        self.module_conf = self.dir / "linux_status.conf"
        # The shipped defaults of the module (no linux_status.conf settings): the template
        # is tested the way it is run.
        self.module_conf.write_text("")
        self.conf.write_text("\n".join([
            f"PidFile={self.dir / 'zabbix_agentd.pid'}",
            f"LogFile={self.log}",
            "LogType=file",
            "DebugLevel=3",
            # Active only: no Server= (passive checks disabled), no listener.
            "StartAgents=0",
            f"ServerActive=127.0.0.1:{server_port}",
            f"Hostname={hostname}",
            "RefreshActiveChecks=60",
            "BufferSend=5",
            "Timeout=3",
            "AllowRoot=1",
            f"LoadModulePath={module.parent}",
            f"LoadModule={module.name}",
            "",
        ]))

    def start(self, env: dict) -> float:
        t0 = time.monotonic()
        env = dict(env, LINUX_STATUS_CONFIG=str(self.module_conf))
        env.pop("LINUX_STATUS_PROC_NET_DIR", None)
        self.spawn([self.agentd, "-c", str(self.conf), "-f"], env=env)
        self.wait_ready(lambda: "started [active checks #1]" in self.log_text(), START_TIMEOUT,
                        "the active agent to start its active checks", interval=0.1)
        return time.monotonic() - t0


class Proxy(server.Process):
    name = "zabbix_proxy"
    log_lines = 60

    def __init__(self, binary: str, schema: Path, name: str, port: int,
                 server_port: int) -> None:
        super().__init__(server.HostRoot(), str(stack_mod.private_dir("zbx-proxy-")),
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
