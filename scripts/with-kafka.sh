#!/usr/bin/env bash
# Runs a command with a real Apache Kafka broker (one KRaft node on 127.0.0.1) and
# KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT, then stops the broker again (only if it started it).
# The project venv (scripts/pyenv.sh, with confluent-kafka) comes first on PATH, so
# `scripts/with-kafka.sh python scripts/services/kafka_smoke.py` works as written.
set -euo pipefail
services=$(cd "$(dirname "$0")" && pwd)/services
PATH=$("$services/../pyenv.sh"):$PATH
export PATH
if "$services/kafka.sh" status >/dev/null 2>&1; then
  eval "$("$services/kafka.sh" env)"
else
  env_lines=$("$services/kafka.sh" start)
  eval "$env_lines"
  trap '"$services/kafka.sh" stop' EXIT
fi
export KAFKA_BOOTSTRAP
"$@"
