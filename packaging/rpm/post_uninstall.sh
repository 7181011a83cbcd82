# %postun of runner ($1: 0 after an erase, 1 or more after an upgrade): reload the units,
# and after an upgrade let a running scheduler pick up the new binary.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart runner-daemon.service >/dev/null 2>&1 || :
	fi
fi
# After an erase, remove the directories the %post made if nothing is left in them. The
# records in /var/lib/runner stay: delete them by hand.
if [ "$1" -eq 0 ]; then
	rmdir /etc/runner/tasks.d /etc/runner 2>/dev/null || :
fi
