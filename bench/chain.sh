#!/bin/sh
# Builds runner in release mode and prints the chain benchmark's figures.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/chain.py "$@"
