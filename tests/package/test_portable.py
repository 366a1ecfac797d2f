"""One portable build: the binaries in both packages are the same bytes and need at most
glibc 2.17 (RHEL 7+, Debian 9+, Ubuntu 18.04+), x86_64, and nothing beyond the C library.

The highest `GLIBC_x.y` symbol version a binary references is the oldest glibc that can load
it (the dynamic linker refuses a missing version); `objdump -T` lists them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import PLUGIN_PATH

GLIBC_FLOOR = (2, 17)
# The C library's own objects only: a libgcc_s or libstdc++ dependency would be one more
# package an old system may lack.
ALLOWED_NEEDED = {"libc.so.6", "libpthread.so.0", "libdl.so.2", "libm.so.6", "librt.so.1",
                  "ld-linux-x86-64.so.2"}


def deb_members(deb: Path, dest: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return dest


def rpm_members(rpm: Path, dest: Path) -> Path:
    dest.mkdir()
    # rpm2archive (rpm's own payload unpacker) writes the payload as a tar stream.
    with open(rpm, "rb") as f:
        tar = subprocess.run(["rpm2archive", "-n"], stdin=f, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest


def highest_glibc(binary: Path) -> tuple[int, ...]:
    out = subprocess.run(["objdump", "-T", str(binary)], check=True, capture_output=True,
                         text=True).stdout
    versions = {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]+)", out)}
    assert versions, f"{binary}: no GLIBC_ symbol versions at all (not a glibc binary?)"
    return max(versions)


def needed(binary: Path) -> set[str]:
    out = subprocess.run(["readelf", "-d", str(binary)], check=True, capture_output=True,
                         text=True).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))


def binaries(meta) -> tuple[list[str], list[str]]:
    deb = [d for d, src in meta.deb_assets.items() if src.startswith("target/release/")]
    rpm = [d for d, src in meta.rpm_assets.items() if src.startswith("target/release/")]
    return deb, rpm


def test_binaries_run_on_glibc_2_17(env, meta, tmp_path):
    deb_root = deb_members(env.deb, tmp_path / "deb")
    rpm_root = rpm_members(env.rpm, tmp_path / "rpm")
    deb_bins, rpm_bins = binaries(meta)
    # The module always; the agent 2 plugin when Cargo.toml ships it.
    assert "/usr/lib/zabbix/modules/liblinux_status.so" in deb_bins
    assert "/usr/lib64/zabbix/modules/liblinux_status.so" in rpm_bins
    assert (PLUGIN_PATH in deb_bins) == meta.plugin == (PLUGIN_PATH in rpm_bins)
    for root, dests in ((deb_root, deb_bins), (rpm_root, rpm_bins)):
        for dest in dests:
            binary = root / dest.lstrip("/")
            assert binary.is_file(), f"{dest} missing from the package"
            elf = binary.read_bytes()[:20]
            assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[18] == 62, (
                f"{dest} is not an x86_64 ELF64 file"
            )
            top = highest_glibc(binary)
            assert top <= GLIBC_FLOOR, f"{dest} needs GLIBC_{'.'.join(map(str, top))} > 2.17"
            extra = needed(binary) - ALLOWED_NEEDED
            assert not extra, f"{dest} needs libraries beyond the C library: {extra}"
    # The same bytes in both packages.
    pairs = [("/usr/lib/zabbix/modules/liblinux_status.so",
              "/usr/lib64/zabbix/modules/liblinux_status.so")]
    if meta.plugin:
        pairs.append((PLUGIN_PATH, PLUGIN_PATH))
    for deb_dest, rpm_dest in pairs:
        a = (deb_root / deb_dest.lstrip("/")).read_bytes()
        b = (rpm_root / rpm_dest.lstrip("/")).read_bytes()
        assert a == b, f"{deb_dest} in the .deb differs from {rpm_dest} in the .rpm"


def test_module_exports_only_the_module_interface(env, tmp_path):
    root = deb_members(env.deb, tmp_path / "deb")
    so = root / "usr/lib/zabbix/modules/liblinux_status.so"
    out = subprocess.run(["nm", "-D", "--defined-only", str(so)], check=True,
                         capture_output=True, text=True).stdout
    symbols = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert symbols, "no exported symbols"
    assert all(s.startswith("zbx_module_") for s in symbols), sorted(symbols)
    assert {"zbx_module_api_version", "zbx_module_init", "zbx_module_item_list"} <= symbols

