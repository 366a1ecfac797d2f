"""Real Zabbix server stacks for tests/server, parameterised by the Zabbix version: one
`Stack(version, root, ...)` of PostgreSQL, zabbix_server and the PHP frontend, wherever the
version's packages are (`VERSIONS`): 6.0 is Debian 12's packages on this machine
(`process.HostRoot`), 7.0 Debian 13's in a cached chroot (`process.Chroot`). The classes
are the same for both; only the table below differs.

- `PgCluster`: a private PostgreSQL cluster (initdb as `postgres`, 127.0.0.1 only, trust
  authentication) holding the Zabbix database. The loaded database (schema, images, data:
  about 15 s to load) is cached, stopped, outside the clone under
  `/var/cache/linux-status-test/zabbix-server-db/<system>-<zabbix-server-pgsql
  version>-<postgresql version>/`; later runs copy it (about a second).
- `ZabbixServer`: zabbix_server with small Start* counts and CacheUpdateFrequency=1 (new
  items are polled within seconds).
- `Frontend`: PHP's built-in web server over /usr/share/zabbix with a zabbix.conf.php for the
  run's database in the root's /etc/zabbix, a tmpfs of the test's private mount namespace
  (`root.prepare()`), so the machine's and the cached chroot's files never change.
- `Api` (JSON-RPC; 6.0 sends `auth` in the body, 7.0 an `Authorization: Bearer` header),
  `WebSession` (a logged-in browser session, cookie jar), `Activity` (the start and end of
  every HTTP request: the tests compare host-wide socket counts with `ss`, and requests to
  the frontend create sockets of their own).

Every wait is bounded and every failure message carries the tail of the relevant log.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.cookiejar
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from lib import process
from lib.process import log_tail
from lib.scenario import wait_until

TEST_CACHE = Path(os.environ.get("LS_TEST_CACHE", "/var/cache/linux-status-test"))
DB_NAME = DB_USER = DB_PASSWORD = "zabbix"
HTTP_TIMEOUT = 60.0
FRONTEND_DIR = "/usr/share/zabbix"
SCHEMA_DIR = "/usr/share/zabbix-server-pgsql"
ZABBIX_SERVER = "/usr/sbin/zabbix_server"


@dataclasses.dataclass(frozen=True)
class Version:
    """What differs between the Zabbix versions the suites run."""

    version: str
    system: str  # the Debian release its packages come from (part of the database cache key)
    server_start_timeout: float  # zabbix_server's start-up, PostgreSQL up already
    server_ready: str  # the log line saying the server synced its configuration
    api_timeout: float  # the frontend's first API answer
    api_interval: float
    api_bearer: bool  # 7.0 wants the token in an Authorization header
    vault_settings: tuple[str, ...]  # zabbix.conf.php's vault lines
    agent_pollers: bool  # 7.0 has StartAgentPollers


VAULT_60 = ("VAULT_URL", "VAULT_DB_PATH", "VAULT_TOKEN")
VAULT_70 = ("VAULT", "VAULT_URL", "VAULT_PREFIX", "VAULT_DB_PATH", "VAULT_TOKEN",
            "VAULT_CERT_FILE", "VAULT_KEY_FILE")
VERSIONS = {
    # 7.0 runs in a chroot and is slower to start.
    "6.0": Version("6.0", "bookworm", 60.0, "started [configuration syncer", 60.0, 0.2, False,
                   VAULT_60, False),
    "7.0": Version("7.0", "trixie", 90.0, "configuration syncer", 90.0, 0.5, True,
                   VAULT_70, True),
}


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def run_checked(root, *cmd: str, user: str | None = None, timeout: float = 120.0,
                log: Path | None = None, **kw) -> subprocess.CompletedProcess:
    """`cmd` under `root` (as `user`), which must succeed; the failure names its output."""
    proc = subprocess.run(root.cmd(*cmd, user=user), capture_output=True, text=True,
                          timeout=timeout, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout[-2000:]}\n"
        f"stderr: {proc.stderr[-2000:]}" + (f"\n{log_tail(log)}" if log else ""))
    return proc


class PgCluster:
    """PostgreSQL of `root` with the Zabbix database, its files in the folder `top`."""

    def __init__(self, root, top: str, port: int, system: str) -> None:
        self.root = root
        self.port = port
        self.major = max((p.name for p in root.path("/usr/lib/postgresql").iterdir()), key=int)
        self.bin = f"/usr/lib/postgresql/{self.major}/bin"
        self.top = top
        self.data = f"{top}/data"
        self.sock = f"{top}/sock"
        self.log = root.path(f"{top}/postgres.log")
        key = "-".join(root.package_version(p)
                       for p in ("zabbix-server-pgsql", f"postgresql-{self.major}"))
        for c in ":+~":
            key = key.replace(c, "_")
        # Outside the clone (CI clones afresh), keyed by what the database holds.
        self.cache = TEST_CACHE / "zabbix-server-db" / f"{system}-{key}" / "pgdata"
        self.started = False

    def psql(self, sql: str, db: str = DB_NAME, user: str = DB_USER, stdin=None) -> str:
        cmd = self.root.cmd(f"{self.bin}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-h", self.sock, "-p", str(self.port), "-U", user, "-d", db,
                            *(["-c", sql] if sql else []))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, input=stdin)
        assert proc.returncode == 0, (
            f"psql {sql[:80]!r} exited {proc.returncode}\nstderr: {proc.stderr[-2000:]}\n"
            f"{log_tail(self.log)}")
        return proc.stdout

    def _ctl(self, *args: str) -> None:
        run_checked(self.root, f"{self.bin}/pg_ctl", "-D", self.data, *args, user="postgres",
                    log=self.log)

    def _start(self) -> None:
        self._ctl("-l", f"{self.top}/postgres.log", "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off", "start")
        self.started = True

    def start(self) -> float:
        """Starts the cluster with a loaded Zabbix database; returns the seconds it took."""
        t0 = time.monotonic()
        # Made inside the root: the root's postgres user need not have the host's uid.
        run_checked(self.root, "install", "-d", "-o", "postgres", "-g", "postgres", self.top,
                    self.sock)
        if (self.cache / "PG_VERSION").is_file():
            subprocess.run(["cp", "-a", str(self.cache), str(self.root.path(self.data))],
                           check=True, timeout=300)
            self._start()
            return time.monotonic() - t0
        run_checked(self.root, "install", "-d", "-m", "700", "-o", "postgres", "-g", "postgres",
                    self.data)
        run_checked(self.root, f"{self.bin}/initdb", "-D", self.data, "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--locale=C", user="postgres")
        self._start()
        self.psql(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'", db="postgres",
                  user="postgres")
        self.psql(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER} ENCODING 'UTF8' TEMPLATE template0",
                  db="postgres", user="postgres")
        for part in ("schema", "images", "data"):
            with gzip.open(self.root.path(f"{SCHEMA_DIR}/{part}.sql.gz"), "rt") as f:
                self.psql("", stdin=f.read())
        # The stock "Zabbix server" host polls an agent on 127.0.0.1:10050: nothing to do
        # with these tests, and its failing polls only add log noise.
        self.psql("UPDATE hosts SET status=1 WHERE host='Zabbix server'")
        self.stop()
        partial = self.cache.with_name("pgdata.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(self.root.path(self.data)), str(partial)], check=True,
                       timeout=300)
        partial.rename(self.cache)
        self._start()
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.started:
            self.started = False
            self._ctl("-m", "fast", "-w", "-t", "30", "stop")


class ZabbixServer(process.Process):
    """`zabbix_server -c CONF -f` of one Zabbix version against the run's PostgreSQL."""

    log_lines = 60

    def __init__(self, root, version: str, inside: str, port: int, db_port: int) -> None:
        super().__init__(root, inside, "zabbix_server.log")
        self.v = VERSIONS[version]
        self.name = f"zabbix_server {version}"
        self.port = port
        self.conf = self.dir / "zabbix_server.conf"
        pollers = ["StartPollers=2", *(["StartAgentPollers=1"] if self.v.agent_pollers else []),
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
        self.spawn([ZABBIX_SERVER, "-c", f"{self.inside}/zabbix_server.conf", "-f"])
        self.wait_ready(
            lambda: port_open(self.port) and self.v.server_ready in self.log_text(),
            self.v.server_start_timeout, f"{self.name} to listen and sync its configuration",
        )
        return time.monotonic() - t0


def frontend_config(version: str, db_port: int, server_port: int, written: str) -> str:
    """zabbix.conf.php for the run's database and server (`written`: where, for the comment)."""
    db = {"TYPE": "POSTGRESQL", "SERVER": "127.0.0.1", "PORT": str(db_port),
          "DATABASE": DB_NAME, "USER": DB_USER, "PASSWORD": DB_PASSWORD, "SCHEMA": "",
          "ENCRYPTION": False, "KEY_FILE": "", "CERT_FILE": "", "CA_FILE": "",
          "VERIFY_HOST": False, "CIPHER_LIST": "",
          **{name: "" for name in VERSIONS[version].vault_settings}, "DOUBLE_IEEE754": True}
    php = {False: "false", True: "true"}
    lines = ["<?php", f"// Written by linux_status tests/server ({written})."]
    lines += [f"$DB['{k}'] = {php[v] if isinstance(v, bool) else repr(v)};" for k, v in db.items()]
    lines += ["$ZBX_SERVER = '127.0.0.1';", f"$ZBX_SERVER_PORT = '{server_port}';",
              f"$ZBX_SERVER_NAME = 'linux_status tests {version}';",
              "$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;", ""]
    return "\n".join(lines)


def php_server(port: int, docroot: str) -> list[str]:
    """PHP's built-in web server over the frontend, with limits its pages need."""
    return ["php", "-d", "memory_limit=512M", "-d", "post_max_size=16M",
            "-d", "upload_max_filesize=2M", "-d", "max_execution_time=300",
            "-d", "max_input_time=300", "-d", "date.timezone=UTC",
            "-S", f"127.0.0.1:{port}", "-t", docroot]


class Frontend(process.Process):
    """`php -S` over the root's frontend; its zabbix.conf.php in the root's /etc/zabbix (a
    tmpfs of the test's mount namespace: `root.prepare()` first). `env`: PHP's environment
    (a UTF-8 locale, which the pages and charts need)."""

    def __init__(self, root, version: str, inside: str, port: int, db_port: int,
                 server_port: int, env: dict) -> None:
        super().__init__(root, inside, log_name=None, stdout_name="php.log")
        self.name = f"php -S ({version} frontend)"
        self.port = port
        self.env = env
        self.url = f"http://127.0.0.1:{port}/"
        self.log = self.stdout
        root.path("/etc/zabbix/zabbix.conf.php").write_text(frontend_config(
            version, db_port, server_port, "a tmpfs of the test's mount namespace"))

    def start(self) -> float:
        t0 = time.monotonic()
        self.spawn(php_server(self.port, FRONTEND_DIR), env=self.env)
        self.wait_ready(lambda: port_open(self.port), 60.0, f"{self.name} to listen")
        return time.monotonic() - t0

    def describe(self) -> str:
        return log_tail(self.stdout, self.log_lines)


class Activity:
    """Start and end times (time.time()) of every HTTP request the tests made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[float, float]] = []

    def record(self, start: float, end: float) -> None:
        with self.lock:
            self.spans.append((start, end))

    def overlaps(self, start: float, end: float) -> bool:
        with self.lock:
            return any(s <= end and e >= start for s, e in self.spans)


class ApiError(AssertionError):
    pass


class Api:
    """Zabbix JSON-RPC API (6.0: `auth` in the request body; with `bearer`, as 7.0 wants
    it: an `Authorization: Bearer` header)."""

    def __init__(self, frontend, activity: Activity, describe=lambda: "",
                 bearer: bool = False) -> None:
        self.bearer = bearer
        self.url = frontend.url + "api_jsonrpc.php"
        self.activity = activity
        self.describe = describe
        self.auth: str | None = None
        self.next_id = 1

    def call(self, method: str, params) -> object:
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": self.next_id}
        self.next_id += 1
        headers = {"Content-Type": "application/json-rpc"}
        if self.auth and method not in ("apiinfo.version", "user.login"):
            if self.bearer:
                headers["Authorization"] = f"Bearer {self.auth}"
            else:
                body["auth"] = self.auth
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers)
        start = time.time()
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
                raw = r.read()
        except OSError as e:
            raise ApiError(f"API {method}: HTTP request failed: {e}\n{self.describe()}") from None
        finally:
            self.activity.record(start, time.time())
        try:
            reply = json.loads(raw)
        except ValueError:
            raise ApiError(f"API {method}: not JSON: {raw[:2000]!r}\n{self.describe()}") from None
        if "error" in reply:
            raise ApiError(f"API {method} failed: {reply['error']}\n{self.describe()}")
        return reply["result"]

    def login(self) -> None:
        self.auth = self.call("user.login", {"username": "Admin", "password": "zabbix"})

    def up(self) -> bool:
        """The frontend's API answers (apiinfo.version needs no login)."""
        try:
            self.call("apiinfo.version", {})
            return True
        except AssertionError:
            return False


class WebSession:
    """A browser-like session: log in through index.php, keep the (HttpOnly) cookie."""

    def __init__(self, frontend: Frontend, activity: Activity) -> None:
        self.base = frontend.url
        self.activity = activity
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str, data: dict | None = None) -> tuple[int, str, bytes]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        start = time.time()
        try:
            with self.opener.open(self.base + path, data=body, timeout=HTTP_TIMEOUT) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read()
        finally:
            self.activity.record(start, time.time())

    def login(self) -> None:
        self.get("index.php", {"name": "Admin", "password": "zabbix", "autologin": "1",
                               "enter": "Sign in"})
        names = [c.name for c in self.jar]
        assert "zbx_session" in names, f"no zbx_session cookie after login (cookies: {names})"


class Stack:
    """PostgreSQL, zabbix_server and the frontend of one Zabbix `version` under `root` (a
    prepared HostRoot or Chroot), their files under the folder `top`, on `ports` (database,
    server, frontend)."""

    def __init__(self, version: str, root, top: str, ports: tuple[int, int, int],
                 frontend_env: dict, label: str) -> None:
        self.v = VERSIONS[version]
        self.root = root
        self.top = top
        self.label = label
        pg_port, server_port, web_port = ports
        self.pg = PgCluster(root, f"{top}/pg", pg_port, self.v.system)
        self.server = ZabbixServer(root, version, f"{top}/server", server_port, pg_port)
        self.frontend = Frontend(root, version, f"{top}/web", web_port, pg_port, server_port,
                                 frontend_env)
        self.activity = Activity()
        self.api = Api(self.frontend, self.activity, self.server.describe, bearer=self.v.api_bearer)
        self.timings: dict[str, float] = {}
        self.extra_ports: tuple[int, ...] = ()  # the suite's other listeners (a proxy)
        self.parts = [(f"postgresql {self.pg.major} (with loaded database)", self.pg),
                      (self.server.name, self.server), (self.frontend.name, self.frontend)]

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.pg.port, self.server.port, self.frontend.port, *self.extra_ports)

    def describe(self) -> str:
        return self.server.describe()

    def start(self) -> None:
        """Starts each part in order, recording its start-up time; then waits for the API,
        logs in and checks that the frontend is of this version."""
        for label, part in self.parts:
            self.timings[label] = part.start()
        wait_until(self.api.up, self.v.api_timeout, f"the {self.v.version} API to answer",
                   interval=self.v.api_interval,
                   detail=lambda: self.frontend.describe() + "\n" + self.server.describe())
        self.api.login()
        got = self.api.call("apiinfo.version", {})
        assert got.startswith(f"{self.v.version}."), (
            f"frontend API version {got}, expected {self.v.version}.x")

    def stop(self) -> None:
        """Stops every part, in reverse order, even when one fails; prints the start-up
        times; fails with every teardown error."""
        errors = []
        for name, part in reversed(self.parts):
            try:
                part.stop()
            except BaseException as e:  # keep tearing down the rest
                errors.append(f"{name}: {e}")
        print(f"\n[{self.label}] start-up times: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        assert not errors, "teardown: " + "; ".join(errors)
