"""What the Zabbix server stacks of tests/server share, parameterised by the Zabbix version
(6.0: Debian 12's packages on this machine, tests/server/stack.py; 7.0: Debian 13's packages
in a cached chroot, tests/server/stack70.py):

- `HostRoot` (this machine) or a chroot (stack70.Chroot): where a program's files are
  (`path(inside)`) and how it is run (`cmd(*argv)`);
- `Process`: a program we start in its own process group, with its folder, stdout and log,
  the tail of both in failure messages, stopped by pid (`stop_process`);
- `ZabbixServer(root, version, ...)`: zabbix_server with small Start* counts and
  CacheUpdateFrequency=1 (new items are polled within seconds), either version;
- `frontend_config(version, ...)`: the frontend's zabbix.conf.php for the run's database;
  `php_server(port, docroot)`: PHP's built-in web server for it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from lib import agent
from lib.scenario import wait_until

DB_NAME = DB_USER = DB_PASSWORD = "zabbix"
STOP_TIMEOUT = 20.0
# zabbix_server's start-up (PostgreSQL up already): 7.0 runs in a chroot and is slower.
SERVER_START_TIMEOUT = {"6.0": 60.0, "7.0": 90.0}
# The log line that says the server synced its configuration.
SERVER_READY = {"6.0": "started [configuration syncer", "7.0": "configuration syncer"}


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return f"--- last {min(lines, len(text))} lines of {path} ---\n" + "\n".join(text[-lines:])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def stop_process(proc: subprocess.Popen | None, name: str) -> int | None:
    """SIGTERM, bounded wait, then SIGKILL of the process group we created."""
    return agent.terminate(proc, name, timeout=STOP_TIMEOUT, group=True)


class HostRoot:
    """Programs run on this machine: a path is itself."""

    def path(self, inside: str) -> Path:
        return Path(inside)

    def cmd(self, *args: str, user: str | None = None) -> list[str]:
        assert user is None, "HostRoot runs programs as the suite's user"
        return list(args)


class Process:
    """A program under `root`, its files in the folder `inside` (as the program sees it),
    started in its own process group, stopped by pid."""

    name = "process"
    log_lines = 40

    def __init__(self, root, inside: str, log_name: str = "log") -> None:
        self.root = root
        self.inside = inside
        self.dir = root.path(inside)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stdout = self.dir / "stdout"
        self.log = self.dir / log_name
        self.proc: subprocess.Popen | None = None

    def spawn(self, args: list[str], env: dict | None = None) -> None:
        with open(self.stdout, "wb") as out:
            self.proc = subprocess.Popen(self.root.cmd(*args), stdout=out,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)

    def wait_ready(self, ready, timeout: float, what: str, interval: float = 0.2) -> None:
        """Until `ready()`; the process exiting first fails at once, with its logs."""

        def check():
            assert self.proc.poll() is None, (
                f"{self.name} exited {self.proc.returncode} at start-up\n{self.describe()}"
            )
            return ready()

        wait_until(check, timeout, what, interval=interval, detail=self.describe)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        return log_tail(self.stdout, 10) + "\n" + log_tail(self.log, self.log_lines)

    def stop(self) -> int | None:
        return stop_process(self.proc, self.name)


class ZabbixServer(Process):
    """`zabbix_server -c CONF -f` of one Zabbix version against the run's PostgreSQL."""

    log_lines = 60

    def __init__(self, root, version: str, inside: str, port: int, db_port: int) -> None:
        super().__init__(root, inside, "zabbix_server.log")
        self.version = version
        self.name = f"zabbix_server {version}"
        self.port = port
        self.conf = self.dir / "zabbix_server.conf"
        pollers = ["StartPollers=2", *(["StartAgentPollers=1"] if version != "6.0" else []),
                   "StartPollersUnreachable=1"]
        self.conf.write_text("\n".join([
            "ListenIP=127.0.0.1", f"ListenPort={port}", f"LogFile={inside}/zabbix_server.log",
            "LogFileSize=0", "DebugLevel=3", f"PidFile={inside}/zabbix_server.pid",
            f"SocketDir={inside}", "DBHost=127.0.0.1", f"DBPort={db_port}",
            f"DBName={DB_NAME}", f"DBUser={DB_USER}", f"DBPassword={DB_PASSWORD}", "AllowRoot=1",
            "CacheUpdateFrequency=1", "HousekeepingFrequency=0", "Timeout=4", *pollers,
            "StartPreprocessors=1", "StartHistoryPollers=1", "StartTrappers=1",
            "StartPingers=0", "StartDiscoverers=0", "StartHTTPPollers=0", "StartTimers=1",
            "StartEscalators=1", "StartAlerters=1", "StartDBSyncers=1", "StartLLDProcessors=1",
            "StartReportWriters=0", "StartProxyPollers=0", "",
        ]))

    def start(self) -> float:
        t0 = time.monotonic()
        self.spawn(["/usr/sbin/zabbix_server", "-c", f"{self.inside}/zabbix_server.conf", "-f"])
        self.wait_ready(
            lambda: port_open(self.port) and SERVER_READY[self.version] in self.log_text(),
            SERVER_START_TIMEOUT[self.version],
            f"{self.name} to listen and sync its configuration",
        )
        return time.monotonic() - t0


def frontend_config(version: str, db_port: int, server_port: int, written: str) -> str:
    """zabbix.conf.php for the run's database and server (`written`: where, for the comment)."""
    vault = (["VAULT_URL", "VAULT_DB_PATH", "VAULT_TOKEN"] if version == "6.0" else
             ["VAULT", "VAULT_URL", "VAULT_PREFIX", "VAULT_DB_PATH", "VAULT_TOKEN",
              "VAULT_CERT_FILE", "VAULT_KEY_FILE"])
    db = {"TYPE": "POSTGRESQL", "SERVER": "127.0.0.1", "PORT": str(db_port),
          "DATABASE": DB_NAME, "USER": DB_USER, "PASSWORD": DB_PASSWORD, "SCHEMA": "",
          "ENCRYPTION": False, "KEY_FILE": "", "CERT_FILE": "", "CA_FILE": "",
          "VERIFY_HOST": False, "CIPHER_LIST": "", **{name: "" for name in vault},
          "DOUBLE_IEEE754": True}
    php = {False: "false", True: "true"}
    lines = ["<?php", f"// Written by linux_status tests/server ({written})."]
    lines += [f"$DB['{k}'] = {php[v] if isinstance(v, bool) else repr(v)};" for k, v in db.items()]
    name = "linux_status tests" + ("" if version == "6.0" else f" {version}")
    lines += ["$ZBX_SERVER = '127.0.0.1';", f"$ZBX_SERVER_PORT = '{server_port}';",
              f"$ZBX_SERVER_NAME = '{name}';", "$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;", ""]
    return "\n".join(lines)


def php_server(port: int, docroot: str) -> list[str]:
    """PHP's built-in web server over the frontend, with limits its pages need."""
    return ["php", "-d", "memory_limit=512M", "-d", "post_max_size=16M",
            "-d", "upload_max_filesize=2M", "-d", "max_execution_time=300",
            "-d", "max_input_time=300", "-d", "date.timezone=UTC",
            "-S", f"127.0.0.1:{port}", "-t", docroot]


def api_up(api) -> bool:
    """The frontend's API answers (apiinfo.version needs no login)."""
    try:
        api.call("apiinfo.version", {})
        return True
    except AssertionError:
        return False


def start_stack(version: str, parts: list[tuple[str, object]], api, timings: dict,
                timeout: float, interval: float, detail) -> None:
    """Starts each (label, part) of a server stack in order (PostgreSQL, zabbix_server, the
    frontend), recording its start-up time under its label; then waits for the API, logs
    in and checks that the frontend is of `version`."""
    for label, part in parts:
        timings[label] = part.start()
    what = "the API to answer" if version == "6.0" else f"the {version} API to answer"
    wait_until(lambda: api_up(api), timeout, what, interval=interval, detail=detail)
    api.login()
    got = api.call("apiinfo.version", {})
    assert got.startswith(f"{version}."), f"frontend API version {got}, expected {version}.x"


def stop_stack(parts: list[tuple[str, object]], label: str, timings: dict) -> None:
    """Stops every (name, part), in order, even when one fails; prints the start-up times;
    fails with every teardown error."""
    errors = []
    for name, part in parts:
        try:
            part.stop()
        except BaseException as e:  # keep tearing down the rest
            errors.append(f"{name}: {e}")
    print(f"\n[{label}] start-up times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    assert not errors, "teardown: " + "; ".join(errors)
