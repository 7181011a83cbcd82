#!/bin/sh
# [env] values arrive as environment variables; the task's own section is read with -g.
audience=$($RUNNER_CONFIG_CMD -g greet.audience)
echo "greet: $GREETING, to $audience"
