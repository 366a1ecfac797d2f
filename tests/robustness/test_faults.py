"""Faults in the socket tables: the module answers ZBX_NOTSUPPORTED naming the file (and the
line), or still counts what it can, and the agent stays up (pids unchanged) after each.

How the faults are made: the agent runs with the module's documented test-only override
LINUX_STATUS_PROC_NET_DIR (README, "Test-only override") pointing at a directory (with a copy of the
real /proc/net/netstat, which some keys also read) whose tcp and tcp6 the test rewrites
between requests (the module opens `tcp` and `tcp6` by path on every scan; the module's
SnapshotLifetime is 0, so every request scans). Bind-mounting files over /proc/net/tcp* in a
private mount namespace (`unshare -m`) does NOT work: /proc/net is a symlink to
/proc/self/net, and a mount on /proc/<pid>/net/tcp6 is not seen by the agent's workers
(checked on kernel 6.18), so the override is the honest way.

Cases: the real fixtures (counts equal their `expected` file, including the 12k-line
wide-12k); tcp6 absent (IPv4 still counted); tcp absent, a directory, a symlink loop
(NOTSUPPORTED with the path and the OS error); truncated, garbled, bad state, empty, binary
junk, a line longer than the read buffer, a bad tcp6 (NOTSUPPORTED with the path and
`line N`); and a scan past the agent's Timeout: `tcp` is a FIFO the test feeds one valid
line every 50 ms for longer than Timeout=1, so every read() returns data and the module's
clock check stops the scan (NOTSUPPORTED mentioning Timeout, in about a second).

Not covered, and why: a FIFO nobody writes (open() would block the worker forever: no
user-space clock check can interrupt it; /proc files never do that); permission errors
(the agent runs as root here, which bypasses file modes).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from lib import zbxd

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
KERNEL_STATES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
                 "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING")
TIMEOUT = 1  # the agent's Timeout for this suite, seconds
HEADER4 = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   "
           "uid  timeout inode\n")
LINE4 = ("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
         "        0 21662 1 0000000000000000 100 0 0 10 0\n")


def expected_counts(fixture: str) -> dict[str, int]:
    lines = (FIXTURES / fixture / "expected").read_text().splitlines()
    return {name: int(count) for name, count in (line.split() for line in lines)}


def count_file(path: Path) -> dict[str, int]:
    """Independent count of one table: the `st` column, by kernel state name."""
    counts = dict.fromkeys(KERNEL_STATES, 0)
    for line in path.read_text().splitlines()[1:]:
        number = int(line.split()[3], 16)
        if 1 <= number <= 11:
            counts[KERNEL_STATES[number - 1]] += 1
    return counts


@pytest.fixture()
def net_dir(tmp_path) -> Path:
    d = tmp_path / "net"
    d.mkdir()
    # The TcpExt counters some keys also read (tcp_summary, listen_stats): the real ones.
    shutil.copyfile("/proc/net/netstat", d / "netstat")
    return d


@pytest.fixture()
def fault_agent(start_agent, net_dir):
    return start_agent(
        start_agents=2, timeout=TIMEOUT, module_settings="SnapshotLifetime=0\n",
        extra_env={"LINUX_STATUS_PROC_NET_DIR": str(net_dir)},
    )


def use(net_dir: Path, tcp: Path | None = None, tcp6: Path | None = None) -> None:
    """Makes net_dir hold copies of the given files (absent when None)."""
    for name, source in (("tcp", tcp), ("tcp6", tcp6)):
        target = net_dir / name
        if target.is_symlink() or target.is_file() or target.is_fifo():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if source is not None:
            shutil.copyfile(source, target)


def ask(port: int, key: str) -> zbxd.Reply:
    reply = zbxd.one(port, key, timeout=30)
    assert reply.kind in ("value", "notsupported"), f"{key}: {reply}"
    return reply


def assert_counts(port: int, counts: dict[str, int], what: str) -> None:
    for state, count in counts.items():
        reply = ask(port, f"linux_status[tcp_status,{state}]")
        assert reply.kind == "value", f"{what}: {state}: {reply.message!r}"
        assert int(reply.payload) == count, f"{what}: {state} = {reply.payload!r}, want {count}"


def assert_unsupported(port: int, must_contain: list[str], what: str,
                       keys=("linux_status[tcp_status,LISTEN]", "linux_status[tcp_summary]",
                             "linux_status[listen_discovery]")) -> str:
    message = ""
    for key in keys:
        reply = ask(port, key)
        assert reply.kind == "notsupported", f"{what}: {key} answered {reply.payload!r}"
        message = reply.message.decode("utf-8", "replace")
        for part in must_contain:
            assert part in message, f"{what}: {key}: {part!r} not in {message!r}"
    return message


def test_tables_present_missing_and_broken(fault_agent, net_dir, tmp_path, figures):
    port = fault_agent.cfg.port
    tcp = str(net_dir / "tcp")
    tcp6 = str(net_dir / "tcp6")
    messages = {}

    # Real fixtures: every count as captured.
    for fixture in ("mixed-small", "wide-12k"):
        use(net_dir, FIXTURES / fixture / "tcp", FIXTURES / fixture / "tcp6")
        assert_counts(port, expected_counts(fixture), fixture)
        fault_agent.assert_unchanged(fixture)

    # tcp6 absent (IPv6 disabled): IPv4 sockets still counted, exactly.
    use(net_dir, FIXTURES / "mixed-small" / "tcp", None)
    v4 = count_file(FIXTURES / "mixed-small" / "tcp")
    assert v4["LISTEN"] > 0 and v4["ESTABLISHED"] > 0
    assert_counts(port, v4, "tcp6 absent")
    fault_agent.assert_unchanged("tcp6 absent")

    # tcp absent / a directory / a symlink loop: the path and the OS error.
    use(net_dir, None, FIXTURES / "mixed-small" / "tcp6")
    messages["tcp absent"] = assert_unsupported(
        port, [tcp, "No such file or directory"], "tcp absent")
    fault_agent.assert_unchanged("tcp absent")

    (net_dir / "tcp").mkdir()
    messages["tcp is a directory"] = assert_unsupported(
        port, [tcp, "Is a directory"], "tcp is a directory")
    fault_agent.assert_unchanged("tcp is a directory")
    (net_dir / "tcp").rmdir()

    os.symlink("tcp", net_dir / "tcp")
    messages["tcp symlink loop"] = assert_unsupported(
        port, [tcp, "symbolic links"], "tcp symlink loop")
    fault_agent.assert_unchanged("tcp symlink loop")
    (net_dir / "tcp").unlink()

    # Malformed tables: the path and the line.
    # The line numbers are the fixtures' `expected` (README: 1-based, header = line 1).
    for fixture, line in (("truncated-last-line", 25), ("garbage", 5), ("bad-state", 4),
                          ("empty", 1)):
        use(net_dir, FIXTURES / fixture / "tcp", FIXTURES / fixture / "tcp6")
        messages[fixture] = assert_unsupported(port, [tcp, f"line {line}"], fixture)
        assert re.search(rf"line {line}(?!\d)", messages[fixture]), messages[fixture]
        fault_agent.assert_unchanged(fixture)

    junk = tmp_path / "junk"
    junk.write_bytes(bytes(range(256)) * 400)  # 100 KiB of every byte value
    use(net_dir, junk, FIXTURES / "mixed-small" / "tcp6")
    messages["binary junk"] = assert_unsupported(port, [tcp, "line 1"], "binary junk")
    fault_agent.assert_unchanged("binary junk")

    long_line = tmp_path / "long"
    long_line.write_text(HEADER4 + LINE4 + "   1: " + "0" * 200_000 + "\n")
    use(net_dir, long_line, FIXTURES / "mixed-small" / "tcp6")
    messages["line longer than the buffer"] = assert_unsupported(
        port, [tcp, "line 3"], "long line")
    fault_agent.assert_unchanged("long line")

    bad6 = tmp_path / "bad6"
    bad6.write_text((FIXTURES / "mixed-small" / "tcp6").read_text().replace(" 0A ", " 0Z ", 1))
    use(net_dir, FIXTURES / "mixed-small" / "tcp", bad6)
    messages["bad tcp6"] = assert_unsupported(port, [tcp6, "line "], "bad tcp6")
    fault_agent.assert_unchanged("bad tcp6")

    # Healthy again: the workers recovered.
    use(net_dir, FIXTURES / "mixed-small" / "tcp", FIXTURES / "mixed-small" / "tcp6")
    assert_counts(port, expected_counts("mixed-small"), "recovered")
    fault_agent.assert_unchanged("recovered")
    figures.update(messages={k: v[:160] for k, v in messages.items()},
                   agent_pids=fault_agent.pids())


class Trickle(threading.Thread):
    """Opens the FIFO for writing (blocks until the module opens it for reading) and writes
    the header, then one valid socket line every `interval`, for at most `duration`,
    stopping when the reader goes away."""

    def __init__(self, fifo: Path, duration: float, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.fifo = fifo
        self.duration = duration
        self.interval = interval
        self.lines = 0
        self.reader_left = False
        self.opened_at: float | None = None

    def run(self) -> None:
        with open(self.fifo, "wb", buffering=0) as f:
            self.opened_at = time.monotonic()
            end = self.opened_at + self.duration
            try:
                f.write(HEADER4.encode())
                while time.monotonic() < end:
                    f.write(LINE4.encode())
                    self.lines += 1
                    time.sleep(self.interval)
            except BrokenPipeError:
                self.reader_left = True


def test_scan_past_the_timeout_stops_and_fails(fault_agent, net_dir, figures):
    port = fault_agent.cfg.port
    results = []
    for key in ("linux_status[tcp_status,LISTEN]", "linux_status[tcp_summary]"):
        use(net_dir, None, None)
        fifo = net_dir / "tcp"
        os.mkfifo(fifo)
        feeder = Trickle(fifo, duration=TIMEOUT + 4.0)
        feeder.start()
        started = time.monotonic()
        reply = ask(port, key)
        elapsed = time.monotonic() - started
        feeder.join(timeout=TIMEOUT + 10)
        if feeder.is_alive() and feeder.opened_at is None:
            # The module never opened the FIFO: release the feeder's open() and fail.
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            feeder.join(timeout=5)
            raise AssertionError(f"{key}: the module never read {fifo}: {reply}")
        assert not feeder.is_alive(), "the feeder did not stop"
        assert reply.kind == "notsupported", f"{key}: answered {reply.payload!r} from a FIFO"
        message = reply.message.decode("utf-8", "replace")
        assert "Timeout" in message and str(fifo) in message, message
        # Stopped by the module's clock (after ~Timeout), not by the feeder running dry.
        assert TIMEOUT <= elapsed < TIMEOUT + 2.0, f"answered after {elapsed:.2f} s"
        assert feeder.reader_left, "the module kept reading until the feeder stopped"
        fault_agent.assert_unchanged(f"timeout on {key}")
        results.append({"key": key, "elapsed_s": round(elapsed, 2),
                        "lines_fed": feeder.lines, "message": message[:160]})
        fifo.unlink()

    # The worker that gave up answers normally afterwards.
    use(net_dir, FIXTURES / "mixed-small" / "tcp", FIXTURES / "mixed-small" / "tcp6")
    assert_counts(port, expected_counts("mixed-small"), "after the timeouts")
    fault_agent.assert_unchanged("after the timeouts")
    figures.update(timeouts=results, agent_timeout_s=TIMEOUT)
