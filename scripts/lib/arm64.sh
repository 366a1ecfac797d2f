#!/usr/bin/env bash
# The arm64 (aarch64) side of the build and the tests, from Debian's archive only, cached under
# LS_TEST_CACHE and keyed by what each folder holds:
#
#   ls_arm64_rust      Debian's rustc-web (amd64) with the aarch64 standard library of the same
#                      build (libstd-rust-web-dev:arm64), unpacked with dpkg -x: rustup cannot
#                      download here, and a target's std must come from the very same rustc.
#                      Exports LS_ARM64_RUSTC (a wrapper that finds the unpacked libraries).
#   ls_arm64_sysroot   Debian's arm64 zabbix-agent and zabbix-agent2 with their whole
#                      dependency closure (libc6:arm64 ...) unpacked into one root, for
#                      `qemu-aarch64-static -L <root>`. Exports LS_ARM64_SYSROOT.
#
# The arm64 packages are fetched through a private apt setup (its own sources list, lists and
# caches under $LS_TEST_CACHE/arm64/apt) naming the Debian archives the machine's apt already
# uses, so the machine's own apt configuration and dpkg database are left as they are (no
# `dpkg --add-architecture` on the host). Sourced by scripts/package and tests/arm64/setup.sh,
# after scripts/setup (ls_apt_install, ls_candidate).
set -euo pipefail

LS_TEST_CACHE=${LS_TEST_CACHE:-/var/cache/linux-status-test}
# Bump when a recipe below changes what a folder contains.
LS_ARM64_RECIPE=1

ls_arm64_log() { printf '[arm64] %s\n' "$*" >&2; }

# The private apt options; `ls_arm64_apt_update` fetches its lists once (warm runs reuse them).
ls_arm64_apt_dir="$LS_TEST_CACHE/arm64/apt"
# No binary caches: the same lists are read with two architecture setups (the toolchain's
# amd64 + arm64, the sysroot's arm64 alone).
ls_arm64_apt_base=(-o "Dir::Etc::SourceList=$ls_arm64_apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$ls_arm64_apt_dir/lists" -o "Dir::Cache=$ls_arm64_apt_dir/cache"
	-o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "Dir::State::status=/dev/null" -o "Debug::NoLocking=1")
LS_ARM64_APT=("${ls_arm64_apt_base[@]}" -o "APT::Architecture=amd64" -o "APT::Architectures::=amd64" -o "APT::Architectures::=arm64")

# The Debian archives (URI, suite, component) the machine's apt itself reads, as apt sees them
# (deb822 and one-line sources alike): every index whose URI ends in /debian/ or
# /debian-security/.
ls_arm64_sources() {
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' | sort -u |
		awk '$1 ~ /\/debian(-security)?\/$/ {
			print "deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] " $1 " " $2 " " $3
		}'
}

ls_arm64_apt_update() {
	mkdir -p "$ls_arm64_apt_dir"
	(
		flock 9
		local sources
		sources=$(ls_arm64_sources)
		[ -n "$sources" ] || { ls_arm64_log "no Debian archive in the machine's apt sources"; exit 1; }
		# Fetched once; again only when the machine's Debian sources change.
		if [ -f "$ls_arm64_apt_dir/.updated" ] && [ "$sources" = "$(cat "$ls_arm64_apt_dir/sources.list" 2>/dev/null)" ]; then
			exit 0
		fi
		printf '%s\n' "$sources" >"$ls_arm64_apt_dir/sources.list"
		mkdir -p "$ls_arm64_apt_dir/lists/partial" "$ls_arm64_apt_dir/cache/archives/partial"
		rm -f "$ls_arm64_apt_dir/.updated"
		ls_arm64_log "apt-get update (private lists with arm64: $ls_arm64_apt_dir)"
		apt-get "${LS_ARM64_APT[@]}" update -qq || exit 1
		touch "$ls_arm64_apt_dir/.updated"
	) 9>"$LS_TEST_CACHE/arm64/.lock-apt"
}

# ls_arm64_candidate PKG[:ARCH]: the version the private lists offer (characters safe in a path).
ls_arm64_candidate() {
	local version
	version=$(apt-cache "${LS_ARM64_APT[@]}" policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
	[ -n "$version" ] && [ "$version" != "(none)" ] || { ls_arm64_log "no candidate for $1"; return 1; }
	printf '%s' "$version"
}

# ls_arm64_unpack DIR PKG...: downloads the packages (exact names, versions and architectures
# as given) into DIR/debs and unpacks each into DIR/root.
ls_arm64_unpack() {
	local dir=$1 deb
	shift
	mkdir -p "$dir/debs" "$dir/root"
	# apt drops root to _apt for downloads: the folder must be theirs to write.
	chown _apt "$dir/debs" 2>/dev/null || true
	(cd "$dir/debs" && apt-get "${LS_ARM64_APT[@]}" download -qq "$@" 2>/dev/null) || {
		ls_arm64_log "apt-get download failed for: $*"
		return 1
	}
	for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
}

# ls_arm64_build KEYDIR CONTENT-NOTE FUNCTION: runs FUNCTION TMPDIR under a lock when KEYDIR is
# not ready, then renames TMPDIR to KEYDIR (so concurrent runs never see a half-built one).
ls_arm64_build() {
	local dir=$1 note=$2 fn=$3
	[ -f "$dir/.linux-status-ready" ] && return 0
	mkdir -p "$(dirname "$dir")"
	(
		flock 9
		[ -f "$dir/.linux-status-ready" ] && exit 0
		local tmp="$dir.building.$$"
		rm -rf "$tmp"
		"$fn" "$tmp" || { rm -rf "$tmp"; exit 1; }
		printf '%s\n' "$note" >"$tmp/.linux-status-ready"
		mv "$tmp" "$dir"
	) 9>"$dir.lock"
	[ -f "$dir/.linux-status-ready" ]
}

# --- the cross toolchain ----------------------------------------------------------------------
# The version of Debian's rustc-web the machine's apt offers (bookworm-security tracks Firefox
# ESR's Rust); the amd64 compiler and the arm64 std are that exact build.
ls_arm64_rust_fill() {
	local tmp=$1 v=$ls_arm64_rust_version short llvm
	short=$(printf '%s' "$v" | sed -E 's/^([0-9]+\.[0-9]+).*/\1/')
	# rustc's own LLVM (libstd-rust-web-1.X links it): named by the package's dependency.
	llvm=$(apt-cache "${LS_ARM64_APT[@]}" depends "libstd-rust-web-$short:amd64=$v" 2>/dev/null |
		awk '/Depends: libllvm/ {print $2; exit}')
	[ -n "$llvm" ] || { ls_arm64_log "libstd-rust-web-$short $v names no libllvm"; return 1; }
	ls_arm64_log "unpacking Debian's rustc-web $v with the aarch64 std into $ls_arm64_rust_dir (once)"
	ls_arm64_unpack "$tmp" "rustc-web:amd64=$v" "libstd-rust-web-dev:amd64=$v" "libstd-rust-web-$short:amd64=$v" \
		"${llvm%:amd64}:amd64" "libstd-rust-web-dev:arm64=$v" "libstd-rust-web-$short:arm64=$v" || return 1
	rm -rf "$tmp/debs"
	[ -d "$tmp/root/usr/lib/rustlib/aarch64-unknown-linux-gnu/lib" ] ||
		{ ls_arm64_log "libstd-rust-web-dev:arm64 $v has no aarch64 rustlib"; return 1; }
	mkdir -p "$tmp/bin"
	# rustc finds its sysroot (usr/, with lib/rustlib/<target>) from its own path; only its
	# shared libraries need the loader's help.
	cat >"$tmp/bin/rustc" <<-'WRAP'
		#!/bin/sh
		# Debian's rustc-web unpacked here: its librustc_driver and libLLVM live beside it.
		root=$(dirname "$(dirname "$(readlink -f "$0")")")/root
		LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$root/usr/bin/rustc" "$@"
	WRAP
	chmod 755 "$tmp/bin/rustc"
	if ! "$tmp/bin/rustc" -vV >/dev/null 2>"$tmp.err"; then
		ls_arm64_log "the unpacked rustc does not run:"; cat "$tmp.err" >&2; rm -f "$tmp.err"; return 1
	fi
	rm -f "$tmp.err"
}

ls_arm64_rust() {
	ls_arm64_apt_update
	ls_arm64_rust_version=$(ls_arm64_candidate rustc-web:amd64)
	[ "$(ls_arm64_candidate libstd-rust-web-dev:arm64)" = "$ls_arm64_rust_version" ] || {
		ls_arm64_log "libstd-rust-web-dev:arm64 is not at rustc-web's $ls_arm64_rust_version"
		return 1
	}
	ls_arm64_rust_dir="$LS_TEST_CACHE/tools/rust-web-$(printf '%s' "$ls_arm64_rust_version" | tr -c 'A-Za-z0-9.+~-' _)-aarch64-r$LS_ARM64_RECIPE"
	ls_arm64_build "$ls_arm64_rust_dir" "rustc-web $ls_arm64_rust_version + libstd-rust-web-dev:arm64" ls_arm64_rust_fill
	export LS_ARM64_RUSTC="$ls_arm64_rust_dir/bin/rustc"
}

# --- the arm64 agents' root ------------------------------------------------------------------
ls_arm64_sysroot_fill() {
	local tmp=$1 pkgs
	# The dependency closure as apt resolves it for an empty arm64 system (Essential packages
	# are left to what the agents themselves depend on: libc6, libgcc-s1 ...).
	pkgs=$(apt-get "${ls_arm64_apt_base[@]}" -o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
		-s install --no-install-recommends "${ls_arm64_sysroot_pkgs[@]}" 2>/dev/null |
		awk '$1 == "Inst" && match($0, /\[(arm64|all)\]/) { v = $3; sub(/^\(/, "", v); print $2 ":" substr($0, RSTART + 1, RLENGTH - 2) "=" v }')
	[ -n "$pkgs" ] || { ls_arm64_log "apt resolved no packages for ${ls_arm64_sysroot_pkgs[*]}:arm64"; return 1; }
	ls_arm64_log "unpacking Debian's arm64 ${ls_arm64_sysroot_pkgs[*]} and $(($(printf '%s\n' "$pkgs" | wc -l) - ${#ls_arm64_sysroot_pkgs[@]})) dependencies into $LS_ARM64_SYSROOT (once)"
	# shellcheck disable=SC2086
	ls_arm64_unpack "$tmp" $pkgs || return 1
	rm -rf "$tmp/debs"
	[ -x "$tmp/root/usr/sbin/zabbix_agentd" ] && [ -x "$tmp/root/usr/sbin/zabbix_agent2" ] ||
		{ ls_arm64_log "no zabbix_agentd/zabbix_agent2 in the arm64 root"; return 1; }
	# The tests run the agents as an unprivileged user.
	chmod 755 "$tmp" "$tmp/root"
}

ls_arm64_sysroot() {
	ls_arm64_apt_update
	ls_arm64_sysroot_pkgs=(zabbix-agent zabbix-agent2)
	local key
	key=$(printf '%s|%s|%s' "$LS_ARM64_RECIPE" "$(ls_arm64_candidate zabbix-agent:arm64)" \
		"$(ls_arm64_candidate zabbix-agent2:arm64)" | sha256sum | cut -c1-16)
	LS_ARM64_SYSROOT="$LS_TEST_CACHE/arm64/sysroot-$key/root"
	ls_arm64_build "$(dirname "$LS_ARM64_SYSROOT")" "arm64 ${ls_arm64_sysroot_pkgs[*]}" ls_arm64_sysroot_fill
	export LS_ARM64_SYSROOT
}
