"""Run commands of this project on a fresh Debian 12: no rustup, no Rust, no compiler.

    source scripts/setup; source tests/package/setup.sh
    $PYTHON tests/package/fresh_machine.py scripts/package "cargo build --release" scripts/demo

Not part of scripts/test (a cold run installs Debian's Rust and libclang and compiles the
packaging tools: 5 to 20 minutes here). It proves, by hand, that the README's commands and
scripts/package work where nothing but Debian is installed: each run takes a throw-away
overlay copy of the cached Debian 12 minbase chroot ($LS_CHROOT_BOOKWORM), gives it the
machine's own apt sources, DNS and TLS trust (its CA certificates and pip.conf: what any
machine here reaches the registries with), puts `git archive HEAD` of this clone in
/root/linux_status, and runs each command there in turn as root with a bare environment
(PATH without ~/.cargo/bin, HOME=/root), printing its exit status, time and output tail.
Exit status: 0 when every command succeeded.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

from lib import system as sysmod

BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def prepare(system: sysmod.System) -> None:
    apt_dir = system.path("/etc/apt/sources.list.d")
    for f in glob.glob(f"{apt_dir}/*"):
        os.remove(f)
    if system.exists("/etc/apt/sources.list"):
        os.remove(system.path("/etc/apt/sources.list"))
    for f in glob.glob("/etc/apt/sources.list.d/*.sources"):
        shutil.copy(f, apt_dir)
    if os.path.isfile("/etc/apt/sources.list"):
        shutil.copy("/etc/apt/sources.list", system.path("/etc/apt/sources.list"))
    shutil.copy("/etc/resolv.conf", system.path("/etc/resolv.conf"))
    cas = system.path("/usr/local/share/ca-certificates")
    cas.mkdir(parents=True, exist_ok=True)
    for f in glob.glob("/usr/local/share/ca-certificates/*.crt"):
        shutil.copy(f, cas)
    if os.path.isfile("/etc/pip.conf"):
        shutil.copy("/etc/pip.conf", system.path("/etc/pip.conf"))
    clone = system.path("/root/linux_status")
    clone.mkdir(parents=True)
    subprocess.run(f"git -C '{ROOT}' archive HEAD | tar -x -C '{clone}'", shell=True, check=True)


def main(commands: list[str]) -> int:
    if not commands:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    with sysmod.System(os.environ["LS_CHROOT_BOOKWORM"], "fresh-debian12") as system:
        prepare(system)
        found = system.run("sh", "-c", "command -v cargo rustc gcc || true").stdout.strip()
        print(f"before: cargo/rustc/gcc on PATH: {found or 'none'}", flush=True)
        for command in commands:
            started = time.monotonic()
            r = subprocess.run(
                ["chroot", str(system.root), "env", "-i", f"PATH={BARE_PATH}", "HOME=/root",
                 "LC_ALL=C.UTF-8", "bash", "-c", f"cd /root/linux_status && {command}"],
                capture_output=True, text=True,
            )
            seconds = time.monotonic() - started
            print(f"=== {command}: exit {r.returncode} after {seconds:.0f} s\n"
                  f"--- stdout (tail)\n{r.stdout[-3000:]}\n--- stderr (tail)\n{r.stderr[-4000:]}",
                  flush=True)
            failed += r.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
