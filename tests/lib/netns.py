"""The private network namespace every agent-facing suite runs in, and its preconditions.

Shared by every agent-facing suite (their conftests import it):

- `require(names, executables)`: the environment variables are set and the binaries
  executable, else the session fails (never skips) with a hint;
- `enter_private_namespace(hint)`: the suite must have been started under `unshare -n` (a
  namespace of its own, not the parent's); it then moves into a child namespace with a TCP
  socket hash of its own (`net.ipv4.tcp_child_ehash_entries`), because a namespace normally
  shares the host's established hash and every /proc/net/tcp read walks all of it: a host
  with 700,000 sockets elsewhere made one read take ~0.25 s. Finally `lo` is brought up;
- `hide_host_module_config()`: a private mount namespace in which /etc/zabbix is an empty
  tmpfs, so the module's default configuration file (/etc/zabbix/linux_status.conf) is
  absent whatever the host has: the shipped defaults are tested as shipped.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping

import pytest

from lib import scenario as scenario_mod

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
HOST_MODULE_CONFIG_DIR = Path("/etc/zabbix")
# Buckets of the private TCP socket hash: plenty for the suites' few thousand sockets.
CHILD_EHASH_ENTRIES = 4096


def require(names: Iterable[str], executables: Mapping[str, str] = {}) -> dict[str, str]:
    """The values of `names`; fails the session if one is missing or a binary is unusable."""
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"missing environment variable(s) {', '.join(missing)}: run "
            "`source scripts/setup` and set LINUX_STATUS_SO to the built .so",
            pytrace=False,
        )
    problems = []
    so = Path(os.environ.get("LINUX_STATUS_SO", ""))
    if "LINUX_STATUS_SO" in names and not (so.is_absolute() and so.is_file()):
        problems.append(f"LINUX_STATUS_SO={so} is not an absolute path to a file (cargo build --release)")
    for name, path in executables.items():
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            problems.append(f"{name}={path} is not an executable file")
    if os.geteuid() != 0:
        problems.append("must run as root (network namespaces, the agent as root)")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
    return {name: os.environ[name] for name in names}


def read_proc_net_tcp_seconds() -> float:
    """Seconds one full read of /proc/net/tcp takes here."""
    started = time.monotonic()
    with open("/proc/net/tcp", "rb") as f:
        while f.read(65536):
            pass
    return time.monotonic() - started


def pin_time_wait_reuse() -> str:
    """Sets net.ipv4.tcp_tw_reuse to 0 in this namespace. The default (2: loopback) lets a
    new connection take over the 4-tuple of a TIME_WAIT socket on the agent port: the old
    one is gone while the query runs and the new one is back, with the same address pair,
    when the query's own connection closes, so ss on either side of the query shows one
    TIME_WAIT the agent rightly did not count. Suites that compare exact TIME_WAIT counts
    pin it; the load suite keeps the default (its thousands of connections a second need
    the reuse)."""
    Path("/proc/sys/net/ipv4/tcp_tw_reuse").write_text("0\n")
    return "net.ipv4.tcp_tw_reuse=0 (no TIME_WAIT takeover on loopback)"


def enter_private_namespace(hint: str) -> str:
    """Checks the namespace is private and fresh, moves into a child with its own socket
    hash, brings `lo` up; returns a line with the /proc read cost before and after."""
    own = os.readlink("/proc/self/ns/net")
    for other in (os.getppid(), 1):
        try:
            theirs = os.readlink(f"/proc/{other}/ns/net")
        except OSError:
            continue  # pid 1's link is not readable in every container; the parent's is
        if own == theirs:
            pytest.fail(
                f"not in a private network namespace (shared with pid {other}): run `{hint}`",
                pytrace=False,
            )
    links = subprocess.run(
        ["ip", "-o", "link", "show"], check=True, capture_output=True, text=True, timeout=10
    ).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    if names != ["lo"]:
        pytest.fail(f"not a fresh namespace: interfaces {names}, expected only lo", pytrace=False)
    existing = scenario_mod.ss_sockets()
    if existing:
        pytest.fail(
            "not a fresh namespace: TCP sockets exist already:\n" + "\n".join(map(str, existing)),
            pytrace=False,
        )

    shared_cost = read_proc_net_tcp_seconds()
    Path("/proc/sys/net/ipv4/tcp_child_ehash_entries").write_text(f"{CHILD_EHASH_ENTRIES}\n")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        pytest.fail(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}", pytrace=False)
    entries = int(Path("/proc/sys/net/ipv4/tcp_ehash_entries").read_text())
    assert entries == CHILD_EHASH_ENTRIES, f"no private socket hash: tcp_ehash_entries={entries}"

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)

    def lo_ready():
        out = subprocess.run(
            ["ip", "addr", "show", "dev", "lo"], capture_output=True, text=True, timeout=10
        ).stdout
        return "inet 127.0.0.1/8" in out and "inet6 ::1/128" in out

    scenario_mod.wait_until(lo_ready, 5.0, "lo to be up with 127.0.0.1 and ::1")
    return (
        f"one read of /proc/net/tcp: {shared_cost * 1000:.1f} ms with the host's shared socket "
        f"hash, {read_proc_net_tcp_seconds() * 1000:.2f} ms with a private one "
        f"({CHILD_EHASH_ENTRIES} buckets)"
    )


def hide_host_module_config() -> str:
    """Moves this process into a private mount namespace where /etc/zabbix holds nothing
    (an empty tmpfs; the host's folder is untouched), so no host file changes a result."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        pytest.fail(f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}", pytrace=False)
    # Mounts made here must not propagate back to the host.
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        pytest.fail(f"mount --make-rprivate /: {os.strerror(ctypes.get_errno())}", pytrace=False)
    if not HOST_MODULE_CONFIG_DIR.is_dir():
        return f"{HOST_MODULE_CONFIG_DIR} does not exist on this host: nothing to hide"
    if libc.mount(b"tmpfs", bytes(HOST_MODULE_CONFIG_DIR), b"tmpfs", 0, b"mode=0755") != 0:
        pytest.fail(f"mount tmpfs on {HOST_MODULE_CONFIG_DIR}: {os.strerror(ctypes.get_errno())}",
                    pytrace=False)
    assert not any(HOST_MODULE_CONFIG_DIR.iterdir()), "the tmpfs over /etc/zabbix is not empty"
    return f"{HOST_MODULE_CONFIG_DIR} hidden behind an empty tmpfs (private mount namespace)"
