"""Backends, snapshots and the module configuration file, on every agent line.

- `Backend=netlink` gives the same answers as `/proc` for every key (sock_diag filtered by
  state for single-state keys, full dumps otherwise);
- when netlink is refused (here: an LD_PRELOAD shim that makes socket(AF_NETLINK,
  NETLINK_SOCK_DIAG) fail with EACCES, as SELinux does without netlink_tcpdiag_socket), the
  default backend (auto) says so once and answers from /proc, exactly; a dump the kernel
  reports as failed (the shim rewrites NLMSG_DONE to -ENOENT or -ENOBUFS, or sets
  NLM_F_DUMP_INTR) is answered from /proc too, never as zeros; `Backend=netlink` turns both
  into errors; the fallback rule's two branches (for the process, for the request) each have
  a test;
- `SnapshotLifetime` makes every worker reuse one scan for that long (a snapshot shared
  through memory mapped before the fork), and 0 disables reuse;
- a bad configuration file makes the agent refuse to start, naming the file, line and
  problem.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lib import agent as ag
from lib import scenario as sc


FALLBACK_MESSAGE = "netlink sock_diag unavailable"
DUMP_FAILED_MESSAGE = "linux_status: a netlink sock_diag dump failed"

KEYS = [
    "linux_status[tcp_summary]",
    *[f"linux_status[tcp_status,{state}]" for state in sc.KERNEL_STATES],
    "linux_status[tcp_status,ESTABLISHED,127.0.0.1,20003]",
    "linux_status[tcp_summary,,,::1]",
    "linux_status[tcp_summary,,20006]",
    "linux_status[listen_discovery]",
    "linux_status[listen_stats]",
]


def config(tmp_path: Path, env, name: str, settings: str | None, **kwargs) -> ag.AgentConfig:
    port = ag.free_port(avoid=sc.SCENARIO_PORTS)
    return ag.write_config(tmp_path / name, env.so, port, module_settings=settings, **kwargs)


def comparable(result: ag.ItemResult):
    """The value with the parts that move on their own (kernel counters) taken out."""
    assert result.supported, result.raw
    if result.value.startswith("{"):
        value = json.loads(result.value)
        value.pop("ListenOverflows", None)
        value.pop("ListenDrops", None)
        return value
    return result.value


@pytest.mark.parametrize("key", KEYS)
def test_netlink_answers_like_proc(key, scenario, agentd, env, tmp_path):
    proc = config(tmp_path, env, "proc", "Backend=proc\nSnapshotLifetime=0\n")
    netlink = config(tmp_path, env, "netlink", "Backend=netlink\nSnapshotLifetime=0\n")
    for _ in range(5):
        before = {s.ident for s in sc.ss_sockets()}
        from_proc = ag.test_key(agentd, proc, key)
        from_netlink = ag.test_key(agentd, netlink, key)
        if before == {s.ident for s in sc.ss_sockets()}:
            break
    assert comparable(from_netlink) == comparable(from_proc), key


def shimmed(cfg: ag.AgentConfig, shim: Path, mode: str) -> dict[str, str]:
    return {**ag.agent_env(cfg), "LD_PRELOAD": str(shim), "LS_SHIM": mode}


def run_test_mode(agentd: str, cfg: ag.AgentConfig, key: str, environment) -> tuple[ag.ItemResult, str]:
    """`zabbix_agentd -t KEY` with an environment; the result and everything printed."""
    proc = subprocess.run(
        [agentd, "-c", str(cfg.path), "-t", key],
        capture_output=True, text=True, timeout=30, env=environment,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("linux_status"))
    return ag.parse_item_line(line), output


def exact_under(agentd, cfg, environment, key):
    """The module's answer for KEY bracketed by ss (repeated while the table moved)."""
    for _ in range(5):
        before = sc.ss_sockets()
        result, output = run_test_mode(agentd, cfg, key, environment)
        if {s.ident for s in before} == {s.ident for s in sc.ss_sockets()}:
            return result, output, sc.count_states(before)
    pytest.fail("the socket table kept changing around the query")


@pytest.mark.parametrize("settings", ["", "Backend=auto\nSnapshotLifetime=0\n"],
                         ids=["shipped-defaults", "auto"])
def test_refused_netlink_falls_back_to_proc_and_says_so_once(
    settings, scenario, agentd, env, tmp_path, shim, agent_ports
):
    cfg = config(tmp_path, env, "refused", settings)
    environment = shimmed(cfg, shim, "refuse")

    # -t: one process, one message, the right answer.
    result, output, ss_counts = exact_under(agentd, cfg, environment, "linux_status[tcp_summary]")
    assert output.count(FALLBACK_MESSAGE) == 1, output
    assert "Permission denied" in output, output
    summary = json.loads(result.value)
    assert {k: summary[k] for k in sc.KERNEL_STATES} == ss_counts
    info, _ = run_test_mode(agentd, cfg, "linux_status[info]", environment)
    info = json.loads(info.value)
    assert (info["backend_configured"], info["backend_in_use"]) == ("auto", "proc"), info
    assert "Permission denied" in info["fallback_reason"], info

    # A running agent: the probe in the main process decides before the fork, so the log
    # holds the message once however many workers answer.
    agent = ag.Agent(agentd, env.get, cfg)
    agent_ports.append(cfg.port)
    start_with_env(agent, environment)
    try:
        for _ in range(6):
            time.sleep(0.05 if "SnapshotLifetime=0" in settings else 1.1)
            result = ag.zabbix_get(env.get, cfg.port, "linux_status[tcp_status,LISTEN]")
            assert result.value == str(sc.count_states(sc.ss_sockets())["LISTEN"]), result.raw
        text = agent.log_text() + agent.stdout_path.read_text(errors="replace")
        assert text.count(FALLBACK_MESSAGE) == 1, text[-3000:]
    finally:
        agent.stop()


def test_refused_netlink_with_backend_netlink_is_an_error_never_a_number(
    scenario, agentd, env, tmp_path, shim
):
    cfg = config(tmp_path, env, "forced", "Backend=netlink\nSnapshotLifetime=0\n")
    environment = shimmed(cfg, shim, "refuse")
    for key in ("linux_status[tcp_status,LISTEN]", "linux_status[tcp_summary]"):
        result, output = run_test_mode(agentd, cfg, key, environment)
        assert not result.supported, result.raw
        assert "Netlink sock_diag is unavailable" in result.message, result.raw
        assert "Backend=auto" in result.message, result.raw
        assert "requests will fail" in output, output


@pytest.mark.parametrize("mode,reason", [("done-enoent", "No such file or directory"),
                                         ("dump-intr", "interrupted")])
def test_a_failed_dump_is_answered_from_proc_never_as_zeros(
    mode, reason, scenario, agentd, env, tmp_path, shim
):
    """The kernel ends a failed dump with a negative errno in NLMSG_DONE, or flags it
    NLM_F_DUMP_INTR: under the shipped default (auto) the answer is /proc's, exact; the log
    says why, once per process."""
    cfg = config(tmp_path, env, f"failed-{mode}", "SnapshotLifetime=0\n")
    environment = shimmed(cfg, shim, mode)
    for state in ("ESTABLISHED", "LISTEN", "TIME_WAIT"):
        result, output, ss_counts = exact_under(
            agentd, cfg, environment, f"linux_status[tcp_status,{state}]"
        )
        assert result.uint() == ss_counts[state], (state, result.raw, output)
        assert ss_counts[state] > 0, f"the scenario has {state} sockets"
        assert reason in output, output
        said = output.count(FALLBACK_MESSAGE) + output.count(DUMP_FAILED_MESSAGE)
        assert said <= 1, output
    result, output, ss_counts = exact_under(agentd, cfg, environment, "linux_status[tcp_summary]")
    summary = json.loads(result.value)
    assert {k: summary[k] for k in sc.KERNEL_STATES} == ss_counts, output


@pytest.mark.parametrize("mode,reason", [("done-enoent", "No such file or directory"),
                                         ("dump-intr", "interrupted")])
def test_a_failed_dump_with_backend_netlink_is_an_error(
    mode, reason, scenario, agentd, env, tmp_path, shim
):
    cfg = config(tmp_path, env, f"forced-{mode}", "Backend=netlink\nSnapshotLifetime=0\n")
    environment = shimmed(cfg, shim, mode)
    for key in ("linux_status[tcp_status,ESTABLISHED]", "linux_status[tcp_summary]",
                "linux_status[listen_discovery]"):
        result, _ = run_test_mode(agentd, cfg, key, environment)
        assert not result.supported, f"{mode}: {key} gave {result.raw}"
        assert result.message.startswith("Netlink sock_diag"), result.raw
        assert reason in result.message, result.raw
        assert "Backend=netlink allows no fallback" in result.message, result.raw


# The fallback rule (README, "The fallback rule"): an answer that means sock_diag cannot serve here (the
# socket refused, or the kernel's ENOENT, EOPNOTSUPP, EPROTONOSUPPORT, EAFNOSUPPORT, EACCES,
# EPERM) moves Backend=auto to /proc for the rest of the process; any other failed dump is
# answered from /proc for that request only, and the next request asks netlink again.

@contextlib.contextmanager
def shimmed_agent(agentd, env, cfg, shim, mode, agent_ports):
    """A running agent under the shim; yields it and its log text (read after the body)."""
    agent = ag.Agent(agentd, env.get, cfg)
    agent_ports.append(cfg.port)
    start_with_env(agent, shimmed(cfg, shim, mode))
    try:
        yield agent
    finally:
        agent.stop()


def assert_counts_exact(env, cfg, rounds: int) -> None:
    """Per-state answers of the running agent equal ss taken before and after each (retried
    while the table moved: zabbix_get's own connections pass through CLOSE_WAIT on the
    agent's side; ESTABLISHED is left out, the query's own connection is one more there)."""
    for _ in range(rounds):
        for state in ("LISTEN", "CLOSE_WAIT"):
            for _attempt in range(10):
                before = sc.count_states(sc.ss_sockets())[state]
                result = ag.zabbix_get(env.get, cfg.port, f"linux_status[tcp_status,{state}]")
                if before == sc.count_states(sc.ss_sockets())[state]:
                    break
                time.sleep(0.05)
            assert result.value == str(before), (state, result.raw)


def agent_output(agent) -> str:
    return agent.log_text() + agent.stdout_path.read_text(errors="replace")


def test_the_fallback_rule_not_here_is_for_the_rest_of_the_process(
    scenario, agentd, env, tmp_path, shim, agent_ports
):
    cfg = config(tmp_path, env, "rule-enoent", "SnapshotLifetime=0\n")
    with shimmed_agent(agentd, env, cfg, shim, "done-enoent", agent_ports) as agent:
        assert_counts_exact(env, cfg, 4)
        info = json.loads(ag.zabbix_get(env.get, cfg.port, "linux_status[info]").value)
        assert info["backend_in_use"] == "proc", info
        assert "No such file or directory" in info["fallback_reason"], info
        text = agent_output(agent)
        assert text.count(FALLBACK_MESSAGE) == 1, text[-3000:]
        assert DUMP_FAILED_MESSAGE not in text, text[-3000:]


def test_the_fallback_rule_a_transient_failure_is_for_that_request_only(
    scenario, agentd, env, tmp_path, shim, agent_ports
):
    # Every dump fails: each answer is /proc's, exact, and the process stays on netlink.
    cfg = config(tmp_path, env, "rule-enobufs", "SnapshotLifetime=0\n")
    environment = shimmed(cfg, shim, "done-enobufs")
    for state in ("LISTEN", "ESTABLISHED", "TIME_WAIT"):
        result, output, ss_counts = exact_under(
            agentd, cfg, environment, f"linux_status[tcp_status,{state}]"
        )
        assert result.uint() == ss_counts[state], (state, result.raw, output)
        assert "No buffer space available" in output, output
        assert FALLBACK_MESSAGE not in output, output
    # Only the first dump of each process fails: the start-up probe says so, every answer is
    # exact, and netlink stays in use (a refusal would have moved the agent to /proc).
    cfg = config(tmp_path, env, "rule-enobufs-first", "SnapshotLifetime=0\n")
    with shimmed_agent(agentd, env, cfg, shim, "done-enobufs-first", agent_ports) as agent:
        assert_counts_exact(env, cfg, 6)
        for _ in range(4):
            info = json.loads(ag.zabbix_get(env.get, cfg.port, "linux_status[info]").value)
            assert (info["backend_in_use"], info["fallback_reason"]) == ("netlink", None), info
        text = agent_output(agent)
        assert "the start-up probe failed once" in text, text[-3000:]
        assert FALLBACK_MESSAGE not in text, text[-3000:]


def start_with_env(agent: ag.Agent, environment: dict[str, str]) -> None:
    """Agent.start with an extra environment (the LD_PRELOAD shim)."""
    original = ag.agent_env
    ag.agent_env = lambda cfg: environment
    try:
        agent.start()
    finally:
        ag.agent_env = original


def serving_pids(log: str, key: str) -> list[int]:
    """The pids of the workers that logged "Requested [KEY]" (DebugLevel=4), in order."""
    pids = []
    for line in log.splitlines():
        head, _, rest = line.partition(":")
        if rest and f"Requested [{key}]" in rest and head.strip().isdigit():
            pids.append(int(head))
    return pids


@pytest.mark.parametrize(
    "settings,lifetime",
    [("SnapshotLifetime=4000\n", 4.0), (None, 1.0)],
    ids=["lifetime-4000", "shipped-defaults"],
)
def test_snapshot_lifetime_one_scan_shared_by_every_worker_then_expires(
    settings, lifetime, scenario, agentd, env, tmp_path, agent_ports
):
    """One snapshot serves every worker for the lifetime, with the configured lifetime and
    with the shipped defaults (no configuration file: auto, that is netlink dumps of the one
    state, and 1000 ms). Each passive check leaves a TIME_WAIT on the agent port, yet the
    checks within the lifetime all give the first one's count although the agent log shows
    that at least two different workers answered them (a per-worker cache would have
    rescanned and seen the new TIME_WAITs), and one after the lifetime scans again."""
    cfg = config(tmp_path, env, "snapshot", settings, start_agents=3, debug_level=4)
    agent = ag.Agent(agentd, env.get, cfg)
    agent_ports.append(cfg.port)
    agent.start()
    key = "linux_status[tcp_status,TIME_WAIT]"
    try:
        for attempt in range(5):
            time.sleep(lifetime + 0.5)  # let any earlier scan expire
            log_before = len(agent.log_text())
            started = time.monotonic()
            answers = [int(ag.zabbix_get(env.get, cfg.port, key).value) for _ in range(6)]
            reused_within = time.monotonic() - started
            ss_now = sc.count_states(sc.ss_sockets())["TIME_WAIT"]
            workers = set(serving_pids(agent.log_text()[log_before:], key))
            if reused_within < lifetime * 0.8 and len(workers) >= 2:
                break
        assert reused_within < lifetime * 0.8, "the queries came too late to test reuse"
        assert len(workers) >= 2, f"the checks all reached one worker: {workers}"
        assert workers <= set(agent.pids()[1]), (workers, agent.pids())
        assert len(set(answers)) == 1, f"one scan serves every worker: {answers}"
        assert ss_now >= answers[0] + 5, "the queries' TIME_WAITs exist but were not rescanned"
        time.sleep(lifetime + 0.5)
        before = sc.count_states(sc.ss_sockets())["TIME_WAIT"]
        fresh = int(ag.zabbix_get(env.get, cfg.port, key).value)
        assert fresh == before, "after the lifetime a worker scans again"
        info = json.loads(ag.zabbix_get(env.get, cfg.port, "linux_status[info]").value)
        assert info["snapshot_lifetime_ms"] == int(lifetime * 1000), info
        assert info["backend_in_use"] == "netlink", info
    finally:
        agent.stop()


@pytest.mark.parametrize(
    "settings,line,problem",
    [
        ("Backend=ebpf\n", 1, 'Backend must be auto, proc or netlink, got "ebpf"'),
        ("# fine\nSnapshotLifetime=soon\n", 2, "SnapshotLifetime must be milliseconds"),
        ("Backend=proc\n\nTimeout=3\n", 3, 'unknown parameter "Timeout"'),
    ],
)
def test_bad_configuration_stops_the_agent_with_a_clear_message(
    settings, line, problem, agentd, env, tmp_path
):
    cfg = config(tmp_path, env, "bad", settings)
    expected = f"linux_status: {cfg.module_config} line {line}: {problem}"
    test_mode = subprocess.run(
        [agentd, "-c", str(cfg.path), "-t", "linux_status[version]"],
        capture_output=True, text=True, timeout=30, env=ag.agent_env(cfg),
    )
    assert test_mode.returncode != 0, test_mode.stdout
    assert expected in test_mode.stdout + test_mode.stderr
    daemon = subprocess.run(
        [agentd, "-c", str(cfg.path), "-f"],
        capture_output=True, text=True, timeout=30, env=ag.agent_env(cfg),
    )
    assert daemon.returncode != 0, "the agent must refuse to start"
    log = cfg.log_file.read_text(errors="replace") if cfg.log_file.exists() else ""
    assert expected in daemon.stdout + daemon.stderr + log, log[-2000:]


def test_a_named_configuration_that_does_not_exist_stops_the_agent(agentd, env, tmp_path):
    cfg = config(tmp_path, env, "missing", "")
    cfg.module_config.unlink()
    test_mode = subprocess.run(
        [agentd, "-c", str(cfg.path), "-t", "linux_status[version]"],
        capture_output=True, text=True, timeout=30, env=ag.agent_env(cfg),
    )
    output = test_mode.stdout + test_mode.stderr
    assert test_mode.returncode != 0, output
    assert (f"linux_status: cannot read {cfg.module_config} (named by LINUX_STATUS_CONFIG): "
            "No such file or directory") in output, output


# Each path kind that is not a regular file, made by the test; the agent must stop at once
# naming what it is (a FIFO used to hang start-up forever, /dev/zero to grow until OOM).
def _make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _make_socket(path: Path) -> Path:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    _LISTENERS.append(listener)
    return path


_LISTENERS: list[socket.socket] = []
NOT_A_FILE = {
    "fifo": (_make_fifo, "a FIFO (named pipe)"),
    "dev-zero": (lambda _: Path("/dev/zero"), "a character device"),
    "dev-urandom": (lambda _: Path("/dev/urandom"), "a character device"),
    "directory": (lambda path: (path.mkdir(), path)[1], "a directory"),
    "socket": (_make_socket, "a socket"),
}


@pytest.mark.parametrize("kind", NOT_A_FILE)
def test_a_configuration_path_that_is_not_a_file_stops_the_agent_at_once(
    kind, agentd, env, tmp_path
):
    cfg = config(tmp_path, env, f"kind-{kind}", "")
    cfg.module_config.unlink()
    make, what = NOT_A_FILE[kind]
    path = make(tmp_path / f"kind-{kind}" / "not-a-file")
    environment = {**ag.agent_env(cfg), "LINUX_STATUS_CONFIG": str(path)}
    started = time.monotonic()
    # Bounded: a blocking open of the FIFO would never return (the timeout fails the test).
    proc = subprocess.run([agentd, "-c", str(cfg.path), "-t", "linux_status[version]"],
                          capture_output=True, text=True, timeout=20, env=environment)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert (f"linux_status: cannot read {path}: it is {what}, not a regular file; "
            "name a configuration file") in output, output
    assert time.monotonic() - started < 10, "start-up must not wait on the path"
    assert len(output) < 4096, "no runaway output"


def test_an_oversized_configuration_is_refused_naming_the_limit(agentd, env, tmp_path):
    cfg = config(tmp_path, env, "oversized", "")
    cfg.module_config.write_text("#" + "x" * (16 * 1024) + "\nBackend=proc\n")
    proc = subprocess.run([agentd, "-c", str(cfg.path), "-t", "linux_status[version]"],
                          capture_output=True, text=True, timeout=20, env=ag.agent_env(cfg))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert (f"linux_status: cannot read {cfg.module_config}: larger than 16384 bytes, "
            "the limit for this file") in output, output


@pytest.mark.parametrize(
    "value,shown",
    [
        (b"Backend=proc\0", r'got "proc\x00"'),
        (b"Backend=\x1b[2Jproc", r'got "\x1b[2Jproc"'),
        (b"\xef\xbb\xbfBackend=proc", r'unknown parameter "\xef\xbb\xbfBackend"'),
        (b"Backend=" + b"A" * 15000, 'got "' + "A" * 64 + '...(15000 bytes)"'),
    ],
    ids=["nul", "escape", "bom", "long"],
)
def test_echoed_configuration_values_are_bounded_and_escaped(value, shown, agentd, env, tmp_path):
    cfg = config(tmp_path, env, "echo", "")
    cfg.module_config.write_bytes(value + b"\n")
    proc = subprocess.run([agentd, "-c", str(cfg.path), "-t", "linux_status[version]"],
                          capture_output=True, timeout=20, env=ag.agent_env(cfg))
    output = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
    assert proc.returncode != 0, output
    assert f"linux_status: {cfg.module_config} line 1: " in output, output
    assert shown in output, output
    raw = proc.stdout + proc.stderr
    assert b"\x00" not in raw and b"\x1b" not in raw and b"\xef\xbb\xbf" not in raw, raw[-500:]
    assert len(raw) < 4096, len(raw)


@pytest.fixture(params=["built", "under-a-mode-700-folder"])
def module_at(request, env, tmp_path) -> Path:
    """The module where the build left it, or a copy under a folder only root may enter (a
    clone under `mkdir -m 700`): tests that run the agent as another user pass from both."""
    if request.param == "built":
        return env.so
    private = tmp_path / "private"
    (private / "clone").mkdir(parents=True)
    private.chmod(0o700)
    copy = private / "clone" / env.so.name
    copy.write_bytes(env.so.read_bytes())
    return copy


def test_an_unreadable_configuration_names_the_agent_user(agentd, env, module_at):
    """The module reads its file after the agent dropped root: a file the agent's user cannot
    read stops init with the file, the OS error and who must be able to read it. Run as
    `nobody` (what `User=zabbix` is on a packaged agent)."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="linux-status-perm-"))
    try:
        directory.chmod(0o755)
        module = ag.staged_for_nobody(module_at, directory / "module")
        cfg = ag.write_config(directory, module, ag.free_port(avoid=sc.SCENARIO_PORTS),
                              module_settings="Backend=auto\n")
        cfg.path.chmod(0o644)
        cfg.module_config.chmod(0o600)
        proc = subprocess.run(
            [*ag.AS_NOBODY, agentd, "-c", str(cfg.path), "-t", "linux_status[version]"],
            capture_output=True, text=True, timeout=30, env=ag.agent_env(cfg),
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, output
        expected = (f"linux_status: cannot read {cfg.module_config}: Permission denied (os error 13); "
                    "the user the agent runs as (usually zabbix) must be able to read it")
        assert expected in output, output
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_netlink_works_for_an_unprivileged_agent_user(scenario, agentd, env, module_at):
    """The agent's own user (here `nobody`, as `zabbix` is on a packaged agent) may dump
    TCP sockets through sock_diag: the shipped default does not need root."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="linux-status-user-"))
    try:
        directory.chmod(0o755)
        module = ag.staged_for_nobody(module_at, directory / "module")
        cfg = ag.write_config(directory, module, ag.free_port(avoid=sc.SCENARIO_PORTS),
                              module_settings="SnapshotLifetime=0\n")
        for path in (cfg.path, cfg.module_config):
            path.chmod(0o644)
        as_nobody = ag.AS_NOBODY
        key = "linux_status[info]"
        proc = subprocess.run([*as_nobody, agentd, "-c", str(cfg.path), "-t", key],
                              capture_output=True, text=True, timeout=30, env=ag.agent_env(cfg))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        info = json.loads(ag.parse_item_line(proc.stdout.strip().splitlines()[0]).value)
        assert info["backend_in_use"] == "netlink", info
        for _ in range(5):
            before = sc.ss_sockets()
            proc = subprocess.run(
                [*as_nobody, agentd, "-c", str(cfg.path), "-t", "linux_status[tcp_summary]"],
                capture_output=True, text=True, timeout=30, env=ag.agent_env(cfg))
            if {s.ident for s in before} == {s.ident for s in sc.ss_sockets()}:
                break
        summary = json.loads(ag.parse_item_line(proc.stdout.strip().splitlines()[0]).value)
        assert {k: summary[k] for k in sc.KERNEL_STATES} == sc.count_states(before)
        assert "unavailable" not in proc.stderr, proc.stderr
    finally:
        shutil.rmtree(directory, ignore_errors=True)
