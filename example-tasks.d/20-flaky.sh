#!/bin/sh
# Fails on the first chain attempt of each run and succeeds on the second, to show a retry.
marker="${TMPDIR:-/tmp}/runner-example-flaky-$RUNNER_RUN_ID"
if [ ! -e "$marker" ]; then
    : > "$marker"
    echo "flaky: first try of this run fails on purpose (exit 1 means: retry the chain)" >&2
    exit 1
fi
rm -f "$marker"
echo "flaky: try $RUNNER_TRY of $RUNNER_MAX_TRIES succeeds"
