# Shared by scripts/k8s/*.sh (sourced, not run).
K8S_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RHEO_CACHE=${RHEO_CACHE:-$HOME/.cache/rheo}
K8S_CACHE=$RHEO_CACHE/k8s
K8S_VERSION=$(sed -n 's/^\tk8s\.io\/kubernetes \(v[0-9.]*\).*$/\1/p' "$K8S_SCRIPTS/tools/go.mod")
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd helm pause)
# The runtime dir of the cluster: state, certificates, logs, pids. Short: unix socket paths are limited.
K8S_RUN=${RHEO_K8S_RUN:-/var/lib/rheo-k8s}
K8S_PAUSE_IMAGE=${RHEO_PAUSE_IMAGE:-localhost/rheo-pause:3.10}

log() { echo "[k8s $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The versioned cache dir of the binaries: release + a hash of every file that decides the build.
k8s_bin_dir() {
  local h
  h=$(cat "$K8S_SCRIPTS/tools/go.mod" "$K8S_SCRIPTS/tools/go.sum" "$K8S_SCRIPTS/pause/main.go" "$K8S_SCRIPTS/build-tools.sh" \
      | sha256sum | cut -c1-10)
  echo "$K8S_CACHE/$K8S_VERSION-$h/bin"
}

# wait_for DESCRIPTION TIMEOUT_S CMD...: polls CMD (every 0.5 s) until it succeeds; fails after TIMEOUT_S.
# The poll is what waits: each check is an event (a socket answers, an object exists), never a sleep
# standing in for one.
wait_for() {
  local what=$1 timeout=$2 start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start >= timeout )); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
  log "$what after $((SECONDS - start)) s"
}

# apt_install PKG...: installs the Debian packages that are missing (idempotent, no recommends).
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "needs root to apt-get install ${missing[*]}"
  log "apt-get install ${missing[*]}"
  if [[ ! -f $K8S_CACHE/.apt-updated ]] || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq && mkdir -p "$K8S_CACHE" && touch "$K8S_CACHE/.apt-updated"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# A checked run on the cluster (smoke.sh, e2e.sh): `ok NAME` / `bad NAME [OUTPUT]` count checks;
# starts the cluster unless it runs (and stops it at the end if it started it, unless
# RHEO_K8S_KEEP=1), deletes namespace $NS and prints "$1 (N s): P passed, F failed" on exit.
begin_checks() {
  check_suite=$1
  pass=0 fail=0
  t0=$SECONDS
  started=
  if ! "$here/cluster.sh" status >/dev/null 2>&1; then
    "$here/cluster.sh" up || { echo "FAIL cluster up"; echo "$check_suite: 0 passed, 1 failed"; exit 1; }
    started=1
  fi
  # A suite that stops early (a failed command under `exit`, a syntax error in a sourced part)
  # fails, however many checks passed before it.
  trap 'status=$?; [[ $status -ne 0 ]] && bad "the suite stopped early (exit status $status)"; finish_checks; exit $?' EXIT
}
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; [[ -n ${2:-} ]] && sed 's/^/     | /' <<<"$2" | tail -30; fail=$((fail + 1)); }
finish_checks() {
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
  # A suite's own clean-up (a Helm release, more namespaces): its function `cleanup`, if any.
  declare -F cleanup >/dev/null && cleanup
  if [[ -n $started && -z ${RHEO_K8S_KEEP:-} ]]; then "$here/cluster.sh" down; fi
  echo "$check_suite ($((SECONDS - t0)) s): $pass passed, $fail failed"
  [[ $fail -eq 0 && $pass -gt 0 ]]
}
