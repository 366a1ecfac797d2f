"""Pristine systems for the package tests, and their agents started the way their services are.

`System(base)` is a throw-away copy of one cached Debian chroot (`ls_chroot SUITE ...`: a
debootstrap minbase system with Debian's agents installed by apt, nothing else): an overlay
mount whose lower layer is the cache, left untouched, and whose upper layer is a temporary
folder, so every test starts from the same pristine system and leaves nothing behind.

`Service(system, "zabbix-agent")` (lib/agent.py's agent runner) starts a unit's ExecStart=
the way systemd would, from the system's own unit file: its tmpfiles.d folders first, then
the command as the unit's User= and Group= (with that user's supplementary groups), in `/`,
with systemd's environment plus Environment= and EnvironmentFile=, `$VAR` split into words
as systemd does. The agents read Debian's own configuration files: nothing here writes one.
The process runs in the test's network namespace (the chroot shares it), so the test's sockets and `ss` see the same table.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from lib import agent, process, zbxd

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
CMD_TIMEOUT = 120.0
AGENT_PORT = 10050  # the Debian configurations' default ListenPort, kept as shipped

# systemd's environment for a system service (before Environment= lines).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", CMD_TIMEOUT)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


class System:
    """An overlay copy of a cached chroot with /proc, /dev and /sys mounted inside."""

    def __init__(self, base: str | Path, name: str) -> None:
        self.base = Path(base)
        assert (self.base / ".linux-status-ready").is_file(), f"{base} is not a ready chroot"
        self.name = name
        self.work = Path(tempfile.mkdtemp(prefix=f"linux-status-{name}-", dir="/var/tmp"))
        self.root = self.work / "root"
        self._mounts: list[Path] = []

    def __enter__(self) -> "System":
        for sub in ("upper", "work", "root"):
            (self.work / sub).mkdir()
        self._mount(
            ["-t", "overlay", "overlay", "-o",
             f"lowerdir={self.base},upperdir={self.work / 'upper'},workdir={self.work / 'work'}"],
            self.root,
        )
        self._mount(["-t", "proc", "proc"], self.root / "proc")
        self._mount(["--rbind", "/dev"], self.root / "dev")
        self._mount(["--rbind", "/sys"], self.root / "sys")
        return self

    def _mount(self, args: list[str], target: Path) -> None:
        r = _run(["mount", *args, str(target)])
        assert r.returncode == 0, f"mount {args} {target}: {r.stderr}"
        self._mounts.append(target)

    def __exit__(self, *exc) -> None:
        for target in reversed(self._mounts):
            _run(["umount", "-R", "-l", str(target)])
        self._mounts.clear()
        shutil.rmtree(self.work, ignore_errors=True)

    def path(self, inside: str) -> Path:
        """The host path of `inside` (an absolute path in the system)."""
        return self.root / inside.lstrip("/")

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        """A command as root in the system, with a clean environment."""
        env = {"PATH": SYSTEMD_PATH, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
               "HOME": "/root"}
        r = _run(["chroot", str(self.root), *cmd], env=env)
        if check:
            assert r.returncode == 0, (
                f"[{self.name}] {' '.join(cmd)} exited {r.returncode}\n"
                f"stdout: {r.stdout}\nstderr: {r.stderr}"
            )
        return r

    def copy_in(self, host_file: str | Path, inside: str) -> str:
        shutil.copy2(host_file, self.path(inside))
        return inside

    def read(self, inside: str) -> str:
        return self.path(inside).read_text()

    def exists(self, inside: str) -> bool:
        return os.path.lexists(self.path(inside))


def _unit_file(system: System, unit: str) -> Path:
    for folder in ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"):
        p = system.path(f"{folder}/{unit}.service")
        if p.is_file():
            return p
    raise AssertionError(f"[{system.name}] no unit file for {unit}.service")


def _parse_unit(text: str) -> dict[str, list[str]]:
    """The [Service] section's assignments, in order (a key may repeat)."""
    section = ""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _expand(words: list[str], env: dict[str, str]) -> list[str]:
    """systemd's ExecStart= expansion: `${VAR}` is one word, a word that is just `$VAR` is
    split at whitespace into several."""
    out: list[str] = []
    for w in words:
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            out += env.get(m.group(1), "").split()
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda x: env.get(x.group(1), ""), w))
    return out


def _env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def _user(system: System, name: str) -> tuple[int, int, list[int], str, str]:
    """(uid, gid, supplementary gids, home, shell) of `name` in the system's own databases."""
    uid = gid = None
    home = shell = ""
    for line in system.read("/etc/passwd").splitlines():
        f = line.split(":")
        if f[0] == name:
            uid, gid, home, shell = int(f[2]), int(f[3]), f[5], f[6]
    assert uid is not None, f"[{system.name}] no user {name} in /etc/passwd"
    groups = [gid]
    for line in system.read("/etc/group").splitlines():
        f = line.split(":")
        if name in f[3].split(","):
            groups.append(int(f[2]))
    return uid, gid, groups, home, shell


def _group_id(system: System, name: str) -> int:
    for line in system.read("/etc/group").splitlines():
        f = line.split(":")
        if f[0] == name:
            return int(f[2])
    raise AssertionError(f"[{system.name}] no group {name}")


def apply_tmpfiles(system: System) -> None:
    """The `d` lines of the system's tmpfiles.d (what systemd-tmpfiles does at boot: /run is
    empty in a chroot)."""
    for folder in ("/usr/lib/tmpfiles.d", "/etc/tmpfiles.d"):
        d = system.path(folder)
        if not d.is_dir():
            continue
        for conf in sorted(d.glob("*.conf")):
            for raw in conf.read_text().splitlines():
                f = raw.split()
                if len(f) < 5 or f[0] != "d":
                    continue
                target = system.path(f[1])
                target.mkdir(parents=True, exist_ok=True)
                os.chmod(target, int(f[2], 8))
                uid = _user(system, f[3])[0] if f[3] != "-" else 0
                gid = _group_id(system, f[4]) if f[4] != "-" else 0
                os.chown(target, uid, gid)


class Service(agent.AgentProcess):
    """One unit's main process, started like systemd starts it (its user, groups,
    environment and ExecStart=) in the system's chroot, by lib/agent.py's agent runner."""

    start_timeout = START_TIMEOUT
    stop_timeout = STOP_TIMEOUT

    def __init__(self, system: System, unit: str) -> None:
        super().__init__(process.HostRoot(), str(system.work), None, f"{unit}.journal")
        self.system = system
        self.unit = unit
        self.name = f"[{system.name}] {unit}"
        self.config = _parse_unit(_unit_file(system, unit).read_text())
        self.output_path = self.stdout

    def command(self) -> tuple[list[str], dict[str, str], str]:
        user = self.config.get("User", ["root"])[-1]
        uid, gid, groups, home, shell = _user(self.system, user)
        env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": home, "USER": user,
               "LOGNAME": user, "SHELL": shell}
        for assignment in self.config.get("Environment", []):
            for word in shlex.split(assignment):
                key, value = word.split("=", 1)
                env[key] = value
        for spec in self.config.get("EnvironmentFile", []):
            optional = spec.startswith("-")
            path = spec.lstrip("-").replace("%p", self.unit).replace("%N", self.unit)
            p = self.system.path(path)
            if p.is_file():
                env.update(_env_file(p))
            else:
                assert optional, f"[{self.system.name}] {self.unit}: no EnvironmentFile {path}"
        (exec_start,) = self.config["ExecStart"]
        argv = _expand(shlex.split(exec_start.lstrip("-@+!")), env)
        return argv, env, user

    def start(self, port: int = AGENT_PORT) -> "Service":
        apply_tmpfiles(self.system)
        argv, env, user = self.command()
        uid, gid, groups, _home, _shell = _user(self.system, user)
        root = str(self.system.root)

        def enter() -> None:
            os.chroot(root)
            os.chdir("/")
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)

        def ping() -> tuple[bool, str]:
            try:
                reply = zbxd.check(port, "agent.ping", timeout=2.0)
            except OSError as e:
                return False, str(e)
            return reply == ("value", "1"), repr(reply)

        self.argv = argv
        self.name = f"[{self.system.name}] {self.unit} ({' '.join(argv)}, as {user}, port {port})"
        self.start_agent(argv, env, ping=ping, interval=0.1, preexec=enter, append=True)
        return self

    def stop(self) -> int:
        """SIGTERM the main process, as `systemctl stop` does, then wait for its workers to
        leave the session; returns its exit status."""
        assert self.proc is not None
        return super().stop(wait_session=True)

    def describe(self) -> str:
        logs = []
        for log in ("/var/log/zabbix-agent/zabbix_agentd.log", "/var/log/zabbix/zabbix_agent2.log"):
            p = self.system.path(log)
            if p.is_file():
                logs.append(f"--- {log} (last 40 lines) ---\n" + "\n".join(
                    p.read_text(errors="replace").splitlines()[-40:]))
        return f"--- {self.unit} stdout/stderr ---\n{self.output()}\n" + "\n".join(logs)
