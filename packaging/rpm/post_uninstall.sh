# %postun of runner ($1: 0 after an erase, 1 or more after an upgrade): reload the units,
# and after an upgrade let a running scheduler pick up the new binary. rpm removes the
# package's directories itself when they are empty; the records in /var/lib/runner stay.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart runner-daemon.service >/dev/null 2>&1 || :
	fi
fi
