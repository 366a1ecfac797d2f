"""The plugin probes netlink when the agent configures it, as the module probes at init: with
netlink refused (the LD_PRELOAD shim tests/lib/sock_diag_shim.c, the `shim` fixture, makes
socket(AF_NETLINK, ..., NETLINK_SOCK_DIAG) fail with EACCES, as SELinux does), the very
first answer under Backend=auto, linux_status[info], already names /proc as the source in
use and the reason; and the counts that follow are exact. Both agent lines.
"""

from __future__ import annotations

import json
import shutil

from lib import agent as ag
from lib import keys
from lib import oracle
from lib import agent2 as a2
from lib import scenario as sc


def test_first_answer_names_the_fallback(make_config, env, shim, scenario, agent_ports):
    cfg = make_config(settings=("Backend=auto", "SnapshotLifetime=0"))
    # In the agent's folder: the 7.0 chroot sees that folder (at /tmp), not the host's.
    shutil.copy(shim, cfg.directory / shim.name)
    preload = f"{cfg.line.agent_dir(cfg.directory)}/{shim.name}"
    agent = a2.Agent2(cfg, env.get, env={**a2.agent_env(), "LD_PRELOAD": preload,
                                          "LS_SHIM": "refuse"}).start()
    try:
        # Nothing asked the plugin anything before: this request starts and configures it.
        info = json.loads(ag.zabbix_get(env.get, cfg.port, "linux_status[info]").value)
        assert (info["backend_configured"], info["backend_in_use"]) == ("auto", "proc"), info
        assert "Permission denied" in (info["fallback_reason"] or ""), info
        assert tuple(info["keys"]) == keys.METRICS, info  # the registry, through the plugin
        key = "linux_status[tcp_status,LISTEN]"
        before, _, result = oracle.bracketed(lambda: ag.zabbix_get(env.get, cfg.port, key))
        oracle.check_count(key, "LISTEN", result.uint(), before, scenario, agent_ports, own=0)
        assert not agent.crash_lines(), agent.describe()
    finally:
        plugins = agent.plugin_pids()
        status = agent.stop()
        a2.wait_gone(plugins)
    assert status == 0, agent.describe()
    assert sc.count_states(sc.ss_sockets())["LISTEN"] >= 6
