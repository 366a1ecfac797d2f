"""Real containers for the tests, started by a Debian-packaged runtime without any image
registry: the root file system is a cached debootstrap chroot (scripts/lib/chroot.sh's
`ls_chroot bookworm zabbix-agent zabbix-agent2`, the package tests' pristine system, keyed by
content under /var/cache/linux-status-test), used read-only beneath an overlay.

Runtimes (what worked on these machines, and what did not, is in docs/testing.md):

- `podman`: Debian 12's podman 4.3 with `runc` (crun refuses this hybrid cgroup host),
  `podman run --rootfs <chroot>:O` (an overlay over the chroot: no image, no import), its
  storage under /var/cache/linux-status-test/podman; cgroup `/libpod_parent/libpod-<id>`
  (cgroupfs driver: no systemd as PID 1 here). `--network none` (a network namespace of its
  own, `lo` only) or `--network host`.
- `nspawn`: systemd-nspawn (Debian's systemd-container) over an overlay of the chroot, with
  `--register=no --keep-unit` (no systemd/machined here), started from a cgroup the helper
  creates (`ls-test-<pid>-nspawn-<name>`), under which nspawn puts the payload in `/payload`;
  `--private-network` or the host's network.

- `lxc`: Debian 12's LXC 5.0, `lxc-execute` (an application container, lxc's own init as
  PID 1) with a generated configuration: rootfs an overlay of the chroot, `lxc.net.0.type`
  `empty` (own namespace, `lo` only) or `none` (the host's); cgroup `/lxc.payload.<name>`.

`start(runtime, command, host_network)` returns a `Container`: its runtime, name, leader pid
(the container's PID 1 as the host numbers it), cgroup path (the `0::` line of the leader's
/proc/<pid>/cgroup, as `ss --cgroup` prints it), network namespace inode (of
/proc/<pid>/ns/net, root's view) and `netns_id` (the inode of /proc/<pid>/net/tcp: another
number for the same namespace, the one the module can read unprivileged and reports as
`{#NETNS}`); `stop()` removes
it and everything it mounted. `perl_table(port, pairs, half_closed)` is a workload for the
chroot's own perl (perl-base: no Python inside): a listener, ESTABLISHED pairs and CLOSE_WAIT /
FIN_WAIT2 pairs, all created inside the container.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from lib import cgroups as cg
from lib import process
from lib import scenario as sc

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("LS_TEST_CACHE", "/var/cache/linux-status-test"))
ROOTFS = ("bookworm", "zabbix-agent", "zabbix-agent2")
START_TIMEOUT = 60.0
RUNTIMES = ("podman", "nspawn", "lxc")
# podman as this project runs it: its own storage, runc, limits this host lets it set.
PODMAN = ("podman", "--root", str(CACHE / "podman" / "storage"),
          "--runroot", "/run/linux-status-test-podman")
PODMAN_RUN = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit",
              "nproc=1024:1024")


def rootfs() -> Path:
    """The cached chroot the containers run (built once by scripts/lib/chroot.sh)."""
    out = subprocess.run(
        ["bash", "-c", f'source "{ROOT}/scripts/lib/chroot.sh"; ls_chroot "$@"', "ls_chroot",
         *ROOTFS],
        check=True, capture_output=True, text=True, timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1])


def cgroup_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"/proc/{pid}/cgroup has no cgroup v2 line")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return out


@dataclasses.dataclass
class Container:
    runtime: str
    name: str
    host_network: bool
    leader_pid: int
    cgroup: str
    netns_inode: int
    netns_id: int = 0
    _stop: list = dataclasses.field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Undoes the start, last step first; every step runs even if one fails (the first
        failure is raised at the end)."""
        failure: BaseException | None = None
        while self._stop:
            try:
                self._stop.pop()()
            except Exception as error:  # noqa: BLE001 - re-raised below
                failure = failure or error
        if failure is not None:
            raise failure


def _remove_if_empty(top_cgroup: str) -> None:
    """Removes a runtime's shared top-level cgroup (podman's libpod_parent, lxc's lxc.pivot)
    when nothing is left in it, so the host's hierarchy is as the test found it."""
    mount = cg.mount()
    if mount is None:
        return
    try:
        (mount / top_cgroup).rmdir()
    except OSError:
        pass  # absent, or in use by another container


def _netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _netns_id(pid: int) -> int:
    """`{#NETNS}`: the inode of /proc/<pid>/net/tcp (not the ns/net inode)."""
    return os.stat(f"/proc/{pid}/net/tcp").st_ino


def _start_podman(name: str, command: list[str], host_network: bool) -> Container:
    (CACHE / "podman").mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        [*PODMAN, "run", "-d", "--name", name, *PODMAN_RUN,
         "--network", "host" if host_network else "none", "--rootfs", f"{rootfs()}:O",
         *command],
        capture_output=True, text=True, timeout=START_TIMEOUT)
    assert run.returncode == 0, f"podman run: {run.stderr.strip()}"
    container = Container("podman", name, host_network, 0, "", 0)
    container._stop.append(lambda: _remove_if_empty("libpod_parent"))
    container._stop.append(lambda: subprocess.run([*PODMAN, "rm", "-f", "-t", "0", name],
                                                  capture_output=True, timeout=60))
    try:
        pid = int(subprocess.run([*PODMAN, "inspect", "-f", "{{.State.Pid}}", name],
                                 check=True, capture_output=True, text=True, timeout=30).stdout)
        assert pid > 0, f"podman reports no pid for {name}"
        container.leader_pid = pid
        container.cgroup = cgroup_of(pid)
        container.netns_inode = _netns_inode(pid)
        container.netns_id = _netns_id(pid)
    except BaseException:
        container.stop()
        raise
    return container


def _start_nspawn(name: str, command: list[str], host_network: bool) -> Container:
    work = Path(tempfile.mkdtemp(prefix=f"linux-status-nspawn-{name}-", dir="/var/tmp"))
    merged = work / "root"
    for sub in ("upper", "work", "root"):
        (work / sub).mkdir()
    container = Container("nspawn", name, host_network, 0, "", 0)
    container._stop.append(lambda: shutil.rmtree(work, ignore_errors=True))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={rootfs()},upperdir={work / 'upper'},workdir={work / 'work'}",
                    str(merged)], check=True, timeout=30)
    container._stop.append(lambda: subprocess.run(["umount", "-l", str(merged)], timeout=30))
    group = cg.Cgroup(f"nspawn-{name}")
    container._stop.append(group.remove)
    proc = subprocess.Popen(
        ["sh", "-c", 'echo 0 > "$1"; shift; exec "$@"', "sh", str(group.dir / "cgroup.procs"),
         "systemd-nspawn", "-q", "-D", str(merged), "--register=no", "--keep-unit",
         f"--machine={name}", *(() if host_network else ("--private-network",)), "--",
         *command],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def kill() -> None:
        if proc.poll() is None:
            for pid in _children(proc.pid):
                os.kill(pid, signal.SIGKILL)
            process.wait_or_kill(proc, 15)

    container._stop.append(kill)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, f"systemd-nspawn exited {proc.returncode}: {proc.stderr.read()}"
            leaders = _children(proc.pid)
            if leaders and cgroup_of(leaders[0]).endswith("/payload"):
                break
            assert time.monotonic() < deadline, "systemd-nspawn started no container"
            time.sleep(0.05)
        container.leader_pid = leaders[0]
        container.cgroup = cgroup_of(leaders[0])
        container.netns_inode = _netns_inode(leaders[0])
        container.netns_id = _netns_id(leaders[0])
    except BaseException:
        container.stop()
        raise
    return container


def _start_lxc(name: str, command: list[str], host_network: bool) -> Container:
    work = Path(tempfile.mkdtemp(prefix=f"linux-status-lxc-{name}-", dir="/var/tmp"))
    merged = work / "root"
    for sub in ("upper", "work", "root", "path"):
        (work / sub).mkdir()
    container = Container("lxc", name, host_network, 0, "", 0)
    container._stop.append(lambda: _remove_if_empty("lxc.pivot"))
    container._stop.append(lambda: shutil.rmtree(work, ignore_errors=True))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={rootfs()},upperdir={work / 'upper'},workdir={work / 'work'}",
                    str(merged)], check=True, timeout=30)
    container._stop.append(lambda: subprocess.run(["umount", "-l", str(merged)], timeout=30))
    config = work / "config"
    config.write_text("\n".join([
        f"lxc.uts.name = {name}",
        f"lxc.rootfs.path = dir:{merged}",
        # none: the host's (caller's) network namespace; empty: one of its own, lo only.
        f"lxc.net.0.type = {'none' if host_network else 'empty'}",
        "lxc.mount.auto = proc:mixed sys:ro",
        "lxc.apparmor.profile = unconfined",
        "lxc.log.level = WARN",
        "",
    ]))
    if not host_network:
        # lxc leaves lo down in an `empty` network: the payload waits until the helper has
        # brought it up (below), then runs the command.
        command = ["sh", "-c", 'while [ $(( $(cat /sys/class/net/lo/flags) & 1 )) = 0 ]; '
                   'do sleep 0.05; done; exec "$@"', "sh", *command]
    proc = subprocess.Popen(["lxc-execute", "-n", name, "-P", str(work / "path"), "-f",
                             str(config), "--", *command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def kill() -> None:
        if proc.poll() is None:
            if container.leader_pid:
                os.kill(container.leader_pid, signal.SIGKILL)
            process.wait_or_kill(proc, 15)

    container._stop.append(kill)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, f"lxc-execute exited {proc.returncode}: {proc.stderr.read()}"
            info = subprocess.run(["lxc-info", "-n", name, "-P", str(work / "path"), "-p", "-H"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
            if info.isdigit() and cgroup_of(int(info)).startswith("/lxc.payload."):
                break
            assert time.monotonic() < deadline, "lxc-execute started no container"
            time.sleep(0.05)
        container.leader_pid = int(info)
        if not host_network:
            subprocess.run(["nsenter", "-n", "-t", info, "ip", "link", "set", "lo", "up"],
                           check=True, timeout=10)
        container.cgroup = cgroup_of(container.leader_pid)
        container.netns_inode = _netns_inode(container.leader_pid)
        container.netns_id = _netns_id(container.leader_pid)
    except BaseException:
        container.stop()
        raise
    return container


def start(runtime: str, command: list[str], host_network: bool = False,
          name: str | None = None) -> Container:
    """A running container of `runtime` (see RUNTIMES) running `command`."""
    name = name or f"ls-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
    if runtime == "podman":
        return _start_podman(name, command, host_network)
    if runtime == "nspawn":
        return _start_nspawn(name, command, host_network)
    if runtime == "lxc":
        return _start_lxc(name, command, host_network)
    raise ValueError(f"unknown runtime {runtime!r}: one of {RUNTIMES}")


PERL_TABLE = r'''
use IO::Socket::INET;
my ($port, $pairs, $half) = @ARGV;
my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port, Listen => 64,
                              ReuseAddr => 1) or die "listen: $!";
my @held;
sub pair { my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port)
               or die "connect: $!"; my $a = $l->accept or die "accept: $!";
           push @held, $c, $a; return $c; }
pair() for 1 .. $pairs;
shutdown(pair(), 1) for 1 .. $half;
sleep 3600 while 1;
'''


def perl_table(port: int, pairs: int, half_closed: int) -> tuple[list[str], dict[str, int]]:
    """(the command, the counts it builds inside the container, by construction)."""
    counts = dict.fromkeys(sc.KERNEL_STATES, 0)
    counts.update(LISTEN=1, ESTABLISHED=2 * pairs, CLOSE_WAIT=half_closed,
                  FIN_WAIT2=half_closed)
    return ["perl", "-e", PERL_TABLE, str(port), str(pairs), str(half_closed)], counts


def probe(runtime: str) -> str | None:
    """None if `runtime` starts a container here, else why not (its exact error)."""
    try:
        container = start(runtime, ["sleep", "30"])
    except (AssertionError, OSError, subprocess.SubprocessError) as error:
        return str(error)
    container.stop()
    return None
