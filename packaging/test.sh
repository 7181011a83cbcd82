#!/bin/sh
# shellcheck disable=SC2317 # the helpers below are called through check()
# Tests of the packages: builds them with packaging/build.sh, then checks what they hold,
# where, and that what they hold works. Called by scripts/test.sh; needs lintian, rpm
# and rpmbuild, and dpkg-deb (apt-get install lintian rpm). systemd-analyze and man are
# used when present.
#
# Prints one line per check and ends with "packaging: N passed, M failed"; exits non-zero
# when a check failed.
set -eu

cd "$(dirname "$0")/.."

passed=0
failed=0
finished=
work=$(mktemp -d)
# A command outside check() that fails stops the script (set -e): say so last anyway.
on_exit() {
	status=$?
	rm -rf "$work"
	if [ -z "$finished" ]; then
		printf '\nFAIL the script stopped early (exit %d)\n' "$status"
		printf 'packaging: %d passed, %d failed\n' "$passed" "$((failed + 1))"
	fi
}
trap on_exit EXIT

# check DESCRIPTION COMMAND [ARG...]: runs the command, counts and reports the result.
# Its output is shown only when it fails.
check() {
	desc=$1
	shift
	if "$@" >"$work/out" 2>&1; then
		passed=$((passed + 1))
		printf 'ok   %s\n' "$desc"
	else
		failed=$((failed + 1))
		printf 'FAIL %s\n' "$desc"
		sed 's/^/     | /' "$work/out"
	fi
}

section() {
	printf '\n== %s\n' "$*"
}

finish() {
	finished=1
	printf '\npackaging: %d passed, %d failed\n' "$passed" "$failed"
	if [ "$failed" -ne 0 ]; then
		exit 1
	fi
	exit 0
}

# has_line FILE PATTERN: FILE has a line matching the extended regular expression.
has_line() {
	grep -Eq -- "$2" "$1" || {
		printf 'no line matching /%s/ in:\n' "$2"
		cat "$1"
		return 1
	}
}

# lacks_line FILE PATTERN: the opposite.
lacks_line() {
	if grep -E -- "$2" "$1"; then
		printf '(the lines above match /%s/)\n' "$2"
		return 1
	fi
}

# same TEXT1 TEXT2: the two strings are equal.
same() {
	[ "$1" = "$2" ] || {
		printf 'expected: %s\n     got: %s\n' "$2" "$1"
		return 1
	}
}

# has_output PATTERN COMMAND [ARG...]: the command exits 0 and prints a matching line.
has_output() {
	pattern=$1
	shift
	"$@" >"$work/cmd.out" 2>&1 || {
		printf 'exit %s: %s\n' "$?" "$*"
		cat "$work/cmd.out"
		return 1
	}
	has_line "$work/cmd.out" "$pattern"
}

# is_stripped FILE: FILE has neither a symbol table nor debug information.
is_stripped() {
	readelf -S "$1" >"$work/sections"
	lacks_line "$work/sections" '\.(symtab|debug_info) '
}

# man_renders PAGE NAME: man renders PAGE without a warning, under the title NAME(1).
man_renders() {
	LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$1" >"$work/man.out" 2>"$work/man.err" || {
		cat "$work/man.err"
		return 1
	}
	[ ! -s "$work/man.err" ] || {
		cat "$work/man.err"
		return 1
	}
	has_line "$work/man.out" "^$2\\(1\\) "
}

# zcat_title PAGE NAME: PAGE's .TH line names NAME, section 1.
zcat_title() {
	zcat "$1" >"$work/page"
	has_line "$work/page" "^\\.TH \"?$2\"? 1 "
}

# main_page_sections PAGE: runner.1 has the sections clap cannot generate.
main_page_sections() {
	zcat "$1" >"$work/page"
	for heading in '"TASK DIRECTORY"' '"EXIT STATUS"' ENVIRONMENT FILES; do
		has_line "$work/page" "^\\.SH $heading\$" || return 1
	done
}

# unit_verifies UNIT: systemd-analyze verify accepts the packaged unit file. The unit is
# copied with /usr/bin/runner pointing into the unpacked package (verify wants every
# ExecStart binary to exist) and man pages looked up there (Documentation=man:runner(1)).
# A template is verified through an instance, "check".
unit_verifies() {
	units=$work/units
	mkdir -p "$units"
	for file in "$root"/lib/systemd/system/runner*; do
		sed "s|/usr/bin/runner|$bin|g" "$file" >"$units/$(basename "$file")"
	done
	instance=$(printf '%s' "$1" | sed 's/@\./@check./')
	[ "$instance" = "$1" ] || ln -sf "$1" "$units/$instance"
	MANPATH=$root/usr/share/man SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$units/$instance"
}

# ---------------------------------------------------------------------------------------
section "build both packages (packaging/build.sh)"
# The build's steps are shown as they start (the first one installs cargo-deb and takes
# minutes); the rest of its output only when it fails.
build_rc=0
{ packaging/build.sh || echo "$?" >"$work/build.rc"; } 2>&1 | tee "$work/build.log" |
	sed -u -n 's/^== \(.*\)/     ... \1/p'
[ ! -s "$work/build.rc" ] || build_rc=$(cat "$work/build.rc")
if [ "$build_rc" -eq 0 ]; then
	passed=$((passed + 1))
	echo "ok   packaging/build.sh built a .deb and an .rpm"
	sed -n '/^== packages/,$p' "$work/build.log"
else
	failed=$((failed + 1))
	echo "FAIL packaging/build.sh"
	tail -n 40 "$work/build.log" | sed 's/^/     | /'
	finish
fi
# shellcheck source=/dev/null
. target/packaging/packages.env
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

# ---------------------------------------------------------------------------------------
section "lintian $(basename "$DEB")"
lintian_rc=0
lintian --tag-display-limit 0 "$DEB" >"$work/lintian" 2>&1 || lintian_rc=$?
sed 's/^/     | /' "$work/lintian"
# lintian exits 0 when clean, 2 when it found errors, and 1 when it could not run.
check "lintian ran (exit $lintian_rc)" [ "$lintian_rc" -ne 1 ]
check "lintian reports no error (E:)" lacks_line "$work/lintian" '^E: '
synopsis=$(dpkg-deb -f "$DEB" Description | head -n 1)
check "deb: the synopsis fits dpkg -l (at most 60 characters): $synopsis" [ "${#synopsis}" -le 60 ]
check "deb: the long description is whole sentences" \
	sh -c "dpkg-deb -f '$DEB' Description | sed -n 2p | grep -q '^ runner executes '"

# ---------------------------------------------------------------------------------------
section "contents of the .deb (dpkg-deb -c)"
dpkg-deb -c "$DEB" >"$work/deb.list"
deb_entry() {
	# dpkg-deb -c: PERMS OWNER/GROUP SIZE DATE TIME ./PATH
	has_line "$work/deb.list" "^$1 root/root +[0-9]+ [-0-9]+ [:0-9]+ \\./$2\$"
}
for path in \
	usr/bin/runner \
	lib/systemd/system/runner.service \
	lib/systemd/system/runner-daemon.service \
	lib/systemd/system/runner-chain@.service \
	lib/systemd/system/runner-chain@.timer \
	etc/runner/runner.ini \
	usr/share/man/man1/runner.1.gz \
	usr/share/man/man1/runner-run.1.gz \
	usr/share/man/man1/runner-check.1.gz \
	usr/share/man/man1/runner-completions.1.gz \
	usr/share/bash-completion/completions/runner \
	usr/share/zsh/vendor-completions/_runner \
	usr/share/fish/vendor_completions.d/runner.fish \
	usr/share/doc/runner/copyright \
	usr/share/doc/runner/changelog.Debian.gz \
	usr/share/doc/runner/changelog.gz \
	usr/share/doc/runner/README.md \
	usr/share/lintian/overrides/runner; do
	case $path in
	usr/bin/*) mode=-rwxr-xr-x ;;
	*) mode=-rw-r--r-- ;;
	esac
	check "deb: /$path ($mode root)" deb_entry "$mode" "$path"
done
for page in target/packaging/man/*.1.gz; do
	check "deb: every generated man page: $(basename "$page")" \
		deb_entry -rw-r--r-- "usr/share/man/man1/$(basename "$page")"
done
check "deb: /etc/runner/tasks.d/ is an empty directory (drwxr-xr-x root)" \
	deb_entry drwxr-xr-x etc/runner/tasks.d/
check "deb: nothing inside /etc/runner/tasks.d (it holds tasks only)" \
	lacks_line "$work/deb.list" '\./etc/runner/tasks\.d/.'

dpkg-deb -I "$DEB" conffiles >"$work/conffiles" 2>&1 || true
check "deb: /etc/runner/runner.ini is a conffile" has_line "$work/conffiles" '^/etc/runner/runner\.ini$'
dpkg-deb -I "$DEB" md5sums >"$work/md5sums" 2>&1 || true
check "deb: md5sums list /usr/bin/runner" has_line "$work/md5sums" '^[0-9a-f]{32}  usr/bin/runner$'
check "deb: md5sums leave out the conffile" lacks_line "$work/md5sums" 'etc/runner/runner\.ini'
check "deb: version is $version-1" same "$(dpkg-deb -f "$DEB" Version)" "$version-1"
check "deb: packaging/debian/changelog is at $version-1" \
	has_line packaging/debian/changelog "^runner \\($version-1\\) "

dpkg-deb -I "$DEB" postinst >"$work/postinst"
dpkg-deb -I "$DEB" postrm >"$work/postrm"
check "deb postinst: creates /var/lib/runner with mode 0700, owner root" \
	has_line "$work/postinst" '^[[:space:]]*install -d -m 0700 -o root -g root /var/lib/runner$'
check "deb postinst: enables runner.service" \
	has_line "$work/postinst" 'deb-systemd-helper enable runner\.service'
check "deb postinst: reloads systemd" has_line "$work/postinst" 'systemctl --system daemon-reload'
check "deb postinst: never starts the boot chain" \
	lacks_line "$work/postinst" '(start|restart).*runner\.service'
check "deb postrm: purge deletes /var/lib/runner" has_line "$work/postrm" 'rm -rf /var/lib/runner'
check "deb maintainer scripts: sh -n" sh -n "$work/postinst" "$work/postrm"

# ---------------------------------------------------------------------------------------
section "contents of the .rpm (rpm -qpl)"
rpm -qp --nosignature --queryformat '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' \
	"$RPM" >"$work/rpm.list"
rpm -qpl --nosignature "$RPM" >"$work/rpm.names"
rpm_entry() {
	# PERMS USER FLAGS PATH; FLAGS is c for a config file, n for noreplace, d for a doc.
	has_line "$work/rpm.list" "^$1 root [a-z]* $2\$"
}
for path in \
	/usr/bin/runner \
	/usr/lib/systemd/system/runner.service \
	/usr/lib/systemd/system/runner-daemon.service \
	/usr/lib/systemd/system/runner-chain@.service \
	/usr/lib/systemd/system/runner-chain@.timer \
	/etc/runner/runner.ini \
	/usr/share/man/man1/runner.1.gz \
	/usr/share/man/man1/runner-run.1.gz \
	/usr/share/man/man1/runner-check.1.gz \
	/usr/share/man/man1/runner-completions.1.gz \
	/usr/share/bash-completion/completions/runner \
	/usr/share/zsh/site-functions/_runner \
	/usr/share/fish/vendor_completions.d/runner.fish \
	/usr/share/doc/runner/README.md \
	/usr/share/doc/runner/CHANGELOG.md \
	/usr/share/licenses/runner/LICENSE; do
	case $path in
	/usr/bin/*) mode=-rwxr-xr-x ;;
	*) mode=-rw-r--r-- ;;
	esac
	check "rpm: $path ($mode root)" rpm_entry "$mode" "$path"
done
for page in target/packaging/man/*.1.gz; do
	check "rpm: every generated man page: $(basename "$page")" \
		has_line "$work/rpm.names" "^/usr/share/man/man1/$(basename "$page")\$"
done
check "rpm: /etc/runner/runner.ini is %config(noreplace)" \
	has_line "$work/rpm.list" '^-rw-r--r-- root cn /etc/runner/runner\.ini$'
check "rpm: version is $version-1" \
	same "$(rpm -qp --nosignature --queryformat '%{VERSION}-%{RELEASE}' "$RPM")" "$version-1"
rpm -qp --nosignature --scripts "$RPM" >"$work/rpm.scripts"
# The package owns its directories: the boot chain's (empty) task directory, and the
# records, root only.
for dir in /etc/runner/tasks.d /var/lib/runner; do
	check "rpm -qlp lists $dir" has_line "$work/rpm.names" "^$dir\$"
done
check "rpm: /etc/runner/tasks.d is a directory (drwxr-xr-x root)" \
	rpm_entry drwxr-xr-x /etc/runner/tasks.d
check "rpm: /var/lib/runner is a directory (drwx------ root)" \
	rpm_entry drwx------ /var/lib/runner
check "rpm: no build-id links (the binary is the only ELF file)" \
	lacks_line "$work/rpm.names" '^/usr/lib/\.build-id'
check "rpm: nothing inside /etc/runner/tasks.d (it holds tasks only)" \
	lacks_line "$work/rpm.names" '^/etc/runner/tasks\.d/.'
# rpm -qf: installed into a scratch root (its own database, no scriptlets), each path
# is owned by this package, and erasing it removes the empty directories.
rpm_owns() {
	scratch=$work/rpm-install
	rm -rf "$scratch"
	mkdir -p "$scratch"
	rpm --root "$scratch" --initdb || return 1
	rpm --root "$scratch" -i --nodeps --noscripts --nosignature --ignorearch --ignoreos \
		--excludedocs "$RPM" || return 1
	for path in "$@"; do
		owner=$(rpm --root "$scratch" -qf --queryformat '%{NAME}' "$path") || {
			echo "rpm -qf $path: $owner"
			return 1
		}
		same "$owner" runner || return 1
		[ -d "$scratch$path" ] || {
			echo "$path was not created"
			return 1
		}
	done
	same "$(stat -c %a "$scratch/var/lib/runner")" 700 || return 1
	rpm --root "$scratch" -e --nodeps --noscripts runner || return 1
	for path in "$@"; do
		[ ! -e "$scratch$path" ] || {
			echo "$path is left after rpm -e"
			return 1
		}
	done
}
check "rpm -qf: /etc/runner/tasks.d and /var/lib/runner belong to runner, rpm -e removes them" \
	rpm_owns /etc/runner/tasks.d /var/lib/runner
check "rpm %post: makes no directory (the package owns them)" \
	lacks_line "$work/rpm.scripts" 'install -d'
for tag in URL Vendor Packager Group; do
	check "rpm: has a $tag" sh -c "rpm -qp --nosignature --queryformat '%{$tag}' '$RPM' | grep -qv '^(none)$'"
done
check "rpm %post: applies the preset policy to the units" has_line "$work/rpm.scripts" 'systemctl --no-reload preset runner\.service'
check "rpm scriptlets: never start the boot chain" lacks_line "$work/rpm.scripts" '(start|restart) .*runner\.service'

# ---------------------------------------------------------------------------------------
section "rpmlint $(basename "$RPM")"
if command -v rpmlint >/dev/null 2>&1; then
	rpmlint_rc=0
	# packaging/rpm/runner.rpmlintrc names the one deliberate exception (and why).
	rpmlint -r packaging/rpm/runner.rpmlintrc "$RPM" >"$work/rpmlint" 2>&1 || rpmlint_rc=$?
	sed 's/^/     | /' "$work/rpmlint"
	# Signing is left to whoever publishes the package; any other error fails.
	grep -Ev ': E: no-signature$' "$work/rpmlint" >"$work/rpmlint.fixable" || :
	check "rpmlint ran (exit $rpmlint_rc)" [ -s "$work/rpmlint" ]
	check "rpmlint reports no error but the missing signature (E:)" \
		lacks_line "$work/rpmlint.fixable" ': E: '
	check "rpmlint: the summary is short enough" lacks_line "$work/rpmlint" 'summary-too-long'
else
	printf 'SKIPPED rpmlint: not installed (apt-get install rpmlint)\n'
fi

# ---------------------------------------------------------------------------------------
section "the packaged files work (dpkg-deb -x into a temporary root)"
root=$work/root
dpkg-deb -x "$DEB" "$root"
bin=$root/usr/bin/runner
ini=$root/etc/runner/runner.ini

check "deb: /usr/bin/runner is stripped" is_stripped "$bin"
check "deb: runner --version says $version" has_output "^runner $version\$" "$bin" --version

mkdir -p "$work/tasks"
cat >"$work/tasks/10-hello.sh" <<'EOF'
#!/bin/sh
echo "hello from task $RUNNER_TASK, try $RUNNER_TRY"
EOF
chmod 0755 "$work/tasks/10-hello.sh"
chain_runs() {
	"$bin" --config "$ini" --state-dir "$work/state" "$work/tasks" >"$work/chain.out" 2>&1 || {
		echo "exit $?"
		cat "$work/chain.out"
		return 1
	}
	has_line "$work/chain.out" '^hello from task hello, try 1$'
}
check "runner --config ROOT/etc/runner/runner.ini --state-dir TMP TASKDIR: exit 0, task output" chain_runs

get_max_tries() {
	"$bin" -c "$ini" -g runner.max_tries >"$work/get.out" 2>&1 || {
		echo "exit $?"
		cat "$work/get.out"
		return 1
	}
	# Every key of the shipped configuration is commented out: nothing is printed.
	[ ! -s "$work/get.out" ] || {
		echo "expected no output, got:"
		cat "$work/get.out"
		return 1
	}
}
check "runner -c ROOT/etc/runner/runner.ini -g runner.max_tries: exit 0, not set" get_max_tries
check "runner check on the packaged (empty) /etc/runner/tasks.d: exit 0" \
	"$bin" check --config "$ini" "$root/etc/runner/tasks.d"

check "bash completion: bash -n" bash -n "$root/usr/share/bash-completion/completions/runner"
check "bash completion: completes runner" has_line "$root/usr/share/bash-completion/completions/runner" 'complete .* runner$'
check "zsh completion: #compdef runner" has_line "$root/usr/share/zsh/vendor-completions/_runner" '^#compdef runner$'
check "fish completion: complete -c runner" has_line "$root/usr/share/fish/vendor_completions.d/runner.fish" '^complete -c runner '

rpmroot=$work/rpmroot
mkdir -p "$rpmroot"
rpm2archive - <"$RPM" | tar -xzf - -C "$rpmroot"
check "rpm: /usr/bin/runner is stripped" is_stripped "$rpmroot/usr/bin/runner"
check "rpm: runner --version says $version" has_output "^runner $version\$" "$rpmroot/usr/bin/runner" --version

# ---------------------------------------------------------------------------------------
section "man pages"
for page in "$root"/usr/share/man/man1/*.1.gz; do
	name=$(basename "$page" .1.gz)
	if command -v man >/dev/null; then
		check "man -l $name.1.gz: renders without warnings, titled $name" man_renders "$page" "$name"
	else
		check "$name.1.gz: titled $name (man is not installed: no rendering)" zcat_title "$page" "$name"
	fi
done
check "runner.1: has TASK DIRECTORY, EXIT STATUS, ENVIRONMENT and FILES" main_page_sections \
	"$root/usr/share/man/man1/runner.1.gz"

# ---------------------------------------------------------------------------------------
section "systemd units"
if command -v systemd-analyze >/dev/null; then
	for unit in runner.service runner-daemon.service runner-chain@.timer runner-chain@.service; do
		check "systemd-analyze verify $unit" unit_verifies "$unit"
	done
else
	echo "skipped: systemd-analyze is not installed"
fi

finish
