"""The demo: a real zabbix_agentd with linux_status, answering every TCP state.

Runs inside a private network namespace (scripts/demo starts it under `unshare -n`). It
builds the known socket table of the end-to-end tests (tests/lib/scenario.py: sockets in
every state but CLOSE), starts Debian's zabbix_agentd on 127.0.0.1 with the module loaded,
and for every state prints what the agent answers through zabbix_get beside the count
`ss -tan` gives in the same namespace just before the query.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from lib import agent as ag
from lib import scenario as sc

# What a passive check adds while the agent runs the item: the query's own connection.
QUERY_OWN = {"ESTABLISHED": 2}


def main() -> int:
    so = Path(os.environ["LINUX_STATUS_SO"])
    agentd, get = os.environ["ZABBIX_AGENTD"], os.environ["ZABBIX_GET"]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    scenario = sc.Scenario().build()
    scenario.verify()
    with tempfile.TemporaryDirectory(prefix="linux_status_demo_") as tmp:
        port = ag.free_port(avoid=sc.SCENARIO_PORTS)
        config = ag.write_config(Path(tmp), so, port)
        agent = ag.Agent(agentd, get, config)
        agent.start()
        try:
            version = subprocess.run([agentd, "-V"], capture_output=True, text=True).stdout
            print(f"{version.splitlines()[0]} on 127.0.0.1:{port}, LoadModule={so}")
            print(f"{'item key':<44} {'agent':>6} {'ss -tan':>8}")
            mismatches = 0
            for state in sc.KERNEL_STATES:
                ss_name = sc.KERNEL_TO_SS[state]
                key = f"linux_status[tcp_status,{ss_name}]"
                # A socket of an earlier query may be closing right now: ask again until
                # ss gives the same count for the state just before and just after.
                for _ in range(5):
                    before = sc.count_states(sc.ss_sockets())[state]
                    answer = ag.zabbix_get(get, port, key)
                    time.sleep(0.05)
                    own_gone = sc.count_states(sc.ss_sockets())
                    if state == "TIME_WAIT":
                        # the query just made leaves one TIME_WAIT on the agent's side
                        own_gone[state] -= 1
                    if own_gone[state] == before:
                        break
                value = answer.value if answer.supported else f"ERROR {answer.message}"
                own = QUERY_OWN.get(state, 0)
                note = f"  (+{own}: the query's own connection)" if own else ""
                print(f"{key:<44} {value:>6} {before:>8}{note}")
                if not answer.supported or int(answer.value) != before + own:
                    mismatches += 1
            print()
            for key in (
                "linux_status[tcp_summary]",
                "linux_status[tcp_status,ESTAB,127.0.0.1,20003]",
                "linux_status[listen_discovery]",
            ):
                answer = ag.zabbix_get(get, port, key)
                print(f"{key}\n  -> {answer.raw.strip()}")
            print()
            for key in ("linux_status[tcp_status,WAIT]", "linux_status[tcp_status]"):
                answer = ag.zabbix_get(get, port, key)
                print(f"{key}\n  -> {answer.raw.strip()}")
            print()
            print("zabbix_agentd -t (no connection of its own):")
            result = ag.test_key(agentd, config, "linux_status[tcp_status,TIME-WAIT]")
            print(f"  {result.raw.strip()}")
        finally:
            agent.stop()
        scenario.close()
    if mismatches:
        print(f"{mismatches} state(s) differ from ss -tan", file=sys.stderr)
        return 1
    print("\nEvery state answered by the agent matches ss -tan.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
