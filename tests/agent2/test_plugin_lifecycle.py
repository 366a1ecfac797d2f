"""The plugin's life with the agent: starts, stops, kills, and agent 6.0.14's reaping race.

Agent 2 6.0.14 reaps plugin processes in two places at once; when a plugin process exits
while the agent runs, one of the two finds no child and panics, and the agent exits
(see the README). The plugin therefore never exits while such an agent lives. Proved
here over 20 starts and stops of each agent line, and shown to be needed by a control: a
minimal plugin that exits on terminate, as Zabbix's own SDK plugins do, kills 6.0.14 in
some of 10 starts. After every stop (and after a SIGKILL of the agent) no plugin process
is left.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

from lib import agent as ag
from lib import agent2 as a2
from lib import scenario as sc

RESTARTS = 20
CONTROL_STARTS = 10


def listen_count_is_right(agent: a2.Agent2) -> None:
    before = sc.ss_sockets()
    result = ag.zabbix_get(agent.get_bin, agent.cfg.port, "linux_status[tcp_status,LISTEN]")
    after = sc.ss_sockets()
    listen = {sc.count_states(before)["LISTEN"], sc.count_states(after)["LISTEN"]}
    assert result.value.isdigit() and int(result.value) in listen, (result.raw, listen)


def test_twenty_starts_and_stops(line, make_config, scenario, env):
    cfg = make_config()
    expected = 2 if line.version == "6.0" else 1
    for run in range(1, RESTARTS + 1):
        agent = a2.Agent2(cfg, env.get)
        try:
            agent.start()
            listen_count_is_right(agent)
            sc.wait_until(lambda: len(agent.plugin_pids()) == expected, 5.0,
                          f"run {run}: {expected} plugin processes")
            plugins = agent.plugin_pids()
            time.sleep(0.3)  # let a registration run's exit (if any) reach the agent
            assert agent.alive(), f"run {run}: agent 2 died\n{agent.describe()}"
        finally:
            status = agent.stop()
        crash = agent.crash_lines()
        assert status == 0 and not crash, (
            f"run {run}: agent 2 {line.version} exited {status}\n" + "\n".join(crash)
            + f"\n{agent.describe()}"
        )
        left = a2.wait_gone(plugins)
        assert not left, f"run {run}: plugin processes {left} outlived agent 2"
        # The log of the next run starts empty.
        cfg.log_file.unlink(missing_ok=True)


def test_plugin_exits_when_the_agent_is_killed(line, make_config, scenario, env):
    agent = a2.Agent2(make_config(), env.get).start()
    listen_count_is_right(agent)
    expected = 2 if line.version == "6.0" else 1
    sc.wait_until(lambda: len(agent.plugin_pids()) == expected, 5.0, "plugin processes")
    plugins = agent.plugin_pids()
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=10)
    left = a2.wait_gone(plugins)
    assert not left, f"plugin processes {left} outlived a killed agent 2 {line.version}"


PROMPT_EXIT_PLUGIN = """\
#!{python}
# A minimal agent 2 plugin that exits as soon as it reads terminate (as Zabbix's SDK
# plugins do): the control for agent 6.0.14's reaping race.
import json, socket, struct, sys
conn = socket.socket(socket.AF_UNIX)
conn.connect(sys.argv[1])
def read(n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data
def send(message):
    body = json.dumps(message).encode()
    conn.sendall(struct.pack("<II", 1, len(body)) + body)
while True:
    _, length = struct.unpack("<II", read(8))
    message = json.loads(read(length))
    kind, ident = message["type"], message.get("id", 0)
    if kind == 2:
        send({{"id": ident, "type": 3, "name": "LinuxStatus",
               "metrics": ["linux_status", "Control."], "interfaces": 1}})
    elif kind == 6:
        send({{"id": ident, "type": 7, "value": "1"}})
    elif kind == 5:
        sys.exit(0)
"""


def test_control_a_plugin_that_exits_promptly_kills_agent_6_0(env, tmp_path, scenario):
    """Not a test of our plugin: it shows the race the plugin avoids is real here, so
    the 20 clean runs above mean something."""
    plugin = tmp_path / a2.PLUGIN_NAME
    plugin.write_text(textwrap.dedent(PROMPT_EXIT_PLUGIN.format(python=sys.executable)))
    plugin.chmod(0o755)
    line = env.lines["6.0"]
    deaths = 0
    for run in range(CONTROL_STARTS):
        port = ag.free_port(avoid=(*sc.SCENARIO_PORTS, 10050), first=20300)
        cfg = a2.write_config(line, plugin, tmp_path / f"control-{run}", port, settings=())
        agent = a2.Agent2(cfg, env.get)
        try:
            agent.start()
            ag.zabbix_get(env.get, port, "linux_status[x]")
            time.sleep(0.5)
            died = not agent.alive()
        except AssertionError:
            died = True
        finally:
            status = agent.stop()
        if died or status != 0 or any("panic" in ln for ln in agent.crash_lines()):
            deaths += 1
    print(f"\n[agent2] control: a plugin exiting on terminate killed agent 2 6.0.14 in "
          f"{deaths} of {CONTROL_STARTS} starts")
    assert deaths >= 1, f"the 6.0.14 race did not show in {CONTROL_STARTS} starts"
