#!/usr/bin/env bash
# Cached Debian chroots for the tests: other releases' real binaries (Debian 11's agent 5.0,
# Debian 13's agents and server 7.0) and pristine systems for the package tests.
#
# Sourced (by scripts/setup). Nothing here names a package registry: the mirror is the one the
# machine's own apt sources use for Debian (ls_debian_mirror).
#
#   dir=$(ls_chroot trixie zabbix-agent2 zabbix-agent)   # cached, built once per content
#   ls_chroot_mount "$dir"                               # /proc, /dev, /sys inside (idempotent)
#   chroot "$dir" zabbix_agent2 -V
#
# A chroot is keyed by what it holds: the suite, the package list and this file's recipe
# version. It is built in a temporary folder and renamed into place, under a lock, so two
# concurrent runs never see a half-built one and a changed input builds a new one beside the
# old. The cache lives outside the clone (CI clones afresh): LS_TEST_CACHE, by default
# /var/cache/linux-status-test.
set -euo pipefail

LS_TEST_CACHE=${LS_TEST_CACHE:-/var/cache/linux-status-test}
# Bump when the recipe below changes what a chroot contains.
LS_CHROOT_RECIPE=1

# The Debian archive URI from the machine's apt sources (deb822 .sources files first, then
# one-line sources.list entries): the first `deb` source whose suites include the machine's
# own release and not a -security suite.
ls_debian_mirror() {
	local file uri="" line
	for file in /etc/apt/sources.list.d/*.sources; do
		[ -r "$file" ] || continue
		uri=$(awk 'BEGIN { RS = "" }
			{
				types = ""; suites = ""; uris = ""
				n = split($0, lines, "\n")
				for (i = 1; i <= n; i++) {
					if (lines[i] ~ /^Types:/) types = " " lines[i] " "
					if (lines[i] ~ /^Suites:/) suites = lines[i]
					if (lines[i] ~ /^URIs:/) { split(lines[i], words, /[[:space:]]+/); uris = words[2] }
				}
				if (types ~ / deb / && suites !~ /security/ && uris != "") print uris
			}' "$file" | grep -m1 '/debian/*$' || true)
		[ -n "$uri" ] && break
	done
	if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
		while read -r line; do
			case "$line" in
			deb\ *) ;;
			*) continue ;;
			esac
			# deb [options] URI suite components...
			uri=$(printf '%s\n' "$line" | sed -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}')
			case "$line" in *security*) uri="" ;; esac
			case "$uri" in */debian | */debian/) break ;; *) uri="" ;; esac
		done </etc/apt/sources.list
	fi
	if [ -z "$uri" ]; then
		printf '[setup] no Debian archive found in /etc/apt/sources.list{,.d}: cannot build chroots\n' >&2
		return 1
	fi
	printf '%s\n' "${uri%/}"
}

# ls_chroot SUITE [PACKAGE...]: prints the path of a cached minbase chroot of SUITE with the
# packages installed (no recommends, no services started).
ls_chroot() {
	local suite=$1
	shift
	local packages
	packages=$(printf '%s\n' "$@" | sort -u | tr '\n' ' ')
	local key
	key=$(printf '%s|%s|%s' "$LS_CHROOT_RECIPE" "$suite" "$packages" | sha256sum | cut -c1-16)
	local dir="$LS_TEST_CACHE/chroot/$suite-$key"
	if [ -f "$dir/.linux-status-ready" ]; then
		printf '%s\n' "$dir"
		return 0
	fi
	mkdir -p "$LS_TEST_CACHE/chroot"
	(
		flock 9
		if [ -f "$dir/.linux-status-ready" ]; then exit 0; fi
		command -v debootstrap >/dev/null || ls_apt_install debootstrap
		local mirror tmp
		mirror=$(ls_debian_mirror)
		tmp="$dir.building.$$"
		rm -rf "$tmp"
		printf '[setup] debootstrap --variant=minbase %s (%s) into %s\n' "$suite" "$packages" "$dir" >&2
		if ! debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
			tail -20 "$tmp.log" >&2
			exit 1
		fi
		# The chroot's own apt sources name the same mirror (written by debootstrap).
		cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
		# Like the machine's image: no service starts when a package is installed.
		printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
		chmod 755 "$tmp/usr/sbin/policy-rc.d"
		if [ -n "$packages" ]; then
			ls_chroot_mount "$tmp"
			# shellcheck disable=SC2086
			if ! chroot "$tmp" env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
				apt-get install -y -q --no-install-recommends $packages >>"$tmp.log" 2>&1; then
				tail -20 "$tmp.log" >&2
				ls_chroot_umount "$tmp"
				exit 1
			fi
			chroot "$tmp" apt-get clean
			ls_chroot_umount "$tmp"
		fi
		printf '%s\n' "$suite $packages" >"$tmp/.linux-status-ready"
		rm -f "$tmp.log"
		mv "$tmp" "$dir"
	) 9>"$LS_TEST_CACHE/chroot/.lock"
	[ -f "$dir/.linux-status-ready" ] || return 1
	printf '%s\n' "$dir"
}

# ls_chroot_mount DIR: /proc, /dev and /sys inside the chroot (skipped where mounted already).
ls_chroot_mount() {
	local dir=$1
	mountpoint -q "$dir/proc" || mount -t proc proc "$dir/proc"
	mountpoint -q "$dir/dev" || mount --rbind /dev "$dir/dev"
	mountpoint -q "$dir/sys" || mount --rbind /sys "$dir/sys"
}

ls_chroot_umount() {
	local dir=$1 point
	for point in sys dev proc; do
		mountpoint -q "$dir/$point" && umount -R -l "$dir/$point"
	done
	return 0
}
