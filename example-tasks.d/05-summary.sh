#!/bin/sh
# Sorted first by file name, but [summary] depends_on = flaky moves it after that task.
echo "summary: run $RUNNER_RUN_ID of job $RUNNER_JOB finished its tasks (this was try $RUNNER_TRY)"
