#!/bin/sh
# The whole test suite: formatting, lints, unit and black-box tests, then the packaging
# tests when their tools are present. CI (.ci/run) calls exactly this.
set -eu
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets
if [ -x packaging/test.sh ]; then
    echo "== packaging tests"
    packaging/test.sh
fi
