"""Session fixtures for the template tests against real Zabbix servers.

Run as root inside a private network namespace (everything listens on 127.0.0.1 there) and
mount namespace (the frontend's configuration file stays private):

    tests/server/setup.sh       # once: servers, frontend, PHP, Chromium, 7.0 chroot, locale
    source scripts/setup
    LINUX_STATUS_SO=$PWD/target/release/liblinux_status.so \\
        unshare --net --mount -- $PYTHON -m pytest -p no:cacheprovider -q \\
        tests/server/test_template.py
    # 7.0 (test_server70.py has its own stack fixtures): unshare --net --mount -- ...

Order of events (6.0): check the environment, check the namespace is fresh and bring `lo` up,
start a sampler that records `ss -Htan` every 50 ms, bring up PostgreSQL + zabbix_server +
the PHP frontend (tests/lib/server.py), start zabbix_agentd 6.0 with the module twice (one polled by the
server, one by the proxy; tests/lib/agent.py) and a zabbix_proxy 6.0 (agents.py), build and
verify the known socket table (tests/lib/scenario.py). The active-only agent starts in
test_template.py, once its host exists. Nothing is skipped: a missing piece fails the session
with what to do.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lib import agent as agent_mod
from lib import netns as netns_mod
from lib import process
from lib import scenario as scenario_mod
from lib import server as lib_server
import agents as agents_mod

REQUIRED_ENV = ("LINUX_STATUS_SO", "ZABBIX_AGENTD", "ZABBIX_GET", "LD_LIBRARY_PATH")
SAMPLE_INTERVAL = 0.05


class Env:
    def __init__(self) -> None:
        self.so = Path(os.environ["LINUX_STATUS_SO"])
        self.agentd = os.environ["ZABBIX_AGENTD"]
        self.get = os.environ["ZABBIX_GET"]
        # tests/server/setup.sh compiles it there and exports ZABBIX_LOCPATH.
        self.locpath = Path(os.environ.get("ZABBIX_LOCPATH") or
                            lib_server.TEST_CACHE / "setup" / "locale")


@pytest.fixture(scope="session")
def env() -> Env:
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"missing environment variable(s) {', '.join(missing)}: run `source scripts/setup` "
            "and set LINUX_STATUS_SO to the built .so", pytrace=False,
        )
    e = Env()
    problems = []
    if not (e.so.is_absolute() and e.so.is_file()):
        problems.append(f"LINUX_STATUS_SO={e.so} is not an existing absolute path")
    for name, path in (("ZABBIX_AGENTD", e.agentd), ("ZABBIX_GET", e.get),
                       ("zabbix_server", lib_server.ZABBIX_SERVER)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            problems.append(f"{name}: {path} is not an executable file")
    if not Path(lib_server.FRONTEND_DIR, "api_jsonrpc.php").is_file():
        problems.append(f"no Zabbix frontend in {lib_server.FRONTEND_DIR}")
    if not (e.locpath / "en_US.UTF-8" / "LC_CTYPE").is_file():
        problems.append(f"no en_US.UTF-8 locale in {e.locpath}")
    if problems:
        pytest.fail("; ".join(problems) + " (run tests/server/setup.sh)", pytrace=False)
    version = subprocess.run([e.agentd, "-V"], check=True, capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[0]
    assert "(Zabbix) 6.0." in version, f"{e.agentd} is not agent 6.0: {version!r}"
    return e


@pytest.fixture(scope="session")
def netns(env) -> None:
    """A fresh private network namespace with its own socket hash, loopback up (see
    tests/lib/netns.py)."""
    cost = netns_mod.enter_private_namespace("unshare -n -- $PYTHON -m pytest -q tests/server")
    print(f"\n[server] {cost}")


class Snapshot:
    __slots__ = ("t", "sockets")

    def __init__(self, t: float, sockets) -> None:
        self.t = t
        self.sockets = sockets


class Sampler:
    """`ss -Htan` every SAMPLE_INTERVAL s in a thread, time-stamped with time.time() (the
    clock the server stamps values with): the oracle for values collected by the server."""

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="ss-sampler", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                t0 = time.time()
                socks = scenario_mod.ss_sockets()
                t1 = time.time()
                with self.lock:
                    # Stamp with the middle of the ss run.
                    self.snapshots.append(Snapshot((t0 + t1) / 2, socks))
                self.stopping.wait(SAMPLE_INTERVAL)
        except BaseException as e:  # reported by between()
            self.error = e

    def between(self, start: float, end: float) -> list[Snapshot]:
        assert self.error is None, f"the ss sampler died: {self.error!r}"
        with self.lock:
            return [s for s in self.snapshots if start <= s.t <= end]


@pytest.fixture(scope="session")
def sampler(netns):
    s = Sampler()
    s.thread.start()
    try:
        yield s
    finally:
        s.stopping.set()
        s.thread.join(timeout=10)


@pytest.fixture(scope="session")
def stack(env, netns, sampler):
    """The 6.0 stack of this machine (lib/server.py), plus a port for the proxy."""
    pg_port, server_port, web_port, proxy_port = agent_mod.free_ports(4)
    root = process.HostRoot()
    root.prepare()
    top = process.private_dir("zbx-stack-")
    st = lib_server.Stack("6.0", root, str(top), (pg_port, server_port, web_port),
                          dict(os.environ, LOCPATH=str(env.locpath), LANG="C"), "tests/server")
    st.proxy_port = proxy_port
    st.extra_ports = (proxy_port,)
    try:
        st.start()
        yield st
    finally:
        try:
            st.stop()
        finally:
            subprocess.run(["rm", "-rf", str(top)], timeout=60)


def passive_agent(env, stack, folder: str, label: str, avoid: tuple[int, ...] = ()):
    """A passive zabbix_agentd with the module (a generator for a fixture): on teardown no
    crash lines in its log and exit status 0 on SIGTERM (`label`: its name in those
    messages)."""
    port = agent_mod.free_port(avoid=(*scenario_mod.SCENARIO_PORTS, *stack.ports, *avoid))
    cfg = agent_mod.write_config(process.private_dir(folder), env.so, port)
    a = agent_mod.Agent(env.agentd, env.get, cfg)
    a.start()
    a.name = label
    try:
        yield a
    finally:
        try:
            a.stop_checked()
        finally:
            subprocess.run(["rm", "-rf", str(cfg.directory)], timeout=60)


@pytest.fixture(scope="session")
def agent(env, stack):
    yield from passive_agent(env, stack, "zbx-agent-", "zabbix_agentd (agent)")


@pytest.fixture(scope="session")
def proxied_agent(env, stack, agent):
    """A second passive agent with the module, polled by the proxy, not by the server."""
    yield from passive_agent(env, stack, "zbx-proxied-agent-", "zabbix_agentd (proxied agent)",
                             avoid=(agent.cfg.port,))


@pytest.fixture(scope="session")
def proxy(env, stack):
    """A real zabbix_proxy 6.0 (active) from Debian's zabbix-proxy-sqlite3, beside the agent
    binaries scripts/setup unpacked."""
    root = Path(env.agentd).parents[2]
    binary = root / "usr" / "sbin" / "zabbix_proxy"
    schema = root / "usr" / "share" / "zabbix-proxy-sqlite3" / "schema.sql.gz"
    for f in (binary, schema):
        assert f.is_file(), f"{f} missing: run `source scripts/setup`"
    stack.api.call("proxy.create", {"host": agents_mod.PROXY_NAME, "status": "5"})
    p = agents_mod.Proxy(str(binary), schema, agents_mod.PROXY_NAME, stack.proxy_port,
                         stack.server.port)
    stack.timings["zabbix_proxy"] = p.start(dict(os.environ))
    try:
        yield p
    finally:
        status = p.stop()
        subprocess.run(["rm", "-rf", str(p.dir)], timeout=60)
        assert status == 0, f"zabbix_proxy exited {status} on SIGTERM\n{p.describe()}"


@pytest.fixture(scope="session")
def scenario(stack, agent, proxied_agent, proxy):
    """The e2e suite's known socket table, verified against ss with the stack's and the
    agent's ports left out. `time_wait_wall` is when its TIME_WAIT sockets were made
    (time.time()), they vanish 60 s later."""
    sc = scenario_mod.Scenario()
    try:
        sc.build()
        sc.verify(exclude_ports=(*stack.ports, agent.cfg.port, proxied_agent.cfg.port))
        sc.time_wait_wall = time.time() - (time.monotonic() - sc.time_wait_created)
        yield sc
    finally:
        sc.close()
