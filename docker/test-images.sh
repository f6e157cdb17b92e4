#!/usr/bin/env bash
# Smoke tests of the built images (run by `make test-images`, after `make images`).
# Not part of `make test`: it needs debootstrap, root and a few minutes.
# Every check runs even if an earlier one failed; the summary line counts them.
set -uo pipefail
cd "$(dirname "$0")/.."

WORKER=${WORKER_IMAGE:-rheo:latest}
OPERATOR=${OPERATOR_IMAGE:-rheo-operator:latest}
pass=0 fail=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; [[ -n ${2:-} ]] && sed 's/^/     | /' <<<"$2" | head -40; fail=$((fail + 1)); }
# check NAME CMD...: the command must exit 0; its output is left in $out
check() { local name=$1; shift; if out=$("$@" 2>&1); then ok "$name"; return 0; else bad "$name (exit $?)" "$out"; return 1; fi; }

# --- worker image ----------------------------------------------------------------------------
check "worker: rheo --help (read-only root)" docker run --rm --read-only --tmpfs /tmp "$WORKER" --help
check "worker: rheo jobs lists word-count" docker run --rm --read-only --tmpfs /tmp "$WORKER" jobs \
  && { grep -qw word-count <<<"$out" || bad "worker: 'rheo jobs' does not name word-count" "$out"; }

check "worker: runs as uid 10001" docker run --rm --entrypoint id "$WORKER" -u
[[ ${out:-} == 10001 ]] || bad "worker: uid is '${out:-}', not 10001"
check "worker: config dir, data dir, CA bundle" docker run --rm --read-only --entrypoint /bin/sh "$WORKER" -c \
  'test "$RHEO_CONF_DIR" = /opt/rheo/conf && test -d /opt/rheo/conf && test "$(pwd)" = /opt/rheo/data &&
   touch /opt/rheo/data/w /tmp/w && ! touch /usr/w 2>/dev/null && test -s /etc/ssl/certs/ca-certificates.crt'
ports=$(docker image inspect -f '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' "$WORKER")
[[ $ports == *8081/tcp* && $ports == *6123/tcp* && $ports == *6121/tcp* ]] && ok "worker: exposes 8081 6123 6121" \
  || bad "worker: exposed ports are '$ports'"

# The real job: a word count on the embedded mini-cluster, input mounted read-only.
mkdir -p "$work/data"
printf 'to be or not to be\nthat is the question\nto be is to do\n' >"$work/data/words.txt"
chmod -R a+rX "$work"
if check "worker: rheo run word-count --input /data/words.txt" \
     docker run --rm --read-only --tmpfs /tmp -v "$work/data:/data:ro" "$WORKER" run word-count --input /data/words.txt; then
  # Accept the usual printings of a (word, count) pair: "(to,4)", "to 4", "to: 4", "to=4", JSON.
  missing=()
  for pair in to:4 be:3 is:2 or:1 not:1 that:1 the:1 question:1 do:1; do
    w=${pair%:*} n=${pair#*:}
    grep -Eq "(^|[^[:alnum:]_])\"?$w\"?[^[:alnum:]_]{1,4}$n([^[:digit:]]|$)" <<<"$out" || missing+=("$w=$n")
  done
  [[ ${#missing[@]} -eq 0 ]] && ok "worker: word counts correct" || bad "worker: counts not printed: ${missing[*]}" "$out"
fi

# --- operator image --------------------------------------------------------------------------
check "operator: runs as uid 10001" docker run --rm --entrypoint id "$OPERATOR" -u
[[ ${out:-} == 10001 ]] || bad "operator: uid is '${out:-}', not 10001"
cmd=$(docker image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$OPERATOR")
[[ $cmd == '["rheo-operator"] ["run"]' ]] && ok "operator: ENTRYPOINT rheo-operator, CMD run" || bad "operator: entrypoint/cmd $cmd"
if check "operator: rheo-operator crd" docker run --rm --read-only --tmpfs /tmp "$OPERATOR" crd; then
  if grep -q 'kind: CustomResourceDefinition' <<<"$out" && grep -q 'flinkjobs.rheo.io' <<<"$out"; then
    ok "operator: prints the FlinkJob CRD"
    if [[ -f crds/flinkjob.yaml ]]; then
      printf '%s\n' "$out" >"$work/crd.yaml"
      if "$(scripts/pyenv.sh)/python" -c 'import sys, yaml
a, b = (list(yaml.safe_load_all(open(p))) for p in sys.argv[1:])
sys.exit(0 if [d for d in a if d] == [d for d in b if d] else 1)' "$work/crd.yaml" crds/flinkjob.yaml; then
        ok "operator: printed CRD equals crds/flinkjob.yaml"
      else
        bad "operator: printed CRD differs from crds/flinkjob.yaml (stale image or stale file)"
      fi
    fi
  else
    bad "operator: 'crd' printed no CustomResourceDefinition flinkjobs.rheo.io" "$out"
  fi
fi

echo "test-images: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
