#!/usr/bin/env bash
# Installs what tests/server needs, and is a no-op when it is all there already:
#   - Debian 12's Zabbix server 6.0 (PostgreSQL flavour), its PHP web frontend, PHP 8.2's
#     command-line interpreter (its built-in web server serves the frontend) and pgsql driver.
#     PostgreSQL 15 itself comes with the image; the tests run their own private cluster.
#     (The image's policy-rc.d keeps the packages from starting services.)
#   - headless Chromium (renders the template dashboard to a PNG);
#   - a cached Debian 13 (trixie) chroot with Zabbix 7.0's server, frontend, PostgreSQL and
#     agents (ls_chroot, under /var/cache/linux-status-test; exports
#     LINUX_STATUS_TRIXIE_SERVER_CHROOT) for tests/server/test_server70.py;
#   - an en_US.UTF-8 locale, compiled with localedef into the test cache's setup/locale (the frontend's pages
#     and charts refuse to render without it; the image has none). Pass it to PHP as LOCPATH.
# Source it (it exports ZABBIX_LOCPATH) or run it; scripts/test calls it before tests/server.
set -euo pipefail

LS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LS_CACHE="${LS_TEST_CACHE:-/var/cache/linux-status-test}/setup"
mkdir -p "$LS_CACHE"

zs_log() { printf '[tests/server/setup] %s\n' "$*" >&2; }

zs_packages=(postgresql-15 zabbix-server-pgsql zabbix-frontend-php php8.2-cli php8.2-pgsql locales chromium)
zs_missing=()
for pkg in "${zs_packages[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || zs_missing+=("$pkg")
done
if [ ${#zs_missing[@]} -gt 0 ]; then
	zs_log "apt-get install ${zs_missing[*]}"
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${zs_missing[@]}" >/dev/null
fi
for f in /usr/sbin/zabbix_server /usr/share/zabbix/api_jsonrpc.php \
	/usr/share/zabbix-server-pgsql/schema.sql.gz /usr/share/zabbix-server-pgsql/images.sql.gz \
	/usr/share/zabbix-server-pgsql/data.sql.gz; do
	[ -e "$f" ] || { zs_log "missing $f after install"; exit 1; }
done
# initdb and pg_ctl of the image's PostgreSQL (not on PATH on Debian).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { zs_log "no PostgreSQL initdb found"; exit 1; }

ZABBIX_LOCPATH="$LS_CACHE/locale"
if [ ! -e "$ZABBIX_LOCPATH/en_US.UTF-8/LC_CTYPE" ]; then
	zs_log "compiling the en_US.UTF-8 locale into $ZABBIX_LOCPATH"
	mkdir -p "$ZABBIX_LOCPATH"
	# localedef exits 1 on mere warnings; the compiled files are what matters.
	localedef -i en_US -f UTF-8 "$ZABBIX_LOCPATH/en_US.UTF-8" || true
	[ -e "$ZABBIX_LOCPATH/en_US.UTF-8/LC_CTYPE" ] || { zs_log "localedef failed"; exit 1; }
fi
export ZABBIX_LOCPATH

# Zabbix 7.0 server + frontend + PostgreSQL + agents of Debian 13, in a cached chroot (keyed by
# this package list; built once, about two minutes). locales-all: the frontend's en_US.UTF-8.
declare -F ls_chroot >/dev/null || source "$LS_ROOT/scripts/lib/chroot.sh"
declare -F ls_apt_install >/dev/null || ls_apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
LINUX_STATUS_TRIXIE_SERVER_CHROOT=$(ls_chroot trixie zabbix-server-pgsql zabbix-frontend-php \
	php-pgsql php-cli postgresql zabbix-agent zabbix-agent2 locales-all)
export LINUX_STATUS_TRIXIE_SERVER_CHROOT
