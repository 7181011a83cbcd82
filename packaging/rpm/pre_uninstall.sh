# %preun of runner ($1: 0 when the package is erased, 1 or more on an upgrade): on erase,
# disable the units and stop what runs from the package's binary.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload disable runner.service runner-daemon.service >/dev/null 2>&1 || :
	if [ -d /run/systemd/system ]; then
		systemctl stop runner-daemon.service runner.service >/dev/null 2>&1 || :
	fi
fi
