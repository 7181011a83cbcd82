#!/bin/sh
# Builds runner's .deb and .rpm from a checkout: the release binary, man pages from the
# clap definition (examples/mangen.rs), shell completions from the binary itself, then
# `cargo deb` with the assets listed in Cargo.toml, and rpmbuild with
# packaging/rpm/runner.spec.
#
# Usage: packaging/build.sh
# Needs: the Rust toolchain, strip (binutils), dpkg-deb and rpmbuild (rpm). Installs
# cargo-deb with `cargo install --locked` when it is missing.
# Writes: target/debian/*.deb, target/rpm/*.rpm, and target/packaging/ (the
# generated files, plus packages.env naming both packages for packaging/test.sh).
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)

# Cargo.toml's asset paths name ./target, so the build must land there.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
# One date for the man pages and the archives' time stamps: the last commit's, so that
# the same commit gives the same files (reproducible-builds.org).
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
out=target/packaging

step() {
	printf '== %s\n' "$*"
}

die() {
	printf 'packaging/build.sh: error: %s\n' "$*" >&2
	exit 1
}

for doc in README.md CHANGELOG.md LICENSE; do
	[ -f "$doc" ] || die "$doc is missing: the packages ship it in /usr/share/doc/runner"
done
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt-get install dpkg)"
command -v strip >/dev/null || die "strip is missing (apt-get install binutils)"
command -v rpmbuild >/dev/null || die "rpmbuild is missing (apt-get install rpm)"

# `cargo deb` is a cargo subcommand from crates.io.
if ! cargo deb --version >/dev/null 2>&1; then
	step "cargo install --locked cargo-deb (first time only: compiling it takes several minutes)"
	cargo install --locked cargo-deb
	step "cargo-deb installed"
fi

step "cargo build --release (a few minutes from a clean checkout)"
cargo build --release --locked

rm -rf "$out"
mkdir -p "$out/man" "$out/completions"

step "man pages -> $out/man"
cargo run --release --locked --quiet --example mangen -- "$out/man" >/dev/null
# -n: no name or time stamp in the gzip header, so the same page gives the same bytes.
gzip -9nf "$out"/man/*.1
ls "$out/man"

step "shell completions -> $out/completions"
bin=target/release/runner
"$bin" completions bash >"$out/completions/runner.bash"
"$bin" completions zsh >"$out/completions/_runner"
"$bin" completions fish >"$out/completions/runner.fish"
ls "$out/completions"

# cargo-deb strips the binary it packs, the rpm spec packs what it is given: the rpm gets this
# stripped copy. The build's own binary keeps its symbols.
strip --strip-all -o "$out/runner" "$bin"

step "cargo deb --no-build"
rm -f target/debian/runner_*.deb
cargo deb --no-build
set -- target/debian/runner_*.deb
deb=$1

# cargo-deb packs files only, and /etc/runner/tasks.d must exist, empty, and belong to the
# package (dpkg -S, removal when empty). Nor does it write md5sums, which debsums and
# `dpkg --verify` check installed files against. Unpack the archive, add both, and pack it
# again with dpkg-deb itself; the other control files are kept as they are.
step "add the empty /etc/runner/tasks.d and md5sums to $deb"
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
dpkg-deb --raw-extract "$deb" "$tree/pkg"
install -d -m 0755 "$tree/pkg/etc/runner/tasks.d"
(
	cd "$tree/pkg"
	# As dh_md5sums does: every file but the conffiles, whose sums dpkg keeps itself.
	sed 's|^/||' DEBIAN/conffiles >"$tree/conffiles"
	find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
		grep -vxF -f "$tree/conffiles" | tr '\n' '\0' | xargs -0 md5sum >DEBIAN/md5sums
)
chmod 0644 "$tree/pkg/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$tree/pkg" "$deb" >/dev/null

# rpmbuild (Debian's rpm package) packs the files made above as packaging/rpm/runner.spec
# lists them, directories included; it compiles nothing, strips nothing, and stamps the
# archive with SOURCE_DATE_EPOCH.
step "rpmbuild -bb packaging/rpm/runner.spec"
rm -rf target/rpm
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
LC_ALL=C rpmbuild -bb --quiet \
	--define "_topdir $tree/rpmbuild" \
	--define "_rpmdir $root/target/rpm" \
	--define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
	--define "_buildhost reproducible" \
	--define "use_source_date_epoch_as_buildtime 1" \
	--define "clamp_mtime_to_source_date_epoch 1" \
	--define "__os_install_post %{nil}" \
	--define "debug_package %{nil}" \
	--define "_build_id_links none" \
	--define "pkg_version $version" \
	--define "src $root" \
	--define "changelog_date $(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y')" \
	packaging/rpm/runner.spec
set -- target/rpm/runner-*.rpm
rpm=$1

printf 'DEB=%s\nRPM=%s\n' "$root/$deb" "$root/$rpm" >"$out/packages.env"
step "packages"
printf 'deb: %s\nrpm: %s\n' "$root/$deb" "$root/$rpm"
