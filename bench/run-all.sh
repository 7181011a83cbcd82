#!/bin/sh
# Builds runner in release mode and prints every benchmark figure the issues ask for.
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet
python3 bench/chain.py "$@"
python3 bench/chain_cost.py
python3 bench/records.py
python3 bench/daemon.py
python3 bench/daemon_counts.py
python3 bench/observe.py
python3 bench/overshoot.py
python3 bench/escape.py
python3 bench/events.py
