#!/bin/sh
# The halt task: on a real machine this might power off or mark the instance unhealthy.
# runner runs it when a task exits 2, when retries run out, or after success with -H.
echo "halt: the chain is done; a real halt task could shut the machine down here"
