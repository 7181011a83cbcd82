#!/bin/sh
# The whole test suite: formatting, lints, unit and black-box tests, then the packaging
# tests. CI (.ci/run) calls exactly this.
#
# The packaging tests need lintian, rpm and rpmlint from Debian's packages, and the
# metrics and report tests Prometheus and Chromium: as root they are installed when
# missing; otherwise those tests are skipped with a message saying so.
set -eu
cd "$(dirname "$0")/.."

missing=
for tool in lintian rpm rpmbuild dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== apt-get install lintian rpm (missing:$missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends lintian rpm dpkg-dev binutils >/dev/null
    missing=
fi
observe_missing=
for tool in promtool prometheus chromium rpmlint python3; do
    command -v "$tool" >/dev/null 2>&1 || observe_missing="$observe_missing $tool"
done
if [ -n "$observe_missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== apt-get install prometheus chromium rpmlint python3 (missing:$observe_missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus chromium rpmlint python3 >/dev/null
fi
# The fleet tests (tests/cli/fleet.rs) start a PostgreSQL server of their own.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
    echo "== apt-get install postgresql (for the fleet tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
# Tests that cannot get a tool or privilege say so in this file (cargo test hides the
# stderr of passing tests); it is printed after the run, so no skip goes unseen.
RUNNER_TEST_SKIPS="$(pwd)/target/test-skips.txt"
export RUNNER_TEST_SKIPS
mkdir -p target && : > "$RUNNER_TEST_SKIPS"
cargo test --all-targets
if [ -s "$RUNNER_TEST_SKIPS" ]; then
    echo "== tests skipped ($(wc -l < "$RUNNER_TEST_SKIPS")):"
    sed 's/^/   /' "$RUNNER_TEST_SKIPS"
else
    echo "== no test skipped"
fi

if [ -n "$missing" ]; then
    echo "== packaging tests SKIPPED: missing$missing (run as root, or apt-get install lintian rpm)"
else
    echo "== packaging tests"
    packaging/test.sh
fi
