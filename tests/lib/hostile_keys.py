"""Generates hostile `linux_status[...]` item keys, deterministically (seeded).

`generate(count, seed)` yields (category, key bytes). Categories:

- valid           well-formed keys of every kind (a baseline: must give values)
- misspelled      every accepted state spelling, mutated: a byte deleted, inserted,
                  replaced, swapped, doubled; case flipped; separators changed; surrounding
                  whitespace and tabs; homoglyphs and zero-width characters; substrings and
                  concatenations (`WAIT`, `LISTENLISTEN`) -- may land on a valid spelling
- first_param     the first parameter misspelled the same ways
- quotes          quoted parameters, escaped quotes, unbalanced quotes, backslashes
- nested          [arrays] inside the parameter list, nested up to 60 deep, unbalanced
- bytes           control bytes, DEL, non-ASCII UTF-8, invalid UTF-8, NUL
- empty           empty parameters in every position, `[]`, `[,]`, `[,,,,]`
- many            7 to 5,000 parameters
- long            one parameter of 100 bytes to 1 MiB (the agent reads passive requests far
                  larger than that: the tests measured 16 MiB passing)
- filters         hostile addresses, CIDRs, ports and service names for the filter keys
- tcp_ext         hostile counter names
- random          random bytes after `linux_status[`, and whole random keys
- syntax          no brackets, junk after `]`, other key names, spaces around the key
"""

from __future__ import annotations

import random
from typing import Iterator

from lib import keys

STATES = [
    "ESTABLISHED", "ESTAB", "SYN_SENT", "SYN-SENT", "SYN_RECV", "SYN-RECV", "SYN_RCVD",
    "FIN_WAIT1", "FIN-WAIT-1", "FIN_WAIT_1", "FIN_WAIT2", "FIN-WAIT-2", "FIN_WAIT_2",
    "TIME_WAIT", "TIME-WAIT", "CLOSE", "UNCONN", "CLOSED", "CLOSE_WAIT", "CLOSE-WAIT",
    "LAST_ACK", "LAST-ACK", "LISTEN", "CLOSING",
]
# Every metric of the key registry (lib/keys.json): a new key is mutated too.
FIRST = list(keys.METRICS)
COUNTERS = ["ListenOverflows", "ListenDrops", "TCPTimeouts", "SyncookiesSent"]

VALID = [
    "linux_status[tcp_status,LISTEN]",
    "linux_status[tcp_status,time-wait]",
    "linux_status[tcp_status, established ]",
    'linux_status["tcp_status","SYN_RECV"]',
    "linux_status[tcp_status,ESTAB,127.0.0.1,,,]",
    "linux_status[tcp_status,LISTEN,0.0.0.0/0,ssh,,]",
    "linux_status[tcp_status,LISTEN,::/0,,::,0]",
    "linux_status[tcp_summary]",
    "linux_status[tcp_summary,127.0.0.0/8,,,]",
    "linux_status[listen_discovery]",
    "linux_status[listen_stats]",
    "linux_status[version]",
]
# Every metric's sample from the registry, so the baseline covers each key.
VALID += [sample for sample in keys.SAMPLES.values() if sample not in VALID]

HOMOGLYPHS = {"A": "\u0410", "E": "\u0415", "O": "\u041e", "C": "\u0421", "T": "\u0422",
              "I": "\u0406", "S": "\u0405", "N": "\u039d"}
ODD = ["\t", "\r", "\n", "\x0b", "\x0c", "\x00", "\x7f", "\u200b", "\u00a0", "\ufeff",
       "\uff3f", "\u2010", "\u2013", "%s", "%n", "$(id)", "`", "'", "\\", '"', ",", "[", "]",
       "*", "?", "\U0001f600"]


def mutate(rng: random.Random, word: str) -> str:
    """One random mutation of a word (may be a no-op or land on a valid spelling)."""
    if not word:
        return rng.choice(ODD)
    i = rng.randrange(len(word))
    kind = rng.randrange(16)
    if kind == 0:
        return word[:i] + word[i + 1:]
    if kind == 1:
        return word[:i] + rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ_- 0123456789") + word[i:]
    if kind == 2:
        return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz_-") + word[i + 1:]
    if kind == 3 and len(word) > 1:
        j = min(i + 1, len(word) - 1)
        chars = list(word)
        chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
    if kind == 4:
        return word[:i] + word[i] + word[i:]
    if kind == 5:
        return "".join(c.swapcase() if rng.random() < 0.5 else c for c in word)
    if kind == 6:
        return word.replace("_", rng.choice(["-", " ", "", "__", ".", "\t"])).replace(
            "-", rng.choice(["_", " ", "", "--"]))
    if kind == 7:
        return rng.choice([" ", "  ", "\t", "\n", "\x00"]) + word + rng.choice(["", " ", "\t", "\r\n"])
    if kind == 8:
        return "".join(HOMOGLYPHS.get(c, c) if rng.random() < 0.3 else c for c in word)
    if kind == 9:
        return word[:i] + rng.choice(ODD) + word[i:]
    if kind == 10:
        a = rng.randrange(len(word))
        return word[a:rng.randrange(a, len(word) + 1)]  # a substring, possibly empty
    if kind == 11:
        return word + rng.choice(STATES)
    if kind == 12:
        return word.lower() if rng.random() < 0.5 else word.title()
    if kind == 13:
        return word * rng.randrange(2, 5)
    if kind == 14:
        return word + "\\" + rng.choice(['"', "\\", "n", "0", "x00"])
    return word


def mutated(rng: random.Random, word: str) -> str:
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        word = mutate(rng, word)
    return word


def quote(rng: random.Random, param: str) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return '"' + param.replace('"', '\\"') + '"'
    if kind == 1:
        return '"' + param  # unbalanced
    if kind == 2:
        return param + '"'
    if kind == 3:
        return '"' + param + '"' + rng.choice(["x", " ", '"', "\\"])
    if kind == 4:
        return '"\\"' + param + '\\""'
    if kind == 5:
        return " " * rng.randrange(1, 4) + '"' + param + '"' + " " * rng.randrange(0, 3)
    if kind == 6:
        return '"' + param + '\\"'
    return '"' + "\\" * rng.randrange(1, 5) + param + '"'


def nested(rng: random.Random, depth: int, leaf: str) -> str:
    text = leaf
    for _ in range(depth):
        text = "[" + rng.choice(["", "a,", leaf + ","]) + text + rng.choice(["", ",b", ","]) + "]"
    if rng.random() < 0.3:
        text = text[: rng.randrange(len(text) + 1)]  # unbalanced
    return text


HOSTILE_ADDRESSES = [
    "999.1.1.1", "1.2.3", "1.2.3.4.5", "1.2.3.4/33", "1.2.3.4/-1", "1.2.3.4/", "/8", "::/129",
    "::ffff:1.2.3.4/200", "::ffff:999.1.1.1", ":::", "1::2::3", "fe80::1%lo", "0x7f000001",
    "2130706433", "localhost", "127.1", "1.2.3.4/08", "1.2.3.4/8/8", " 1.2.3.4", "1.2.3.4 ",
    "::1/128 ", "[::1]", "a" * 300, "1." * 200, "0" * 5000, "::" + "f:" * 100,
    "10.0.0.0/4294967296", "10.0.0.0/99999999999999999999",
]
HOSTILE_PORTS = [
    "-1", "65536", "99999999999999999999", "0x16", "22.0", "1e3", "+22", " 22", "22 ", "２２",
    "ssh ", "SSH", "no-such-service", "http/tcp", "/etc/passwd", "../../etc/services", "%s",
    "s" * 2000, "0", "00022", "65535",
]


def filters_key(rng: random.Random) -> str:
    metric = rng.choice(["tcp_status", "tcp_summary"])
    params = [metric]
    if metric == "tcp_status":
        params.append(rng.choice(STATES))
    for slot in range(4):
        if rng.random() < 0.5:
            pool = HOSTILE_ADDRESSES if slot % 2 == 0 else HOSTILE_PORTS
            value = rng.choice(pool)
            if rng.random() < 0.3:
                value = mutated(rng, value)
            params.append(value)
        else:
            params.append(rng.choice(["", "127.0.0.1", "::1", "0.0.0.0/0", "22"]))
    if rng.random() < 0.2:
        params.append("extra")
    return "linux_status[" + ",".join(params) + "]"


def random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


def one(rng: random.Random) -> tuple[str, bytes]:
    category = rng.choices(
        ["valid", "misspelled", "first_param", "quotes", "nested", "bytes", "empty", "many",
         "long", "filters", "tcp_ext", "random", "syntax"],
        weights=[4, 30, 8, 8, 6, 8, 5, 3, 2, 12, 5, 5, 4],
    )[0]
    state = rng.choice(STATES)
    if category == "valid":
        key = rng.choice(VALID)
    elif category == "misspelled":
        key = f"linux_status[tcp_status,{mutated(rng, state)}]"
    elif category == "first_param":
        key = f"linux_status[{mutated(rng, rng.choice(FIRST))},{state}]"
    elif category == "quotes":
        first = quote(rng, "tcp_status") if rng.random() < 0.5 else "tcp_status"
        key = f"linux_status[{first},{quote(rng, mutated(rng, state) if rng.random() < 0.3 else state)}]"
    elif category == "nested":
        key = "linux_status[tcp_status," + nested(rng, rng.randrange(1, 60), state) + "]"
        if rng.random() < 0.3:
            key = "linux_status[" + nested(rng, rng.randrange(1, 20), "tcp_status") + "]"
    elif category == "bytes":
        raw = bytearray(state.encode())
        for _ in range(rng.randrange(1, 6)):
            raw.insert(rng.randrange(len(raw) + 1), rng.choice(
                [rng.randrange(0, 32), 0x7f, rng.randrange(0x80, 0x100), 0xc3, 0xe2, 0xff, 0]))
        first = b"tcp_status" if rng.random() < 0.8 else random_bytes(rng, 5)
        return category, b"linux_status[" + first + b"," + bytes(raw) + b"]"
    elif category == "empty":
        key = rng.choice([
            "linux_status[]", "linux_status[,]", "linux_status[" + "," * rng.randrange(2, 50) + "]",
            "linux_status[tcp_status,]", "linux_status[tcp_status,,]", "linux_status[,LISTEN]",
            "linux_status[tcp_status," + "," * rng.randrange(1, 8) + "]", "linux_status[ ]",
            'linux_status[""]', 'linux_status["",""]', "linux_status[tcp_summary,,,,]",
            "linux_status[tcp_ext,]", "linux_status[version,]", "linux_status",
            "linux_status[tcp_status, ,  ,   ]",
        ])
    elif category == "many":
        n = rng.choice([7, 8, 20, 100, 1000, rng.randrange(7, 5000)])
        params = ["tcp_status", state] + [rng.choice(["", "x", state, "1.2.3.4", "22"]) for _ in range(n - 2)]
        if rng.random() < 0.3:
            params[0] = rng.choice(FIRST)
        key = "linux_status[" + ",".join(params) + "]"
    elif category == "long":
        n = rng.choice([100, 1000, 2047, 2048, 2049, 4096, 65535, 65536, 65537, 300_000, 1 << 20])
        filler = rng.choice(["A", "LISTEN", "é", "\\", " ", "[", "0"])
        long = (filler * (n // len(filler) + 1))[:n]
        where = rng.randrange(4)
        if where == 0:
            key = f"linux_status[tcp_status,{long}]"
        elif where == 1:
            key = f"linux_status[{long},LISTEN]"
        elif where == 2:
            key = f"linux_status[tcp_status,LISTEN,{long},,,]"
        else:
            key = f"linux_status[tcp_ext,{long}]"
    elif category == "filters":
        key = filters_key(rng)
    elif category == "tcp_ext":
        name = rng.choice(COUNTERS)
        name = mutated(rng, name) if rng.random() < 0.8 else name
        key = f"linux_status[tcp_ext,{name}" + rng.choice(["]", ",x]", ",]"])
    elif category == "random":
        if rng.random() < 0.5:
            return category, b"linux_status[" + random_bytes(rng, rng.randrange(1, 200)) + b"]"
        return category, random_bytes(rng, rng.randrange(1, 300))
    else:  # syntax
        key = rng.choice([
            f"linux_status[tcp_status,{state}]junk", f"linux_status[tcp_status,{state}",
            f" linux_status[tcp_status,{state}]", f"linux_status [tcp_status,{state}]",
            f"linux_status[tcp_status,{state}]]", f"linux_status][tcp_status,{state}[",
            f"LINUX_STATUS[tcp_status,{state}]", f"linux_status.[tcp_status,{state}]",
            f"linux_status[[tcp_status,{state}]]", f"linux_status(tcp_status,{state})",
            "linux_status[tcp_status,\"LISTEN\"x]", "linux_status[tcp_status,LISTEN\n]",
        ])
    return category, key.encode("utf-8", "surrogatepass")


def generate(count: int, seed: int = 20260425) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    for _ in range(count):
        yield one(rng)
