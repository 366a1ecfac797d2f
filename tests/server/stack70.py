"""A real Zabbix 7.0 server, frontend and PostgreSQL from Debian 13 (trixie) binary packages,
run inside a cached trixie chroot (built by tests/server/setup.sh with ls_chroot; its path in
LINUX_STATUS_TRIXIE_SERVER_CHROOT), and Debian 13's agents beside them.

The test runs in its own network AND mount namespace (`unshare --net --mount`): the mounts
this module makes inside the chroot (/proc, /dev, and tmpfs on /tmp and /etc/zabbix, where
every file of the run lives: database, configurations, logs, the module) are private to it,
so the cached chroot is never changed and everything vanishes with the namespace.

- `Chroot`: the mounts and `cmd()` to run a program inside (optionally as a user).
- `PgCluster70`: PostgreSQL 17 of the chroot; the loaded Zabbix 7.0 database is cached under
  /var/cache/linux-status-test/zabbix-server-db/, keyed by the package versions it holds.
- `ZabbixServer70`, `Frontend70` (php -S of the chroot), `ChrootAgent` (zabbix_agentd 7.0
  with the module, passive or active-only; or zabbix_agent2 with the plugin).
Every process is started by us, in its own process group, and stopped by pid.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import time
from pathlib import Path

from lib import agent, server

TEST_CACHE = Path(os.environ.get("LS_TEST_CACHE", "/var/cache/linux-status-test"))
INSIDE = "/tmp/ls70"  # the run's folder, as seen inside the chroot (a tmpfs)
START_TIMEOUT = 90.0


class Chroot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounted: list[Path] = []

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def cmd(self, *args: str, user: str | None = None) -> list[str]:
        spec = ["--userspec", f"{user}:{user}"] if user else []
        return ["chroot", *spec, str(self.root), *args]

    def package_version(self, pkg: str) -> str:
        return subprocess.run(
            ["dpkg-query", f"--admindir={self.root}/var/lib/dpkg", "-W", "-f=${Version}", pkg],
            check=True, capture_output=True, text=True, timeout=10).stdout.strip()

    def prepare(self) -> None:
        own = os.readlink("/proc/self/ns/mnt")
        parent = os.readlink(f"/proc/{os.getppid()}/ns/mnt")
        assert own != parent, (
            "not in a private mount namespace: run the 7.0 tests under `unshare --net --mount`"
            " (the chroot's mounts must not leak into the host)")
        for point, args in (("proc", ["-t", "proc", "proc"]), ("dev", ["--rbind", "/dev"]),
                            ("tmp", ["-t", "tmpfs", "-o", "mode=1777", "tmpfs"]),
                            ("etc/zabbix", ["-t", "tmpfs", "-o", "mode=755", "tmpfs"])):
            target = self.root / point
            subprocess.run(["mount", *args, str(target)], check=True, timeout=30)
            self.mounted.append(target)
        run = self.path(INSIDE)
        run.mkdir(mode=0o755)


def _as(chroot: Chroot, user: str, *cmd: str, timeout: float = 120.0, log: Path | None = None,
        **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(chroot.cmd(*cmd, user=user), capture_output=True, text=True,
                          timeout=timeout, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout[-2000:]}\n"
        f"stderr: {proc.stderr[-2000:]}" + (f"\n{server.log_tail(log)}" if log else ""))
    return proc


class PgCluster70:
    def __init__(self, chroot: Chroot, port: int) -> None:
        self.c = chroot
        self.port = port
        self.major = sorted(p.name for p in chroot.path("/usr/lib/postgresql").iterdir())[-1]
        self.bin = f"/usr/lib/postgresql/{self.major}/bin"
        # One folder owned by the chroot's postgres user (its uid need not be the host's).
        self.top = f"{INSIDE}/pg"
        self.data = f"{self.top}/data"
        self.sock = f"{self.top}/sock"
        self.log = chroot.path(f"{self.top}/postgres.log")
        key = "-".join(chroot.package_version(p) for p in ("zabbix-server-pgsql",
                                                          f"postgresql-{self.major}"))
        self.cache = TEST_CACHE / "zabbix-server-db" / (
            "trixie-" + key.replace(":", "_").replace("+", "_").replace("~", "_")) / "pgdata"
        self.started = False

    def psql(self, sql: str, db: str = "zabbix", user: str = "zabbix", stdin=None) -> str:
        cmd = self.c.cmd(f"{self.bin}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                         "-p", str(self.port), "-U", user, "-d", db, *(["-c", sql] if sql else []))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, input=stdin)
        assert proc.returncode == 0, f"psql {sql[:80]!r}: {proc.stderr[-2000:]}"
        return proc.stdout

    def _ctl(self, *args: str) -> None:
        _as(self.c, "postgres", f"{self.bin}/pg_ctl", "-D", self.data, *args, timeout=120,
            log=self.log)

    def _start(self) -> None:
        self._ctl("-l", f"{self.top}/postgres.log", "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off", "start")
        self.started = True

    def start(self) -> float:
        t0 = time.monotonic()
        _as(self.c, "root", "install", "-d", "-o", "postgres", "-g", "postgres", self.top,
            self.sock)
        if (self.cache / "PG_VERSION").is_file():
            subprocess.run(["cp", "-a", str(self.cache), str(self.c.path(self.data))], check=True,
                           timeout=300)
            self._start()
        else:
            _as(self.c, "root", "install", "-d", "-m", "700", "-o", "postgres", "-g", "postgres",
                self.data)
            _as(self.c, "postgres", f"{self.bin}/initdb", "-D", self.data, "-U", "postgres",
                "--auth=trust", "-E", "UTF8", "--locale=C")
            self._start()
            self.psql("CREATE ROLE zabbix LOGIN PASSWORD 'zabbix'", db="postgres", user="postgres")
            self.psql("CREATE DATABASE zabbix OWNER zabbix ENCODING 'UTF8' TEMPLATE template0",
                      db="postgres", user="postgres")
            for part in ("schema", "images", "data"):
                path = self.c.path(f"/usr/share/zabbix-server-pgsql/{part}.sql.gz")
                with gzip.open(path, "rt") as f:
                    self.psql("", stdin=f.read())
            self.psql("UPDATE hosts SET status=1 WHERE host='Zabbix server'")
            self.stop()
            partial = self.cache.with_name("pgdata.partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(self.c.path(self.data)), str(partial)], check=True,
                           timeout=300)
            partial.rename(self.cache)
            self._start()
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.started:
            self.started = False
            self._ctl("-m", "fast", "-w", "-t", "30", "stop")


class _Process(server.Process):
    """A program inside the chroot (lib/server.py's Process), its folder under INSIDE."""

    def __init__(self, chroot: Chroot, folder: str) -> None:
        super().__init__(chroot, f"{INSIDE}/{folder}")
        self.c = chroot


def ZabbixServer70(chroot: Chroot, port: int, db_port: int) -> server.ZabbixServer:
    """The chroot's zabbix_server 7.0 (lib/server.py)."""
    return server.ZabbixServer(chroot, "7.0", f"{INSIDE}/server", port, db_port)


class Frontend70(_Process):
    name = "php -S (7.0 frontend)"

    def __init__(self, chroot: Chroot, port: int, db_port: int, server_port: int) -> None:
        super().__init__(chroot, "web")
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.log = self.stdout
        # /etc/zabbix is the run's own tmpfs (Chroot.prepare): the chroot keeps no trace.
        chroot.path("/etc/zabbix/zabbix.conf.php").write_text(server.frontend_config(
            "7.0", db_port, server_port, "a tmpfs of the test's mount namespace"))

    def start(self) -> float:
        t0 = time.monotonic()
        env = dict(os.environ, LANG="C.UTF-8")
        self.spawn(server.php_server(self.port, "/usr/share/zabbix"), env=env)
        self.wait_ready(lambda: server.port_open(self.port), START_TIMEOUT,
                        "php -S (7.0) to listen")
        return time.monotonic() - t0


class ChrootAgent(_Process):
    """Debian 13's zabbix_agentd 7.0 loading the module (`kind` passive or active), or
    zabbix_agent2 7.0 loading the plugin (`agent2=True`): the same keys either way."""

    def __init__(self, chroot: Chroot, name: str, kind: str, server_port: int,
                 port: int | None, module: Path, agent2: bool = False) -> None:
        super().__init__(chroot, f"agent-{name}")
        self.name = f"{'zabbix_agent2' if agent2 else 'zabbix_agentd'} 7.0 ({name})"
        self.hostname = name
        self.kind = kind
        self.port = port
        self.agent2 = agent2
        shutil.copy2(module, self.dir / module.name)
        (self.dir / "linux_status.conf").write_text("")  # the module's shipped defaults
        lines = [f"LogFile={self.inside}/log", "LogType=file", "DebugLevel=3",
                 f"PidFile={self.inside}/agent.pid", f"Hostname={name}", "Timeout=3"]
        if kind == "passive":
            lines += ["Server=127.0.0.1", "ServerActive=", "ListenIP=127.0.0.1",
                      f"ListenPort={port}"]
        else:
            lines += [f"ServerActive=127.0.0.1:{server_port}", "RefreshActiveChecks=5",
                      "BufferSend=5"]
            lines += ["Server="] if agent2 else ["StartAgents=0"]
        if agent2:
            lines += [f"ControlSocket={self.inside}/agent.sock",
                      f"PluginSocket={self.inside}/plugin.sock",
                      f"Plugins.LinuxStatus.System.Path={self.inside}/{module.name}"]
        else:
            lines += ["AllowRoot=1", f"LoadModulePath={self.inside}",
                      f"LoadModule={module.name}"]
        if kind == "active" and agent2:
            # Agent 2 always listens unless told not to; keep it off any real port.
            lines += ["ListenIP=127.0.0.1", f"ListenPort={port or 10050}"]
        (self.dir / "agent.conf").write_text("\n".join([*lines, ""]))

    def start(self, get_bin: str) -> float:
        t0 = time.monotonic()
        binary = "/usr/sbin/zabbix_agent2" if self.agent2 else "/usr/sbin/zabbix_agentd"
        env = dict(os.environ, LINUX_STATUS_CONFIG=f"{self.inside}/linux_status.conf")
        env.pop("LINUX_STATUS_PROC_NET_DIR", None)
        env.pop("LD_LIBRARY_PATH", None)  # the host's Zabbix 6.0 libraries, not the chroot's
        self.spawn([binary, "-c", f"{self.inside}/agent.conf", "-f"], env=env)

        def ready():
            if self.kind == "active":
                if not self.agent2:
                    return "active checks #1]" in self.log_text()
                # Agent 2 says it is up on its standard output; the data proves the rest.
                try:
                    return "Press Ctrl+C to exit" in self.stdout.read_text(errors="replace")
                except FileNotFoundError:
                    return False
            return agent.zabbix_get_ping(get_bin, self.port)()[0]

        self.wait_ready(ready, START_TIMEOUT, f"{self.name} to start", interval=0.1)
        return time.monotonic() - t0
