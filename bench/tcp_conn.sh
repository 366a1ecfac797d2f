#!/bin/bash
# The classic community "linux_status" UserParameter script that the module replaces, kept
# faithful for the benchmark (bench/run wires it into the agent as
#   UserParameter=old_linux_status[*],/bin/bash <bench>/tcp_conn.sh "$1" "$2"
# ). Every poll runs ss -tan | awk | sort | uniq -c into a temp file, then greps the state
# (as a substring) out of it.
# The only change: TCP_CONN_TMP, set by bench/run in the agent's environment, keeps the temp
# file in the benchmark's own folder instead of the shared /tmp/tcp_conn.txt.
TMP_FILE=${TCP_CONN_TMP:-/tmp/tcp_conn.txt}

case "$1" in
tcp_status)
	ss -tan | awk '{print $1}' | sort | uniq -c >"$TMP_FILE"
	grep "$2" "$TMP_FILE" | awk '{print $1}'
	;;
*)
	echo "Usage: $0 tcp_status <STATE>"
	;;
esac
