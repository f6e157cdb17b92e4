#!/usr/bin/env bash
# Smoke tests of the built images (run by `make test-images`, after `make images`), without a
# Docker daemon or a cluster: each OCI archive is unpacked by umoci into a runtime bundle (rootfs
# plus the config.json its image config implies: user, env, working dir, entrypoint) and run by runc.
# Not part of `make test`: it needs root, debootstrap and a few minutes.
# Every check runs even if an earlier one failed; the summary line counts them.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/k8s/lib.sh
source scripts/k8s/oci.sh

WORKER=${WORKER_ARCHIVE:-$OCI_ARCHIVES/rheo.tar}
OPERATOR=${OPERATOR_ARCHIVE:-$OCI_ARCHIVES/rheo-operator.tar}
pass=0 fail=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
apt_install runc umoci jq

ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; [[ -n ${2:-} ]] && sed 's/^/     | /' <<<"$2" | head -40; fail=$((fail + 1)); }
# check NAME CMD...: the command must exit 0; its output is left in $out
check() { local name=$1; shift; if out=$("$@" 2>&1); then ok "$name"; return 0; else bad "$name (exit $?)" "$out"; return 1; fi; }

# bundle NAME ARCHIVE: unpacks the image's `latest` tag into $work/NAME (rootfs + config.json).
bundle() {
  mkdir -p "$work/$1-oci" && tar -C "$work/$1-oci" -xf "$2" \
    && umoci unpack --image "$work/$1-oci:latest" "$work/$1" >/dev/null \
    && cp "$work/$1/config.json" "$work/$1/image-config.json"
}
# image_config NAME JQ: a field of the image's own config (not the runtime bundle's).
image_config() {
  local l=$work/$1-oci m c
  m=$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$l/index.json")
  c=$(jq -r '.config.digest | sub("sha256:"; "")' "$l/blobs/sha256/$m")
  jq -c "$2" "$l/blobs/sha256/$c"
}
# umoci's bundle mounts a tmpfs on each VOLUME of the image; a --tmpfs or --bind replaces it.
# run NAME [--read-only] [--tmpfs DIR] [--bind SRC:DST] [--entrypoint PROG] -- [ARGS...]: like
# `docker run --rm`: ARGS replace the image's CMD, --entrypoint replaces its ENTRYPOINT.
run() {
  local name=$1 ro=false ep= mounts='[]'; shift
  while [[ $1 != -- ]]; do
    case $1 in
      --read-only) ro=true ;;
      # A tmpfs owned like the image's directory there, as Docker initialises a VOLUME.
      --tmpfs) local own; own=$(stat -c 'uid=%u gid=%g' "$work/$name/rootfs$2" 2>/dev/null || echo 'uid=0 gid=0')
               mounts=$(jq -c --arg d "$2" --arg u "${own% *}" --arg g "${own#* }" \
                 '. + [{destination: $d, type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", $u, $g]}]' <<<"$mounts"); shift ;;
      --bind) mounts=$(jq -c --arg s "${2%%:*}" --arg d "${2#*:}" '. + [{destination: $d, type: "bind", source: $s, options: ["rbind", "ro"]}]' <<<"$mounts"); shift ;;
      --entrypoint) ep=$2; shift ;;
    esac
    shift
  done
  shift
  local args entry cmd a
  entry=$(image_config "$name" '.config.Entrypoint // []')
  cmd=$(image_config "$name" '.config.Cmd // []')
  [[ -n $ep ]] && entry=$(jq -cn --arg e "$ep" '[$e]')
  if [[ $# -gt 0 ]]; then
    cmd='[]'
    for a in "$@"; do cmd=$(jq -c --arg a "$a" '. + [$a]' <<<"$cmd"); done
  fi
  args=$(jq -cn --argjson e "$entry" --argjson c "$cmd" '$e + $c')
  jq --argjson a "$args" --argjson ro $ro --argjson m "$mounts" \
    '.process.args = $a | .process.terminal = false | .root.readonly = $ro
     | .mounts = [.mounts[] | select(.destination as $d | $m | map(.destination) | index($d) | not)] + $m' \
    "$work/$name/image-config.json" >"$work/$name/config.json"
  runc --root "$work/runc" run --bundle "$work/$name" "test-$name-$$" </dev/null
}

bundle worker "$WORKER" || bad "worker: cannot unpack $WORKER"
bundle operator "$OPERATOR" || bad "operator: cannot unpack $OPERATOR"

# --- worker image ----------------------------------------------------------------------------
check "worker: rheo --help (read-only root)" run worker --read-only --tmpfs /tmp -- --help
check "worker: rheo jobs lists word-count" run worker --read-only --tmpfs /tmp -- jobs \
  && { grep -qw word-count <<<"$out" || bad "worker: 'rheo jobs' does not name word-count" "$out"; }

check "worker: runs as uid 10001" run worker --entrypoint id -- -u
[[ ${out:-} == 10001 ]] || bad "worker: uid is '${out:-}', not 10001"
check "worker: config dir, data dir, CA bundle" run worker --read-only --tmpfs /tmp --tmpfs /opt/rheo/data --entrypoint /bin/sh -- -c \
  'test "$RHEO_CONF_DIR" = /opt/rheo/conf && test -d /opt/rheo/conf && test "$(pwd)" = /opt/rheo/data &&
   touch /opt/rheo/data/w /tmp/w && ! touch /usr/w 2>/dev/null && test -s /etc/ssl/certs/ca-certificates.crt'
ports=$(image_config worker '.config.ExposedPorts | keys | join(" ")')
[[ $ports == *8081/tcp* && $ports == *6123/tcp* && $ports == *6121/tcp* ]] && ok "worker: exposes 8081 6123 6121" \
  || bad "worker: exposed ports are '$ports'"

# The real job: a word count on the embedded mini-cluster, input mounted read-only.
mkdir -p "$work/data"
printf 'to be or not to be\nthat is the question\nto be is to do\n' >"$work/data/words.txt"
chmod -R a+rX "$work"
if check "worker: rheo run word-count --input /data/words.txt" \
     run worker --read-only --tmpfs /tmp --tmpfs /opt/rheo/data --bind "$work/data:/data" -- run word-count --input /data/words.txt; then
  # Accept the usual printings of a (word, count) pair: "(to,4)", "to 4", "to: 4", "to=4", JSON.
  missing=()
  for pair in to:4 be:3 is:2 or:1 not:1 that:1 the:1 question:1 do:1; do
    w=${pair%:*} n=${pair#*:}
    grep -Eq "(^|[^[:alnum:]_])\"?$w\"?[^[:alnum:]_]{1,4}$n([^[:digit:]]|$)" <<<"$out" || missing+=("$w=$n")
  done
  [[ ${#missing[@]} -eq 0 ]] && ok "worker: word counts correct" || bad "worker: counts not printed: ${missing[*]}" "$out"
fi

# --- operator image --------------------------------------------------------------------------
check "operator: runs as uid 10001" run operator --entrypoint id -- -u
[[ ${out:-} == 10001 ]] || bad "operator: uid is '${out:-}', not 10001"
cmd=$(image_config operator '[.config.Entrypoint, .config.Cmd] | map(tostring) | join(" ")')
[[ $cmd == '"[\"rheo-operator\"] [\"run\"]"' ]] && ok "operator: ENTRYPOINT rheo-operator, CMD run" || bad "operator: entrypoint/cmd $cmd"
if check "operator: rheo-operator crd" run operator --read-only --tmpfs /tmp -- crd; then
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
