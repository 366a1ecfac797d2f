#!/usr/bin/env bash
# What tests/package needs, after scripts/package: the pristine systems (cached debootstrap
# minbase chroots with only Debian's agents installed by apt), the built packages, and the
# same .rpm as release 2 (the upgrade the RPM test installs). Source it after scripts/setup;
# scripts/test does. Exports LINUX_STATUS_DEB, LINUX_STATUS_RPM, LINUX_STATUS_RPM_REV2 and
# LS_CHROOT_{BOOKWORM,BULLSEYE,TRIXIE}.
set -euo pipefail

LS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
declare -F ls_chroot >/dev/null || { echo "tests/package/setup.sh: source scripts/setup first" >&2; exit 1; }
# shellcheck source=../../scripts/lib/tools.sh
source "$LS_ROOT/scripts/lib/tools.sh"
ls_setup_package_tools

# Debian 12 with Debian's agent 6.0 and agent 2 6.0; Debian 11's agent 5.0; Debian 13's 7.0.
LS_CHROOT_BOOKWORM=$(ls_chroot bookworm zabbix-agent zabbix-agent2)
LS_CHROOT_BULLSEYE=$(ls_chroot bullseye zabbix-agent)
LS_CHROOT_TRIXIE=$(ls_chroot trixie zabbix-agent zabbix-agent2)
export LS_CHROOT_BOOKWORM LS_CHROOT_BULLSEYE LS_CHROOT_TRIXIE

ls_pkg_version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$LS_ROOT/Cargo.toml" | head -1)
export LINUX_STATUS_DEB="$LS_ROOT/dist/linux-status_${ls_pkg_version}-1_amd64.deb"
export LINUX_STATUS_RPM="$LS_ROOT/dist/linux-status-${ls_pkg_version}-1.x86_64.rpm"
for f in "$LINUX_STATUS_DEB" "$LINUX_STATUS_RPM"; do
	[ -f "$f" ] || { echo "tests/package/setup.sh: $f missing: run scripts/package" >&2; exit 1; }
done
ls_rev2_dir="$LS_ROOT/target/package-test"
mkdir -p "$ls_rev2_dir"
export LINUX_STATUS_RPM_REV2="$ls_rev2_dir/linux-status-${ls_pkg_version}-2.x86_64.rpm"
(cd "$LS_ROOT" && cargo generate-rpm --target x86_64-unknown-linux-gnu --payload-compress gzip \
	--auto-req builtin --set-metadata 'release = "2"' --output "$LINUX_STATUS_RPM_REV2")
