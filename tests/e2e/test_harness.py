"""The host harness (tests/harness/harness.c) under valgrind, once per fixture directory.

The harness loads the module like zabbix_agentd (dlopen RTLD_NOW, version, init, item table,
flags rewritten in place, item timeout) and calls the item function with heap requests of
exactly 40/48/56 bytes and results of exactly 64/72 bytes, against the fixtures under
tests/fixtures/ (LINUX_STATUS_PROC_NET_DIR). Valgrind turns any out-of-bounds read or write,
use of uninitialised memory, bad free or leak into a failure.

Environment: LINUX_STATUS_SO (default: target/release/liblinux_status.so). gcc and valgrind
are required: their absence is a failure, not a skip.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS_SRC = ROOT / "tests" / "harness" / "harness.c"
FIXTURES = ROOT / "tests" / "fixtures"
SO = Path(os.environ.get("LINUX_STATUS_SO", ROOT / "target" / "release" / "liblinux_status.so"))

VALGRIND_ARGS = [
    "--leak-check=full",
    "--show-leak-kinds=definite,indirect,possible",
    "--errors-for-leak-kinds=definite,indirect,possible",
    "--error-exitcode=99",
    "--track-fds=no",
]

FIXTURE_DIRS = sorted(d for d in FIXTURES.iterdir() if (d / "expected").is_file())


def _require(tool):
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is required for the host harness test but is not on PATH "
                    f"(scripts/setup installs it)")
    return path


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    gcc = _require("gcc")
    out = tmp_path_factory.mktemp("harness") / "harness"
    cmd = [gcc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
           "-o", str(out), str(HARNESS_SRC), "-ldl"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}"
    return out


def test_fixture_dirs_found():
    names = {d.name for d in FIXTURE_DIRS}
    for want in ("mixed-small", "wide-12k", "no-ipv6", "truncated-last-line", "garbage",
                 "bad-state", "empty"):
        assert want in names, f"fixture {want} missing under {FIXTURES}"


@pytest.mark.parametrize("fixture_dir", FIXTURE_DIRS, ids=[d.name for d in FIXTURE_DIRS])
def test_harness_under_valgrind(harness, fixture_dir, tmp_path):
    valgrind = _require("valgrind")
    assert SO.is_file(), f"module not built: {SO} (cargo build --release, or set LINUX_STATUS_SO)"
    vg_log = tmp_path / "valgrind.log"
    cmd = [valgrind, *VALGRIND_ARGS, f"--log-file={vg_log}", str(harness), str(SO),
           str(fixture_dir)]
    # The module's configuration is pinned to an empty file (the defaults): a host's
    # /etc/zabbix/linux_status.conf must not change what the fixtures give. The harness
    # sets LINUX_STATUS_PROC_NET_DIR, which forces the /proc backend.
    module_config = tmp_path / "linux_status.conf"
    module_config.write_text("")
    environment = {**os.environ, "LINUX_STATUS_CONFIG": str(module_config)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=environment)
    log = vg_log.read_text() if vg_log.exists() else "(no valgrind log)"
    out = proc.stdout
    failures = "\n".join(line for line in out.splitlines() if line.startswith("FAIL"))
    context = (f"\n--- harness failures ---\n{failures[:6000]}"
               f"\n--- harness stderr ---\n{proc.stderr[-3000:]}"
               f"\n--- valgrind ---\n{log[-6000:]}")

    rc = proc.returncode
    assert rc == 0, f"harness exit code {rc} (99 = valgrind errors, 1 = failed checks){context}"

    closing = [line for line in out.splitlines() if line.startswith("harness: ")]
    assert closing, f"no closing line{context}"
    m = re.fullmatch(r"harness: (\d+) passed, (\d+) failed", closing[-1])
    assert m, f"unexpected closing line {closing[-1]!r}{context}"
    assert int(m.group(2)) == 0 and not failures, f"{closing[-1]}{context}"
    assert int(m.group(1)) > 100, f"suspiciously few checks: {closing[-1]}{context}"
    assert int(m.group(1)) == out.count("\nok: ") + out.startswith("ok: "), \
        f"closing line does not match the printed checks{context}"

    assert re.search(r"ERROR SUMMARY: 0 errors from 0 contexts", log), \
        f"valgrind reported errors{context}"
    for kind in ("definitely", "indirectly", "possibly"):
        for m in re.finditer(rf"{kind} lost: ([\d,]+) bytes", log):
            assert m.group(1).replace(",", "") == "0", f"valgrind: {m.group(0)}{context}"
