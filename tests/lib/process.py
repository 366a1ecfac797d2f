"""The one runner of every long-lived program the suites start: agents (zabbix_agentd and
agent 2, on this machine, in a chroot, as a packaged service: lib/agent.py's `AgentProcess`),
Zabbix servers, proxies, frontends and PostgreSQL helpers (lib/server.py).

- A root says where a program's files are and how it is run: `HostRoot` (this machine: a
  path is itself; as another user through runuser; `prepare()` hides /etc/zabbix under a
  private tmpfs) or `Chroot` (a cached Debian root entered
  with chroot(8): `prepare()` mounts /proc, /dev and tmpfs folders privately, so the cached
  root never changes).
- `Process` starts the program in a session of its own (so a stop can kill every worker it
  forked), with stdout and an optional log file, waits for readiness (bounded, failing at
  once if it exits first), shows the tail of both in every failure, and stops it: SIGTERM,
  a bounded wait, then SIGKILL of the session's process group, which fails the caller.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from lib.scenario import wait_until

STOP_TIMEOUT = 20.0


def log_tail(path: Path | None, lines: int = 40) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return f"--- last {min(lines, len(text))} lines of {path} ---\n" + "\n".join(text[-lines:])


def read_text(path: Path | None) -> str:
    try:
        return path.read_text(errors="replace") if path is not None else ""
    except FileNotFoundError:
        return ""


def terminate(proc: subprocess.Popen | None, name: str, timeout: float = STOP_TIMEOUT,
              group: bool = False) -> int | None:
    """SIGTERM a process we started; its exit status (None: never started). One that ignores
    SIGTERM for `timeout` seconds is killed (with `group`, its whole process group, which it
    leads: started with start_new_session) and fails the caller."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=timeout)
        raise AssertionError(f"{name} ignored SIGTERM for {timeout} s; killed")


def wait_or_kill(proc: subprocess.Popen, timeout: float) -> int:
    """Waits up to `timeout` seconds for `proc` to exit, then kills it; its exit status."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=timeout)


def end_holder(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Ends a socket-holder process that runs until its stdin closes (the suites' helpers
    that keep a known table open): closes stdin, then waits, bounded, else kills it."""
    if proc.poll() is None:
        proc.stdin.close()
        wait_or_kill(proc, timeout)


def session_alive(sid: int) -> bool:
    """Some live (non-zombie) process of session `sid` remains."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[3] is the session id (after state, ppid, pgrp).
        if int(fields[3]) == sid and fields[0] != "Z":
            return True
    return False


class HostRoot:
    """Programs run on this machine: a path is itself."""

    def path(self, inside: str) -> Path:
        return Path(inside)

    def cmd(self, *args: str, user: str | None = None) -> list[str]:
        return ["runuser", "-u", user, "--", *args] if user else list(args)

    def package_version(self, pkg: str) -> str:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()

    def prepare(self) -> None:
        """A tmpfs on /etc/zabbix that only this (private) mount namespace sees: the run's
        frontend configuration goes there, and the machine's files stay hidden and intact."""
        assert private_mount_namespace(), (
            "not in a private mount namespace: run under `unshare --net --mount`")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/etc/zabbix"],
                       check=True, timeout=30)


class Chroot:
    """A cached Debian root; `prepare()` (in a private mount namespace only) mounts /proc,
    /dev and tmpfs on /tmp and /etc/zabbix inside it, where every file of a run lives."""

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
        assert private_mount_namespace(), (
            "not in a private mount namespace: run under `unshare --net --mount`"
            " (the chroot's mounts must not leak into the host)")
        for point, args in (("proc", ["-t", "proc", "proc"]), ("dev", ["--rbind", "/dev"]),
                            ("tmp", ["-t", "tmpfs", "-o", "mode=1777", "tmpfs"]),
                            ("etc/zabbix", ["-t", "tmpfs", "-o", "mode=755", "tmpfs"])):
            target = self.root / point
            subprocess.run(["mount", *args, str(target)], check=True, timeout=30)
            self.mounted.append(target)


def private_dir(prefix: str) -> Path:
    """A temporary folder on this machine that other users (postgres, zabbix) can traverse
    (pytest's own temporary folders are mode 0700 and root's)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


def private_mount_namespace() -> bool:
    """True under `unshare --mount` (our mount namespace is not our parent's)."""
    return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")


class Process:
    """A program under `root` with its files in the folder `inside` (as the program sees it;
    `dir` is where the suite sees it), started in a session of its own, stopped by pid.
    `log` (default `<dir>/log`) is the program's own log file, None when it has none."""

    name = "process"
    log_lines = 40
    stop_timeout = STOP_TIMEOUT

    def __init__(self, root, inside: str, log_name: str | None = "log",
                 stdout_name: str = "stdout") -> None:
        self.root = root
        self.inside = inside
        self.dir = root.path(inside)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stdout = self.dir / stdout_name
        self.log: Path | None = self.dir / log_name if log_name else None
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def spawn(self, args: list[str], env: dict | None = None,
              preexec: Callable[[], None] | None = None, user: str | None = None,
              append: bool = False) -> None:
        """Starts `args` under the root (as `user`); stdout is rewritten unless `append`."""
        with open(self.stdout, "ab" if append else "wb") as out:
            self.proc = subprocess.Popen(self.root.cmd(*args, user=user), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, preexec_fn=preexec, start_new_session=True)

    def wait_ready(self, ready, timeout: float, what: str, interval: float = 0.2) -> None:
        """Until `ready()`; the process exiting first fails at once, with its logs."""

        def check():
            assert self.proc.poll() is None, (
                f"{self.name} exited {self.proc.returncode} at start-up\n{self.describe()}"
            )
            return ready()

        wait_until(check, timeout, what, interval=interval, detail=self.describe)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return read_text(self.log)

    def output(self) -> str:
        """Standard output and the log, whole."""
        return read_text(self.stdout) + read_text(self.log)

    def describe(self) -> str:
        return log_tail(self.stdout, 10) + "\n" + log_tail(self.log, self.log_lines)

    def stop(self, wait_session: bool = False) -> int | None:
        """SIGTERM, bounded wait, then SIGKILL of the session's group (failing the caller);
        with `wait_session`, also until every process of the session has left (a service's
        workers leave after their main process)."""
        status = terminate(self.proc, self.name, timeout=self.stop_timeout, group=True)
        if wait_session and self.proc is not None:
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline and session_alive(self.proc.pid):
                time.sleep(0.05)
        return status
