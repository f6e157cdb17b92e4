#!/usr/bin/env bash
# Builds the Kubernetes tools of Rheo's single-node test cluster from their published Go modules
# (scripts/k8s/tools/go.mod) into a versioned cache, once per machine:
#   $RHEO_CACHE/k8s/<version>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,
#                                  kube-proxy,kubectl,etcd,helm,pause}
# The version key is the Kubernetes release plus a hash of go.mod/go.sum, so changing a pin rebuilds.
# GOCACHE and GOMODCACHE live under $RHEO_CACHE/k8s too, so a rebuild after a pin change is quick.
# Usage: scripts/k8s/build-tools.sh [--force]      prints the bin dir on stdout
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

force=${1:-}
bin=$(k8s_bin_dir)
if [[ $force != --force && -f $bin/.complete ]]; then
  log "tools present in $bin (scripts/k8s/build-tools.sh --force rebuilds)"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (Go >= 1.24 is needed)"
export GOMODCACHE=$K8S_CACHE/gomod GOCACHE=$K8S_CACHE/gocache
export GOFLAGS="-trimpath -mod=readonly" CGO_ENABLED=${CGO_ENABLED:-0} GOTOOLCHAIN=local
tmp=$bin.tmp
rm -rf "$tmp" && mkdir -p "$tmp"

start=$SECONDS
log "go build Kubernetes $K8S_VERSION tools (cold: tens of minutes on 2 cores; cached afterwards) -> $bin"
# One invocation: the packages shared by the binaries compile once. `tool` is every tool line of go.mod.
# Built from modules, the binaries would call themselves v0.0.0-master (and helm would then refuse
# charts with a kubeVersion): the versions are set as Kubernetes' and Helm's own builds set them.
helm_version=$(sed -n 's/^\thelm\.sh\/helm\/v3 \(v[0-9.]*\).*$/\1/p' "$here/tools/go.mod")
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
done
(cd "$here/tools" && go build -ldflags="$ldflags" -o "$tmp/" tool) \
  >"$tmp.log" 2>&1 || { tail -40 "$tmp.log" >&2; die "go build failed (full log: $tmp.log)"; }
# etcd's main package is go.etcd.io/etcd/server/v3: go names its binary after the path without /v3.
[[ -f $tmp/server ]] && mv "$tmp/server" "$tmp/etcd"
# The pod sandbox ("pause") program: a static binary that waits for a signal and reaps children.
(cd "$here/pause" && go build -ldflags='-s -w' -o "$tmp/pause" .) >>"$tmp.log" 2>&1 \
  || { tail -20 "$tmp.log" >&2; die "go build pause failed"; }
for b in "${K8S_BINARIES[@]}"; do [[ -x $tmp/$b ]] || die "missing $b after the build"; done
echo "built in $((SECONDS - start)) s on $(nproc) cores, $(date -u +%FT%TZ)" >"$tmp/.complete"
rm -rf "$bin" && mv "$tmp" "$bin" && mv "$tmp.log" "$bin/build.log"
log "built in $((SECONDS - start)) s: $(du -sh "$bin" | cut -f1) in $bin"
echo "$bin"
