#!/usr/bin/env bash
# What tests/arm64 needs, after scripts/package: Debian's qemu-user-static, the cached root of
# Debian's arm64 agents (scripts/lib/arm64.sh) and the built packages. Source it after
# scripts/setup; scripts/test does. Exports LS_ARM64_SYSROOT, LS_QEMU_AARCH64 and
# LINUX_STATUS_{DEB,RPM}{,_ARM64}.
set -euo pipefail

LS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
declare -F ls_apt_install >/dev/null || { echo "tests/arm64/setup.sh: source scripts/setup first" >&2; exit 1; }
# shellcheck source=../../scripts/lib/arm64.sh
source "$LS_ROOT/scripts/lib/arm64.sh"
# rpm: the aarch64 .rpm's queries; qemu-user-static: the arm64 agents on this x86_64 host.
ls_apt_install qemu-user-static rpm binutils-aarch64-linux-gnu
ls_arm64_sysroot
LS_QEMU_AARCH64=$(command -v qemu-aarch64-static)
export LS_QEMU_AARCH64

ls_pkg_version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$LS_ROOT/Cargo.toml" | head -1)
export LINUX_STATUS_DEB="$LS_ROOT/dist/linux-status_${ls_pkg_version}-1_amd64.deb"
export LINUX_STATUS_RPM="$LS_ROOT/dist/linux-status-${ls_pkg_version}-1.x86_64.rpm"
export LINUX_STATUS_DEB_ARM64="$LS_ROOT/dist/linux-status_${ls_pkg_version}-1_arm64.deb"
export LINUX_STATUS_RPM_ARM64="$LS_ROOT/dist/linux-status-${ls_pkg_version}-1.aarch64.rpm"
for f in "$LINUX_STATUS_DEB" "$LINUX_STATUS_RPM" "$LINUX_STATUS_DEB_ARM64" "$LINUX_STATUS_RPM_ARM64"; do
	[ -f "$f" ] || { echo "tests/arm64/setup.sh: $f missing: run scripts/package" >&2; exit 1; }
done
