"""linux_status's shared test library, imported as `lib` by every Python suite (tests/e2e,
tests/agent2, tests/robustness, tests/package, tests/server, tests/templates, tests/arm64),
bench/*.py and scripts/demo.py. `source scripts/setup` puts tests/ on PYTHONPATH.

- `zbxd`: the one client of Zabbix's ZBXD passive protocol (plain and 7.0 JSON checks).
- `agent`: zabbix_agentd driver, result parsing, zabbix_get, free ports, pids; the one
  start-and-wait-for-`agent.ping` loop (`wait_for_ping`).
- `agent2`: zabbix_agent2 driver (host or chroot).
- `system`: pristine Debian systems in chroots, agents started as their packaged services.
- `netns`: the private network namespace and the suites' preconditions.
- `scenario`: the known socket table checked against ss; `wait_until`.
- `oracle`: the independent answers (ss, bracketed), the contract's spellings, traps and
  error cases.
- `server`: the Zabbix server stack's shared parts, parameterised by version (tests/server).
- `hostile_keys`: generated hostile keys; `keys`: the key registry (keys.json, rendered from
  src/request/registry.rs).
- `fixtures`: the pytest plugin with the fixtures the suites share (registered once, by
  tests/conftest.py); `sock_diag_shim.c`: the LD_PRELOAD shim its `shim` fixture builds.
"""
