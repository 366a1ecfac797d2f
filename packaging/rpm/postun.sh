# linux-status %postun. $1 is how many linux-status packages remain: 0 on erase, 1 when an
# upgrade removes the old one. On erase, remove the package's own folders if they are empty
# (the package cannot own folders: cargo-generate-rpm lists files only). Zabbix's folders
# (/usr/lib64/zabbix/modules, /etc/zabbix/...) are left to Zabbix's packages.
if [ "$1" = 0 ]; then
	for d in /usr/share/linux-status/templates /usr/share/linux-status \
		/usr/share/doc/linux-status /usr/share/licenses/linux-status; do
		rmdir "$d" 2>/dev/null || :
	done
fi
exit 0
