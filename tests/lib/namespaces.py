"""Network namespaces the tests create and destroy, each holding a known socket table, for
the `netns_*` keys.

`HeldNamespace.start(kind, size)` runs a Python child under `unshare -n` (its pid is the
namespace's only process, so it is the representative the module must report): the child
brings `lo` up, builds its sockets, prints its pid, and holds everything until its stdin
closes. Kinds:

- `full`: the e2e scenario (lib/scenario.py: every state, IPv4 and IPv6, 6 listeners);
- `small`: `size` listeners on 127.0.0.1, `size + 1` ESTABLISHED pairs to the first,
  `size` CLOSE_WAIT (+ their FIN_WAIT2 peers), `size` TIME_WAIT: every count depends on
  `size`, so namespaces of different sizes have different tables;
- `empty`: no socket.

The oracle is `nsenter -n -t <pid> ss -Htan` (root's view inside the namespace), never the
module's own reading; `ss_counts()` returns the per-state counts once two consecutive
listings agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lib import scenario as sc

TESTS_DIR = Path(__file__).resolve().parent.parent

CHILD = r"""
import os, socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
kind, size = sys.argv[1], int(sys.argv[2])
held = []
if kind == "full":
    from lib import scenario
    held.append(scenario.Scenario().build())
elif kind == "small":
    listeners = []
    for n in range(size):
        ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 30001 + n)); ls.listen(64); listeners.append(ls)
    held += listeners
    def pair():
        c = socket.create_connection(("127.0.0.1", 30001), timeout=5)
        s, _ = listeners[0].accept()
        return c, s
    for _ in range(size + 1):
        held += pair()
    for _ in range(size):            # CLOSE_WAIT (server) + FIN_WAIT2 (client)
        c, s = pair(); c.shutdown(socket.SHUT_WR); assert s.recv(1) == b""; held += [c, s]
    for _ in range(size):            # TIME_WAIT (client)
        c, s = pair(); c.close(); assert s.recv(1) == b""; s.close()
print(os.getpid(), flush=True)
sys.stdin.read()
"""

SMALL_STATES = ("LISTEN", "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT2", "TIME_WAIT")


def expected_small(size: int) -> dict[str, int]:
    """What a `small` namespace of `size` holds, by construction (ss must agree)."""
    counts = dict.fromkeys(sc.KERNEL_STATES, 0)
    counts.update(LISTEN=size, ESTABLISHED=2 * (size + 1), CLOSE_WAIT=size, FIN_WAIT2=size,
                  TIME_WAIT=size)
    return counts


class HeldNamespace:
    """One child process in a network namespace of its own, holding a socket table."""

    def __init__(self, kind: str, size: int = 1) -> None:
        self.kind, self.size = kind, size
        env = dict(os.environ, PYTHONPATH=str(TESTS_DIR))
        self.proc = subprocess.Popen(
            ["unshare", "-n", "--", sys.executable, "-c", CHILD, kind, str(size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), f"namespace child ({kind}) failed to start: {line!r}"
        self.pid = int(line)
        assert self.pid == self.proc.pid, (self.pid, self.proc.pid)
        self.inode = os.stat(f"/proc/{self.pid}/net/tcp").st_ino
        self.start_time = int(Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])

    @classmethod
    def start(cls, kind: str, size: int = 1) -> "HeldNamespace":
        return cls(kind, size)

    def ss_sockets(self) -> list[sc.SsSocket]:
        return [sc.SsSocket(sc.SS_TO_KERNEL[f[0]], int(f[1]), int(f[2]), f[3], f[4])
                for _, f in sc.output_fields(["nsenter", "-n", "-t", str(self.pid), "ss", "-Htan"])]

    def ss_counts(self) -> dict[str, int]:
        """Per-state counts as ss sees them inside the namespace, once stable."""
        previous = None
        for _ in range(50):
            now = sc.count_states(self.ss_sockets())
            if now == previous:
                return now
            previous = now
            time.sleep(0.05)
        raise AssertionError(f"namespace {self.inode}: ss never gave the same table twice")

    def cgroup(self) -> str:
        lines = Path(f"/proc/{self.pid}/cgroup").read_text().splitlines()
        v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
        return v2[0] if v2 else lines[0].split(":", 2)[2]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc.stdout.close()

    def __enter__(self) -> "HeldNamespace":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
