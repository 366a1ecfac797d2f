"""The plugin's settings come from agent 2's configuration (Plugins.LinuxStatus.*), checked
by the module's own parser with the module's messages; nothing else is read.

- A bad or unknown setting stops the agent at start-up with the module's message, which
  names the agent's configuration line.
- Backend=netlink and the shipped defaults (no Plugins.LinuxStatus settings at all) give
  exact counts.
- The module's configuration file (LINUX_STATUS_CONFIG, /etc/zabbix/linux_status.conf) is
  not read by the plugin: a broken one changes nothing.
"""

from __future__ import annotations

import json
import socket

import pytest

from lib import agent2 as a2
from lib import oracle
from lib import scenario as sc

BAD_SETTINGS = {
    "Backend=ebpf": 'Backend must be auto, proc or netlink, got "ebpf"',
    "SnapshotLifetime=-1": "SnapshotLifetime must be milliseconds from 0 to 60000",
    "SnapshotLifetime=60001": "SnapshotLifetime must be milliseconds from 0 to 60000",
    "Timeout=3": 'unknown parameter "Timeout" (known: Backend, SnapshotLifetime, NetnsTableInterval)',
    "Nested.Name=x": 'unknown parameter "Nested.Name"',
}


@pytest.mark.parametrize("setting", list(BAD_SETTINGS))
def test_a_bad_setting_stops_the_agent_with_the_module_message(setting, make_config):
    cfg = make_config(settings=("SnapshotLifetime=0", setting))
    proc = a2.run(cfg, "-t", "linux_status[version]")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"agent 2 accepted {setting}: {output}"
    # The setting is on line 15 of the file write_config writes (after 13 fixed lines and
    # SnapshotLifetime=0).
    expected = f"linux_status: zabbix_agent2.conf (Plugins.LinuxStatus.*) line 15: "
    assert expected + BAD_SETTINGS[setting] in output, output


def test_netlink_backend_is_exact(make_config, scenario, agent_ports):
    cfg = make_config(settings=("Backend=netlink", "SnapshotLifetime=0"))
    before, got = oracle.settled(
        lambda: json.loads(a2.test_key(cfg, "linux_status[tcp_summary]").value)
    )
    assert {k: got[k] for k in sc.KERNEL_STATES} == sc.count_states(before)
    for state in ("LISTEN", "SYN_RECV", "TIME_WAIT"):
        before, _, result = oracle.bracketed(
            lambda: a2.test_key(cfg, f"linux_status[tcp_status,{state}]")
        )
        assert int(result.value) == sc.count_states(before)[state], (state, result.raw)


def test_shipped_defaults_are_exact(make_config, scenario, env, agent_ports):
    cfg = make_config(settings=())
    before, got = oracle.settled(
        lambda: json.loads(a2.test_key(cfg, "linux_status[tcp_summary]").value)
    )
    assert {k: got[k] for k in sc.KERNEL_STATES} == sc.count_states(before)
    before, _, result = oracle.bracketed(
        lambda: a2.test_key(cfg, "linux_status[tcp_status,ESTABLISHED]")
    )
    assert int(result.value) == sc.count_states(before)["ESTABLISHED"], result.raw
    agent = a2.Agent2(cfg, env.get).start()
    try:
        # Requests arriving together share one scan (SnapshotLifetime 1000 ms by default):
        # stable states are exact through the running agent too.
        for state in ("LISTEN", "SYN_SENT", "SYN_RECV", "CLOSE_WAIT", "LAST_ACK", "CLOSING"):
            before, _, result = oracle.bracketed(
                lambda: a2.ag.zabbix_get(env.get, cfg.port, f"linux_status[tcp_status,{state}]")
            )
            assert int(result.value) == sc.count_states(before)[state], (state, result.raw)
    finally:
        assert agent.stop() == 0, agent.describe()


def test_the_module_configuration_file_is_not_read(make_config, tmp_path):
    broken = tmp_path / "linux_status.conf"
    broken.write_text("Backend=ebpf\n")
    cfg = make_config()
    env = a2.agent_env()
    env["LINUX_STATUS_CONFIG"] = str(broken)
    proc = a2.run(cfg, "-t", "linux_status[tcp_status,LISTEN]", env=env)
    assert proc.returncode == 0 and "[s|" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("lifetime,reused", [("60000", True), ("0", False)])
def test_settings_reach_the_serving_run(lifetime, reused, make_config, scenario, env):
    """The configure request carries the settings into the serving run: with a 60 s
    SnapshotLifetime an unfiltered count stays what the first scan saw after a new listener
    appears; with 0 it follows the table at once."""
    cfg = make_config(settings=(f"SnapshotLifetime={lifetime}",))
    agent = a2.Agent2(cfg, env.get).start()
    listener = socket.socket()
    try:
        first = int(a2.ag.zabbix_get(env.get, cfg.port, "linux_status[tcp_status,LISTEN]").value)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        second = int(a2.ag.zabbix_get(env.get, cfg.port, "linux_status[tcp_status,LISTEN]").value)
        assert second == (first if reused else first + 1), (lifetime, first, second)
    finally:
        listener.close()
        assert agent.stop() == 0, agent.describe()
