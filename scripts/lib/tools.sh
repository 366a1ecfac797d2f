#!/usr/bin/env bash
# Build tools for the packages and the portable build, compiled once and cached outside the
# clone (CI clones afresh), each keyed by its own version: cargo-deb, cargo-generate-rpm and
# cargo-zigbuild from crates.io, Zig from PyPI's `ziglang` wheel (cargo-zigbuild's linker).
#
# Sourced by scripts/package and tests/package/setup.sh; `ls_setup_package_tools` puts them on
# PATH. A tool is built in a temporary folder and renamed into place under a lock, so
# concurrent runs never see a half built one; a changed version builds a new folder beside
# the old.
set -euo pipefail

LS_TEST_CACHE=${LS_TEST_CACHE:-/var/cache/linux-status-test}

# The pinned versions: the packages are built by exactly these.
LS_CARGO_DEB_VERSION=3.8.0
LS_CARGO_GENERATE_RPM_VERSION=0.21.1
LS_CARGO_ZIGBUILD_VERSION=0.24.1
LS_ZIGLANG_VERSION=0.13.0

# ls_cargo_tool CRATE VERSION: cargo install --locked --debug into
# $LS_TEST_CACHE/tools/CRATE-VERSION-debug (once) and puts its bin/ on PATH. Debug builds: the
# tools run for a second per package, and an unoptimised build takes about half the time of
# a release one on a cold 2-core machine (the first CI run of a new machine builds all three).
ls_cargo_tool() {
	local crate=$1 version=$2
	local dir="$LS_TEST_CACHE/tools/$crate-$version-debug"
	mkdir -p "$LS_TEST_CACHE/tools"
	if [ ! -f "$dir/.linux-status-ready" ]; then
		(
			flock 9
			[ -f "$dir/.linux-status-ready" ] && exit 0
			local tmp="$dir.building.$$"
			rm -rf "$tmp"
			printf '[setup] cargo install %s %s (once, a few minutes; cached in %s)\n' "$crate" "$version" "$dir" >&2
			# A private CARGO_TARGET_DIR: the clone's target/ must not hold tool builds.
			if ! CARGO_TARGET_DIR="$tmp.target" cargo install --quiet --locked --debug --root "$tmp" \
				--version "=$version" "$crate" >"$tmp.log" 2>&1; then
				tail -30 "$tmp.log" >&2
				exit 1
			fi
			rm -rf "$tmp.target" "$tmp.log"
			printf '%s %s\n' "$crate" "$version" >"$tmp/.linux-status-ready"
			mv "$tmp" "$dir"
		) 9>"$LS_TEST_CACHE/tools/.lock-$crate"
	fi
	[ -f "$dir/.linux-status-ready" ] || return 1
	export PATH="$dir/bin:$PATH"
}

# Zig from PyPI (the `ziglang` wheel carries the zig binary); cargo-zigbuild finds `zig` on
# PATH.
ls_zig() {
	local dir="$LS_TEST_CACHE/tools/ziglang-$LS_ZIGLANG_VERSION"
	mkdir -p "$LS_TEST_CACHE/tools"
	if [ ! -f "$dir/.linux-status-ready" ]; then
		(
			flock 9
			[ -f "$dir/.linux-status-ready" ] && exit 0
			local tmp="$dir.building.$$"
			rm -rf "$tmp"
			printf '[setup] pip install ziglang==%s into %s\n' "$LS_ZIGLANG_VERSION" "$dir" >&2
			"${PYTHON:-python3}" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
				--target "$tmp/site" "ziglang==$LS_ZIGLANG_VERSION" || exit 1
			mkdir -p "$tmp/bin"
			# The wheel's zig finds its lib/ next to itself: link, do not copy.
			ln -s ../site/ziglang/zig "$tmp/bin/zig"
			"$tmp/bin/zig" version >/dev/null || exit 1
			printf 'ziglang %s\n' "$LS_ZIGLANG_VERSION" >"$tmp/.linux-status-ready"
			mv "$tmp" "$dir"
		) 9>"$LS_TEST_CACHE/tools/.lock-ziglang"
	fi
	[ -f "$dir/.linux-status-ready" ] || return 1
	export PATH="$dir/bin:$PATH"
}

# Everything scripts/package needs, on PATH.
ls_setup_package_tools() {
	ls_zig
	ls_cargo_tool cargo-zigbuild "$LS_CARGO_ZIGBUILD_VERSION"
	ls_cargo_tool cargo-deb "$LS_CARGO_DEB_VERSION"
	ls_cargo_tool cargo-generate-rpm "$LS_CARGO_GENERATE_RPM_VERSION"
}
