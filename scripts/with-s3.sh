#!/usr/bin/env bash
# Runs a command with a real S3 endpoint (SeaweedFS on 127.0.0.1) and its environment
# (AWS_*, RHEO_TEST_S3), then stops the endpoint again.
set -euo pipefail
services=$(cd "$(dirname "$0")" && pwd)/services
env_lines=$("$services/s3.sh" start)
eval "$env_lines"
trap '"$services/s3.sh" stop' EXIT
"$@"
