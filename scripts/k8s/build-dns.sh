#!/usr/bin/env bash
# Builds the test cluster's DNS server (clusterdns/, its own Go module: miekg/dns + client-go at the
# cluster's version) into a cache dir keyed by a hash of its sources, once per machine:
#   $RHEO_CACHE/k8s/clusterdns-<hash>/clusterdns
# GOCACHE and GOMODCACHE are build-tools.sh's, so client-go compiled for the tools is reused.
# Usage: scripts/k8s/build-dns.sh      prints the binary's path on stdout
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

h=$(cat "$here/clusterdns/go.mod" "$here/clusterdns/go.sum" "$here/clusterdns/main.go" "$0" | sha256sum | cut -c1-10)
out=$K8S_CACHE/clusterdns-$h/clusterdns
if [[ -x $out ]]; then echo "$out"; exit 0; fi
command -v go >/dev/null || die "go is not installed (Go >= 1.24 is needed)"
export GOMODCACHE=$K8S_CACHE/gomod GOCACHE=$K8S_CACHE/gocache
export GOFLAGS="-trimpath -mod=readonly" CGO_ENABLED=0 GOTOOLCHAIN=local
start=$SECONDS
log "go build clusterdns -> $out"
mkdir -p "$(dirname "$out")"
(cd "$here/clusterdns" && go build -ldflags='-s -w' -o "$out.tmp" .) >"$out.log" 2>&1 \
  || { tail -30 "$out.log" >&2; die "go build clusterdns failed (log: $out.log)"; }
mv "$out.tmp" "$out"
log "clusterdns built in $((SECONDS - start)) s"
echo "$out"
