"""The arm64 .deb and the aarch64 .rpm against the x86_64 ones: the same files with the same
modes, the same conffiles and maintainer scripts, the same metadata but the architecture,
and binaries for aarch64.

Not done here: installing the arm64 .deb with dpkg in an emulated arm64 root. That needs a
binfmt_misc handler for aarch64, which is registered for the whole machine (every process
of every session), so the suite does not register one. What installation does is the
maintainer scripts (shell, byte-identical to the amd64 package's, asserted below) and the
file list (identical, asserted below); tests/package runs those scripts and installs the
amd64 package on pristine Debian 11/12/13 systems.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import conftest

ROOT = Path(__file__).resolve().parent.parent.parent
RPM_ELF_REQUIRES = ROOT / "scripts/lib/rpm-elf-requires"


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def deb_files(deb: Path) -> list[tuple[str, str]]:
    """(mode, path) of every entry of the data archive."""
    listing = subprocess.run(f"dpkg-deb --fsys-tarfile {deb} | tar -tv", shell=True, check=True,
                             capture_output=True, text=True, timeout=60).stdout
    return sorted((line.split()[0], line.split()[-1]) for line in listing.splitlines())


def control(deb: Path, tmp: Path) -> dict[str, bytes]:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp)], check=True, timeout=60)
    return {p.name: p.read_bytes() for p in sorted(tmp.iterdir())}


def rpm_query(rpm: Path, *query: str) -> str:
    with tempfile.TemporaryDirectory() as db:
        return run("rpm", "--dbpath", db, "-qp", *query, str(rpm))


def test_deb_same_files_scripts_and_metadata(env, tmp_path):
    assert deb_files(env.deb_arm64) == deb_files(env.deb)
    amd64 = control(env.deb, tmp_path / "amd64")
    arm64 = control(env.deb_arm64, tmp_path / "arm64")
    assert sorted(arm64) == sorted(amd64), (sorted(arm64), sorted(amd64))
    for name in amd64:
        if name not in ("control", "md5sums"):
            assert arm64[name] == amd64[name], f"{name} differs between the two .debs"
    fields = {}
    for arch, text in (("amd64", amd64["control"]), ("arm64", arm64["control"])):
        fields[arch] = dict(line.split(": ", 1) for line in text.decode().splitlines()
                            if ": " in line and not line.startswith(" "))
    assert fields["arm64"].pop("Architecture") == "arm64"
    assert fields["amd64"].pop("Architecture") == "amd64"
    for f in fields.values():
        f.pop("Installed-Size")
    assert fields["arm64"] == fields["amd64"]
    assert "postrm" in arm64 and "preinst" in arm64, sorted(arm64)


def test_deb_binaries_are_aarch64(deb_root):
    for rel in (conftest.DEB_MODULE, conftest.DEB_PLUGIN):
        assert "AArch64" in run("readelf", "-h", str(deb_root / rel)), rel


def test_rpm_same_files_scripts_and_metadata(env):
    assert rpm_query(env.rpm_arm64, "--qf", "%{ARCH}\n") == "aarch64\n"
    for query in (("-l",), ("--scripts",), ("-c",), ("--qf", "%{NAME} %{VERSION} %{RELEASE} %{LICENSE}\n")):
        assert rpm_query(env.rpm_arm64, *query) == rpm_query(env.rpm, *query), query
    listing = {
        arch: sorted((line.split()[0], line.split()[-1])
                     for line in rpm_query(rpm, "-lv").splitlines())
        for arch, rpm in (("x86_64", env.rpm), ("aarch64", env.rpm_arm64))
    }
    assert listing["aarch64"] == listing["x86_64"]


def test_rpm_requires_read_from_the_elf_files(env, deb_root, tmp_path):
    """The aarch64 .rpm's library requirements come from scripts/lib/rpm-elf-requires
    (cargo-generate-rpm's builtin runs ldd, which cannot read aarch64 files). On the x86_64
    binaries that script gives exactly the builtin's answer; on aarch64, glibc 2.17 at most."""
    x86 = tmp_path / "x86"
    x86.mkdir()
    subprocess.run(f"rpm2archive - < {env.rpm} | tar -xz -C {x86}", shell=True, check=True,
                   timeout=60)
    elf = [str(p) for p in x86.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF"]
    assert len(elf) == 2, elf
    mine = subprocess.run([str(RPM_ELF_REQUIRES)], input="\n".join(elf), check=True,
                          capture_output=True, text=True, timeout=60).stdout.split()
    builtin = sorted({r for r in rpm_query(env.rpm, "-R").split("\n")
                      if ".so" in r or r.startswith("rtld")})
    assert sorted(set(mine)) == builtin
    requires = [r for r in rpm_query(env.rpm_arm64, "-R").split("\n") if ".so" in r]
    assert "libc.so.6(GLIBC_2.17)(64bit)" in requires, requires
    assert "ld-linux-aarch64.so.1()(64bit)" in requires, requires
    versions = [r.split("(GLIBC_")[1].split(")")[0] for r in requires if "(GLIBC_" in r]
    assert all(tuple(map(int, v.split("."))) <= (2, 17) for v in versions), requires
    assert os.access(RPM_ELF_REQUIRES, os.X_OK)
