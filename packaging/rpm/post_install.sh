# %post of runner ($1: 1 on a first install, 2 or more on an upgrade).
#
# The units, as the systemd RPM macros do it: the distribution's preset policy decides
# whether they are enabled (most presets leave them disabled: `systemctl enable
# runner.service`). Nothing is started: installing a package must not run the admin's
# tasks. /etc/runner/tasks.d and /var/lib/runner are the package's own directories.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload preset runner.service runner-daemon.service >/dev/null 2>&1 || :
fi
