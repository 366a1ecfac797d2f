"""A real Zabbix 6.0 server stack on loopback, for the template tests.

- `PgCluster`: a private PostgreSQL cluster (initdb as `postgres` into a temporary folder,
  listening on 127.0.0.1 only, trust authentication). The Zabbix database (schema, images,
  data) is loaded once and the stopped cluster's data folder is cached outside the clone,
  under `/var/cache/linux-status-test/zabbix-server-db/bookworm-<zabbix version>-pg<major>/`;
  later runs copy it (about a second) instead of loading data.sql again (about 15 s).
- `ZabbixServer`: lib/server.py's zabbix_server, version 6.0, against that database.
- `Frontend`: PHP's built-in web server over /usr/share/zabbix, with /etc/zabbix/zabbix.conf.php
  written for this database (under `unshare --mount`, as scripts/test runs it, on a tmpfs only
  the test's namespace sees; otherwise an existing file is backed up and restored on stop) and
  LOCPATH pointing at the en_US.UTF-8 locale compiled by tests/server/setup.sh.
- `Api`: the JSON-RPC API (`user.login` as Admin). `WebSession`: a logged-in browser session
  (cookie jar) to fetch pages such as chart2.php.

Every HTTP request is recorded (`Activity`) with its start and end time: the tests compare
host-wide socket counts with `ss`, and requests to the frontend create sockets of their own.
Every wait is bounded; every failure message carries the tail of the relevant log.
"""

from __future__ import annotations

import glob
import gzip
import http.cookiejar
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from lib import server
from lib.scenario import wait_until
from lib.server import DB_NAME, DB_PASSWORD, DB_USER, log_tail, port_open, stop_process

REPO = Path(__file__).resolve().parents[2]
TEST_CACHE = Path(os.environ.get("LS_TEST_CACHE", "/var/cache/linux-status-test"))
SCHEMA_DIR = Path("/usr/share/zabbix-server-pgsql")
FRONTEND_DIR = Path("/usr/share/zabbix")
FRONTEND_CONF = Path("/etc/zabbix/zabbix.conf.php")
ZABBIX_SERVER = "/usr/sbin/zabbix_server"

START_TIMEOUT = 60.0
HTTP_TIMEOUT = 60.0


def private_mount_namespace() -> bool:
    """True under `unshare --mount` (our mount namespace is not our parent's)."""
    return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")


def private_dir(prefix: str) -> Path:
    """A temporary folder that the `postgres` user can traverse (pytest's own tmp folders
    are mode 0700 and root's)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


# -- PostgreSQL -------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"no PostgreSQL {name} under /usr/lib/postgresql (tests/server/setup.sh)"
    return found[-1]


def package_version(pkg: str) -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", pkg],
        check=True, capture_output=True, text=True, timeout=10,
    ).stdout.strip()


class PgCluster:
    def __init__(self, port: int) -> None:
        self.port = port
        self.root = private_dir("zbx-pg-")
        self.data = self.root / "pgdata"
        self.sockdir = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.started = False
        major = Path(pg_bin("initdb")).parts[-3]
        version = package_version("zabbix-server-pgsql").replace(":", "_").replace("+", "_")
        # Outside the clone (CI clones afresh), keyed by what the database holds.
        self.cache = TEST_CACHE / "zabbix-server-db" / f"bookworm-{version}-pg{major}" / "pgdata"

    def _as_postgres(self, *cmd: str, timeout: float = 60.0, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd],
            capture_output=True, text=True, timeout=timeout, **kw,
        )
        assert proc.returncode == 0, (
            f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout}\n"
            f"stderr: {proc.stderr}\n{log_tail(self.log)}"
        )
        return proc

    def psql(self, sql: str, db: str = DB_NAME, user: str = DB_USER, stdin=None) -> str:
        cmd = [pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir),
               "-p", str(self.port), "-U", user, "-d", db]
        if sql:
            cmd += ["-c", sql]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, input=stdin)
        assert proc.returncode == 0, (
            f"psql {sql[:80]!r} exited {proc.returncode}\nstderr: {proc.stderr[-2000:]}\n"
            f"{log_tail(self.log)}"
        )
        return proc.stdout

    def start(self) -> float:
        """Start the cluster with a loaded Zabbix database; returns the seconds it took."""
        t0 = time.monotonic()
        self.sockdir.mkdir()
        shutil.chown(self.root, "postgres", "postgres")
        shutil.chown(self.sockdir, "postgres", "postgres")
        if (self.cache / "PG_VERSION").is_file():
            subprocess.run(["cp", "-a", str(self.cache), str(self.data)], check=True, timeout=120)
            self._pg_ctl_start()
        else:
            self._build()
            self._save_cache()
            self._pg_ctl_start()
        return time.monotonic() - t0

    def _pg_ctl_start(self) -> None:
        self._as_postgres(
            pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            "start", timeout=90,
        )
        self.started = True

    def _build(self) -> None:
        self._as_postgres(
            pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C", timeout=120,
        )
        self._pg_ctl_start()
        self.psql(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'", db="postgres",
                  user="postgres")
        self.psql(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER} ENCODING 'UTF8' TEMPLATE template0",
                  db="postgres", user="postgres")
        for part in ("schema", "images", "data"):
            with gzip.open(SCHEMA_DIR / f"{part}.sql.gz", "rt") as f:
                self.psql("", stdin=f.read())
        # The stock "Zabbix server" host polls an agent on 127.0.0.1:10050: nothing to do
        # with these tests, and its failing polls only add log noise.
        self.psql("UPDATE hosts SET status=1 WHERE host='Zabbix server'")
        self.stop()

    def _save_cache(self) -> None:
        partial = self.cache.with_name("pgdata.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(self.data), str(partial)], check=True, timeout=120)
        partial.rename(self.cache)

    def stop(self) -> None:
        if self.started:
            self.started = False
            self._as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                              "-t", "30", "stop", timeout=60)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -- zabbix_server ----------------------------------------------------------------------------


def ZabbixServer(port: int, db_port: int) -> server.ZabbixServer:
    """zabbix_server 6.0 of this machine, in a folder of its own (lib/server.py)."""
    return server.ZabbixServer(server.HostRoot(), "6.0", str(private_dir("zbx-server-")), port,
                               db_port)


# -- frontend ---------------------------------------------------------------------------------


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


class Frontend:
    def __init__(self, port: int, db_port: int, server_port: int, locpath: Path) -> None:
        self.port = port
        self.dir = private_dir("zbx-web-")
        self.log = self.dir / "php.log"
        self.locpath = locpath
        self.proc: subprocess.Popen | None = None
        self.backup: Path | None = None
        self.wrote_conf = False
        self.conf_text = server.frontend_config(
            "6.0", db_port, server_port, "restored or removed when the tests end")
        self.url = f"http://127.0.0.1:{port}/"

    def start(self) -> float:
        t0 = time.monotonic()
        assert (self.locpath / "en_US.UTF-8" / "LC_CTYPE").is_file(), (
            f"no en_US.UTF-8 locale in {self.locpath}: run tests/server/setup.sh"
        )
        FRONTEND_CONF.parent.mkdir(parents=True, exist_ok=True)
        if private_mount_namespace():
            # Our own /etc/zabbix (a tmpfs only this namespace sees): a test running beside
            # us on the same machine keeps its own frontend configuration.
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs",
                            str(FRONTEND_CONF.parent)], check=True, timeout=30)
        else:
            if FRONTEND_CONF.exists() or FRONTEND_CONF.is_symlink():
                self.backup = self.dir / "zabbix.conf.php.orig"
                shutil.copy2(FRONTEND_CONF, self.backup, follow_symlinks=False)
            self.wrote_conf = True
        FRONTEND_CONF.unlink(missing_ok=True)
        FRONTEND_CONF.write_text(self.conf_text)
        FRONTEND_CONF.chmod(0o644)
        env = dict(os.environ, LOCPATH=str(self.locpath), LANG="C")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                server.php_server(self.port, str(FRONTEND_DIR)),
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )

        def ready():
            assert self.proc.poll() is None, (
                f"php -S exited {self.proc.returncode}\n{log_tail(self.log)}"
            )
            return port_open(self.port)

        wait_until(ready, START_TIMEOUT, "php -S to listen", interval=0.2,
                   detail=lambda: log_tail(self.log))
        return time.monotonic() - t0

    def stop(self) -> int | None:
        try:
            return stop_process(self.proc, "php -S")
        finally:
            if self.wrote_conf:
                FRONTEND_CONF.unlink(missing_ok=True)
                if self.backup is not None:
                    shutil.copy2(self.backup, FRONTEND_CONF, follow_symlinks=False)
                self.wrote_conf = False


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
