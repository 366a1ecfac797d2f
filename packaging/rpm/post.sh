# linux-status %post: link the agent snippet into the folder the installed agent's
# configuration includes, when that is not /etc/zabbix/zabbix_agentd.d/ (Zabbix's RPMs read
# it; a hand-made or other repository's zabbix_agentd.conf may not). See
# /usr/sbin/linux-status-agent-includes. Never fails the transaction.
/usr/sbin/linux-status-agent-includes place || :
exit 0
