# linux-status %preun. $1 is how many linux-status packages remain after this one goes: 0 on
# erase (delete the links %post made, while the command is still installed), 1 on upgrade
# (keep them: the new %post places them again).
if [ "$1" = 0 ]; then
	/usr/sbin/linux-status-agent-includes remove || :
fi
exit 0
