"""The one client of Zabbix's ZBXD passive-check protocol for every suite and bench/*.py
(no zabbix_get, no fork per request).

Protocol (agent 6.0/7.0 passive checks): the request is `ZBXD\\x01`, the payload length as
8 bytes little-endian (two uint32: data length, reserved), then the key. The reply has the
same header; a failed check's payload is `ZBX_NOTSUPPORTED\\0<message>`. The agent serves one
request per connection and closes it after replying.

`run_requests()` sends many keys over up to `concurrency` simultaneous connections (asyncio,
one request per connection, the next connection opened as soon as one finishes) and returns
one `Reply` per key, in order. After the agent's close, the client closes with SO_LINGER 0
(a reset): the agent's side of the finished connection then leaves no TIME_WAIT socket, so a
long run does not fill the namespace's socket table (which the module scans on every
request) with hundreds of thousands of TIME_WAIT entries.

`check()` is one blocking plain check, `json_check()` one 7.0 server's JSON check (with an
item timeout); `frame()` and `parse_reply()` are the bytes on the wire for callers that
drive their own sockets (bench/bench.py's simultaneous checks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import socket
import traceback
import struct
import time
from typing import Iterable, Sequence

HEADER = b"ZBXD\x01"
NOTSUPPORTED = b"ZBX_NOTSUPPORTED\x00"
# Replies larger than this are a bug for this module's keys.
MAX_REPLY = 16 * 1024 * 1024


@dataclasses.dataclass
class Reply:
    """What came back for one key."""

    # "value", "notsupported", "closed" (no reply at all), "bad" (protocol error), "timeout"
    kind: str
    payload: bytes = b""
    message: bytes = b""  # for notsupported
    error: str = ""  # for closed/bad
    elapsed: float = 0.0


def frame(key: bytes) -> bytes:
    return HEADER + struct.pack("<II", len(key), 0) + key


def parse_reply(data: bytes) -> Reply:
    """Classifies the whole byte stream received on one connection."""
    if not data:
        return Reply("closed", error="connection closed without a reply")
    if len(data) < 13 or not data.startswith(HEADER):
        return Reply("bad", payload=data[:200], error="reply does not start with ZBXD\\x01 header")
    length, reserved = struct.unpack("<II", data[5:13])
    payload = data[13:]
    if len(payload) != length:
        return Reply(
            "bad", payload=data[:200],
            error=f"header says {length} bytes, got {len(payload)} (reserved {reserved})",
        )
    if payload.startswith(NOTSUPPORTED):
        return Reply("notsupported", payload=payload, message=payload[len(NOTSUPPORTED):])
    return Reply("value", payload=payload)


def _receive_all(conn: socket.socket) -> bytes:
    """Everything the agent sends on `conn` until it closes (at most MAX_REPLY bytes)."""
    data = bytearray()
    while chunk := conn.recv(65536):
        data.extend(chunk)
        if len(data) > MAX_REPLY:
            raise ValueError(f"reply larger than {MAX_REPLY} bytes")
    return bytes(data)


def check(port: int, key: str, timeout: float = 10.0, host: str = "127.0.0.1") -> tuple[str, str]:
    """One blocking passive check: ("value", text) or ("notsupported", message); a malformed
    reply fails the caller. The agent closes the connection after its reply (its side then
    sits in TIME_WAIT). Network errors (OSError) reach the caller."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(frame(key.encode()))
        data = _receive_all(conn)
    reply = parse_reply(data)
    assert reply.kind in ("value", "notsupported"), (
        f"bad reply to {key!r}: {reply.error}: {data[:100]!r}"
    )
    if reply.kind == "notsupported":
        return "notsupported", reply.message.decode(errors="replace")
    if reply.payload == NOTSUPPORTED.rstrip(b"\x00"):
        return "notsupported", ""
    return "value", reply.payload.decode(errors="replace")


def json_check(port: int, key: str, item_timeout: str, timeout: float = 10.0,
               host: str = "127.0.0.1") -> dict:
    """One passive check as a 7.0 server sends it (JSON, with the item's own timeout): the
    answer's object, {"value": ...} or {"error": ...}."""
    item = {"key": key, "timeout": item_timeout}
    body = json.dumps({"request": "passive checks", "data": [item]})
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(frame(body.encode()))
        data = _receive_all(conn)
    return json.loads(data[13:])["data"][0]


def _abort_close(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.close()


async def request(host: str, port: int, key: bytes, timeout: float) -> Reply:
    """One passive check on a new connection; never raises for network trouble."""
    started = time.monotonic()
    received = bytearray()
    writer = None
    failure: BaseException | None = None

    async def exchange() -> None:
        nonlocal writer
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(frame(key))
        try:
            await writer.drain()
        except ConnectionError:
            pass  # the agent may answer and close before reading all of a huge request
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            received.extend(chunk)
            if len(received) > MAX_REPLY:
                raise ValueError(f"reply larger than {MAX_REPLY} bytes")

    try:
        await asyncio.wait_for(exchange(), timeout)
    except (OSError, asyncio.TimeoutError, ValueError) as e:
        failure = e
    finally:
        if writer is not None:
            _abort_close(writer)
    reply = parse_reply(bytes(received))
    if isinstance(failure, asyncio.TimeoutError):
        reply = Reply("timeout", payload=bytes(received[:200]), error=f"no reply within {timeout} s")
    elif failure is not None and reply.kind not in ("value", "notsupported"):
        # A reset after a complete reply is fine; anything else is reported.
        reply.error = f"{reply.error}; {failure!r}"
    reply.elapsed = time.monotonic() - started
    return reply


async def _run(host: str, port: int, keys: Sequence[bytes], concurrency: int,
               timeout: float) -> list[Reply]:
    results: list[Reply | None] = [None] * len(keys)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(keys):
            i = next_index
            next_index += 1
            results[i] = await request(host, port, keys[i], timeout)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r for r in results if r is not None]


def run_requests(port: int, keys: Sequence[bytes], concurrency: int = 8,
                 timeout: float = 15.0, host: str = "127.0.0.1") -> list[Reply]:
    """Sends every key (one connection each, `concurrency` at a time); replies in order."""
    return asyncio.run(_run(host, port, keys, concurrency, timeout))


def run_for(port: int, keys: Sequence[bytes], seconds: float, concurrency: int,
            timeout: float = 15.0, host: str = "127.0.0.1") -> tuple[list[tuple[bytes, Reply]], float]:
    """Cycles through `keys` for `seconds` with `concurrency` connections in flight.
    Returns ((key, reply) for every request, elapsed seconds)."""

    async def main() -> tuple[list[tuple[bytes, Reply]], float]:
        done: list[tuple[bytes, Reply]] = []
        started = time.monotonic()
        end = started + seconds
        counter = 0

        async def worker(offset: int) -> None:
            nonlocal counter
            while time.monotonic() < end:
                key = keys[(counter + offset) % len(keys)]
                counter += 1
                done.append((key, await request(host, port, key, timeout)))

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return done, time.monotonic() - started

    return asyncio.run(main())


def one(port: int, key: bytes | str, timeout: float = 15.0) -> Reply:
    if isinstance(key, str):
        key = key.encode()
    return run_requests(port, [key], concurrency=1, timeout=timeout)[0]


def in_processes(target, arguments: Sequence[tuple], timeout: float) -> list:
    """Runs target(*args) for each args in its own forked process (the Python client is the
    bottleneck of one process); returns the results in order. A child's exception fails
    the caller with the child's traceback."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    def child(index: int, args: tuple) -> None:
        try:
            queue.put((index, True, target(*args)))
        except BaseException:  # noqa: BLE001 - reported to the parent
            queue.put((index, False, traceback.format_exc()))

    processes = [context.Process(target=child, args=(i, a)) for i, a in enumerate(arguments)]
    for p in processes:
        p.start()
    results: dict[int, object] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(results) < len(processes):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"client processes did not finish within {timeout} s"
            index, ok, value = queue.get(timeout=remaining)
            assert ok, f"client process {index} failed:\n{value}"
            results[index] = value
    finally:
        for p in processes:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    return [results[i] for i in range(len(processes))]


def chunks(items: Iterable, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
