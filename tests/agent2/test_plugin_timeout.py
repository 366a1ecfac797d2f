"""The answer comes before the agent stops waiting, never after.

The plugin reads its tables from a test folder (the module's test-only
LINUX_STATUS_PROC_NET_DIR, passed to the agent and so to the plugin) whose `tcp` is a FIFO
fed one socket line every 20 ms and never ended: a scan that would never finish. The
plugin must answer with an error naming the agent's timeout, within that timeout, and stay
usable. The timeout comes from where each agent line takes it:

- 6.0: the agent's `Timeout` (1 s here), sent in the configure request;
- 7.0: each export request's own `timeout`: the item's timeout, which a 7.0 server sends in
  its JSON passive-check request (1 s here). A plain-text request such as 6.0's zabbix_get
  sends gets 60 s from agent 7.0.22 whatever its `Timeout`: measured here, the plugin then
  answered at 57 s, within those 60.
"""

from __future__ import annotations

import os
import threading
import time

from lib import agent2 as a2
from lib import zbxd

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
          "  timeout inode\n")
LINE = ("   0: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
        "        0 {inode} 1 0000000000000000 100 0 0 10 0\n")
NETSTAT = "TcpExt: ListenOverflows ListenDrops\nTcpExt: 0 0\n"


def trickle(fifo: str, stop: threading.Event) -> None:
    """Feeds every reader of `fifo` one line per 20 ms until it goes away."""
    inode = 1000
    while not stop.is_set():
        fd = os.open(fifo, os.O_WRONLY)  # blocks until the plugin opens it
        try:
            os.write(fd, HEADER.encode())
            while not stop.is_set():
                inode += 1
                os.write(fd, LINE.format(inode=inode).encode())
                time.sleep(0.02)
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)


def ask(line: a2.Line, port: int, key: str) -> tuple[bool, str]:
    """(value or error, text): a plain passive check for 6.0, a 7.0 server's JSON one with an
    item timeout of 1 s for 7.0."""
    if line.version == "6.0":
        reply = zbxd.one(port, key, timeout=10)
        assert reply.kind in ("value", "notsupported"), reply
        return reply.kind == "value", (reply.payload if reply.kind == "value" else reply.message).decode()
    answer = zbxd.json_check(port, key, item_timeout="1s")
    return "value" in answer, answer.get("value", answer.get("error", ""))


def test_a_scan_that_never_ends_is_answered_before_the_agent_timeout(line, make_config, env):
    cfg = make_config(settings=("SnapshotLifetime=0",), timeout=1)
    tables = cfg.directory / "procnet"
    tables.mkdir()
    os.mkfifo(tables / "tcp")
    (tables / "tcp6").write_text(HEADER)
    (tables / "netstat").write_text(NETSTAT)
    agent_env = a2.agent_env()
    agent_env["LINUX_STATUS_PROC_NET_DIR"] = f"{line.agent_dir(cfg.directory)}/procnet"
    stop = threading.Event()
    feeder = threading.Thread(target=trickle, args=(str(tables / "tcp"), stop), daemon=True)
    feeder.start()
    agent = a2.Agent2(cfg, env.get, env=agent_env).start()
    try:
        for attempt in range(3):
            # Past the feeder's next write: it notices the last reader left and starts over
            # (a reader joining the old pipe would get lines without the header).
            time.sleep(0.2)
            started = time.monotonic()
            ok, text = ask(line, cfg.port, "linux_status[tcp_status,LISTEN]")
            elapsed = time.monotonic() - started
            assert not ok and "ran past the agent Timeout of 1 s." in text, (attempt, text)
            assert elapsed < 1.0, f"answered after {elapsed:.2f} s, past the agent's 1 s"
        # Keys that do not scan still answer at once.
        ok, text = ask(line, cfg.port, "linux_status[version]")
        assert ok and text.count(".") == 2, text
        assert agent.alive() and not agent.crash_lines(), agent.describe()
    finally:
        stop.set()
        status = agent.stop()
    assert status == 0, agent.describe()
