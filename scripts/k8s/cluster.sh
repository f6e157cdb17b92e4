#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, from the binaries of build-tools.sh and
# Debian's containerd, runc and CNI plugins. Needs root (kubelet, containerd, iptables, mounts).
#
#   scripts/k8s/cluster.sh up          build/install what is missing, start everything, wait until
#                                      the node is Ready and the default ServiceAccount exists
#   scripts/k8s/cluster.sh down        stop everything, remove pods, mounts, network and all state
#   scripts/k8s/cluster.sh status      which components run and answer
#   scripts/k8s/cluster.sh kubeconfig  print the path of the admin kubeconfig (system:masters)
#   scripts/k8s/cluster.sh env         print `export KUBECONFIG=... PATH=...` for eval
#   scripts/k8s/cluster.sh load TAR... import OCI archives into containerd's k8s.io namespace
#
# Addresses: everything that only the host needs listens on 127.0.0.1 (etcd, controller-manager,
# scheduler, kubelet healthz, kube-proxy healthz/metrics, containerd's stream server). The API
# server and the kubelet API must be reachable from pods, so they listen on the CNI bridge's own
# address 10.88.0.1, which exists only on this host; an iptables guard drops packets from any other
# interface to the cluster's ranges and forwarded packets between the bridge and other interfaces,
# so no pod traffic leaves the machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
source "$here/oci.sh"

RUN=$K8S_RUN
NODE=${RHEO_K8S_NODE:-rheo-node}
BRIDGE=rheo-cni0
POD_CIDR=10.88.0.0/16
HOST_IP=10.88.0.1
SVC_CIDR=10.96.0.0/16
SVC_API_IP=10.96.0.1
GUARD=RHEO-K8S-GUARD
CTR_SOCK=$RUN/containerd/containerd.sock
KUBECONFIG_ADMIN=$RUN/pki/admin.kubeconfig
TIMEOUT=${RHEO_K8S_TIMEOUT:-180}

pidfile() { echo "$RUN/pids/$1.pid"; }
alive() { local f; f=$(pidfile "$1"); [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; }
kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_() { ctr --address "$CTR_SOCK" -n k8s.io "$@"; }

# start NAME CMD...: runs CMD detached, its output in $RUN/logs/NAME.log, its pid in $RUN/pids.
start() {
  local name=$1; shift
  log "start $name"
  setsid "$@" >>"$RUN/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# A component that exits while we wait for it fails the wait at once, with its log's tail.
wait_up() {
  local name=$1 what=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then
      tail -25 "$RUN/logs/$name.log" >&2
      die "$name exited (log: $RUN/logs/$name.log)"
    fi
    if (( SECONDS - start >= TIMEOUT )); then
      tail -25 "$RUN/logs/$name.log" >&2
      die "timed out after ${TIMEOUT}s waiting for $what (log: $RUN/logs/$name.log)"
    fi
    sleep 0.5
  done
  log "$what after $((SECONDS - start)) s"
}

https_ok() { curl -sfk --max-time 2 "$1" >/dev/null; }
dns_ok() { dig +time=1 +tries=1 @$HOST_IP kubernetes.default.svc.cluster.local A +short | grep -qx "$SVC_API_IP"; }

# ---------------------------------------------------------------------------------------------
# certificates: one CA signs every server and client certificate (ECDSA P-256, 1 year).
cert() { # cert NAME SUBJECT [SANS]
  local name=$1 subj=$2 sans=${3:-} d=$RUN/pki
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
    -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $sans ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$sans"
    else echo "extendedKeyUsage=clientAuth"; fi
  } >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 365 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
  rm -f "$d/$name.csr" "$d/$name.ext"
}

kubeconfig_for() { # kubeconfig_for NAME: $RUN/pki/NAME.kubeconfig with NAME's client certificate
  local name=$1 d=$RUN/pki
  cat >"$d/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rheo
  cluster:
    server: https://$HOST_IP:6443
    certificate-authority: $d/ca.crt
users:
- name: $name
  user:
    client-certificate: $d/$name.crt
    client-key: $d/$name.key
contexts:
- name: rheo
  context: {cluster: rheo, user: $name, namespace: default}
current-context: rheo
EOF
}

make_pki() {
  local d=$RUN/pki
  mkdir -p "$d" && chmod 700 "$d"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj "/CN=rheo-k8s-ca" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" \
    "IP:$HOST_IP,IP:$SVC_API_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert kubelet-server "/CN=$NODE" "IP:$HOST_IP,IP:127.0.0.1,DNS:$NODE"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=rheo-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kube-proxy "/O=system:node-proxier/CN=system:kube-proxy"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE"
  for n in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig_for $n; done
  # Service-account tokens: RSA key pair, signed by the API server, verified by it.
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# network: the bridge (so the API server can bind its address before the first pod) and the guard.
net_up() {
  sysctl -qw net.ipv4.ip_forward=1
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || log "WARN: no br_netfilter: Service IPs from pods may not work"
  ip link show $BRIDGE >/dev/null 2>&1 || ip link add $BRIDGE type bridge
  ip addr replace $HOST_IP/16 dev $BRIDGE
  ip link set $BRIDGE up
  # In the mangle table, which kube-proxy leaves alone: its filter rules, which it puts first, ACCEPT
  # some packets (masquerade-marked, established) before a filter rule of ours would see them.
  iptables -w -t mangle -N $GUARD 2>/dev/null || iptables -w -t mangle -F $GUARD
  # From outside the host: nothing reaches the pod or Service ranges (the API server and kubelet
  # listen on $HOST_IP); forwarded packets may only go from the bridge to the bridge.
  iptables -w -t mangle -A $GUARD -i lo -j RETURN
  iptables -w -t mangle -A $GUARD -i $BRIDGE -j RETURN
  iptables -w -t mangle -A $GUARD -d $POD_CIDR -j DROP
  iptables -w -t mangle -A $GUARD -d $SVC_CIDR -j DROP
  iptables -w -t mangle -N $GUARD-FWD 2>/dev/null || iptables -w -t mangle -F $GUARD-FWD
  iptables -w -t mangle -A $GUARD-FWD -i $BRIDGE ! -o $BRIDGE -j DROP
  iptables -w -t mangle -A $GUARD-FWD ! -i $BRIDGE -o $BRIDGE -j DROP
  # From the host: filter OUTPUT runs after kube-proxy's DNAT, so what is still addressed to a Service
  # IP there was not translated: refuse it at once rather than let it follow the default route.
  iptables -w -N $GUARD-OUT 2>/dev/null || iptables -w -F $GUARD-OUT
  iptables -w -A $GUARD-OUT -d $SVC_CIDR -j REJECT
  # Leaving the host (mangle POSTROUTING sees the final destination and interface, which filter
  # OUTPUT does not after a DNAT): cluster addresses only through lo and the bridge, never the
  # default route (e.g. while the bridge or kube-proxy is down).
  iptables -w -t mangle -N $GUARD-EGRESS 2>/dev/null || iptables -w -t mangle -F $GUARD-EGRESS
  iptables -w -t mangle -A $GUARD-EGRESS -o lo -j RETURN
  iptables -w -t mangle -A $GUARD-EGRESS -o $BRIDGE -j RETURN
  iptables -w -t mangle -A $GUARD-EGRESS -d $POD_CIDR -j DROP
  iptables -w -t mangle -A $GUARD-EGRESS -d $SVC_CIDR -j DROP
  iptables -w -t mangle -C POSTROUTING -j $GUARD-EGRESS 2>/dev/null || iptables -w -t mangle -I POSTROUTING 1 -j $GUARD-EGRESS
  iptables -w -t mangle -C INPUT -j $GUARD 2>/dev/null || iptables -w -t mangle -I INPUT 1 -j $GUARD
  iptables -w -t mangle -C FORWARD -j $GUARD-FWD 2>/dev/null || iptables -w -t mangle -I FORWARD 1 -j $GUARD-FWD
  iptables -w -C OUTPUT -j $GUARD-OUT 2>/dev/null || iptables -w -I OUTPUT 1 -j $GUARD-OUT
}

net_down() {
  iptables -w -t mangle -D INPUT -j $GUARD 2>/dev/null || true
  iptables -w -t mangle -D FORWARD -j $GUARD-FWD 2>/dev/null || true
  iptables -w -t mangle -D POSTROUTING -j $GUARD-EGRESS 2>/dev/null || true
  iptables -w -D OUTPUT -j $GUARD-OUT 2>/dev/null || true
  for c in $GUARD $GUARD-FWD $GUARD-EGRESS; do iptables -w -t mangle -F $c 2>/dev/null && iptables -w -t mangle -X $c 2>/dev/null || true; done
  iptables -w -F $GUARD-OUT 2>/dev/null && iptables -w -X $GUARD-OUT 2>/dev/null || true
  # kube-proxy's and the kubelet's chains (KUBE-*) and the portmap plugin's (CNI-*), IPv4 and IPv6.
  local ipt t c
  for ipt in iptables ip6tables; do
    for t in nat filter mangle; do
      $ipt-save -t $t 2>/dev/null | grep -E '^-A' | grep -E -- '-j (KUBE|CNI)-|-A (KUBE|CNI)-' \
        | sed 's/^-A/-D/' | while read -r rule; do eval "$ipt -w -t $t $rule" 2>/dev/null || true; done || true
      for c in $($ipt-save -t $t 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\).*/\1/p'); do
        $ipt -w -t $t -F "$c" 2>/dev/null || true
      done
      for c in $($ipt-save -t $t 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\).*/\1/p'); do
        $ipt -w -t $t -X "$c" 2>/dev/null || true
      done
    done
  done
  ip link del $BRIDGE 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# containerd: its own config, root, state and socket under $RUN. Snapshotter: overlayfs if a test
# overlay mount works in its root dir, else native (RHEO_K8S_SNAPSHOTTER overrides).
pick_snapshotter() {
  if [[ -n ${RHEO_K8S_SNAPSHOTTER:-} ]]; then echo "$RHEO_K8S_SNAPSHOTTER"; return; fi
  local d=$RUN/containerd/ovl-probe ok=native
  mkdir -p "$d"/{l,u,w,m} && echo probe >"$d/l/f"
  if mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" 2>"$d/err"; then
    [[ $(cat "$d/m/f" 2>/dev/null) == probe ]] && ok=overlayfs
    umount "$d/m"
  fi
  [[ $ok == native ]] && log "overlay mount failed ($(cat "$d/err")): using the native snapshotter"
  rm -rf "$d"
  echo $ok
}

containerd_up() {
  local c=$RUN/containerd snap
  mkdir -p "$c/root" "$c/state" "$c/opt"
  snap=$(pick_snapshotter)
  echo "$snap" >"$c/snapshotter"
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[debug]
  address = "$c/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine's root has no CAP_SYS_RESOURCE, so it cannot lower an oom_score_adj: runc then fails
  # every pod sandbox (oom_score_adj -998) with "failed to update /proc/self/oom_score_adj: Permission
  # denied" / "can't get final child's PID from pipe: EOF". Clamp it to containerd's own, as rootless does.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$snap"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$c/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
EOF
  # Images come only from `ctr images import`: a pull (an image not loaded, a pull policy other than
  # Never) goes to a proxy address where nothing listens and fails at once, without a DNS query or a
  # packet leaving the machine ("proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused").
  local noproxy=http://127.0.0.1:9
  start containerd env HTTP_PROXY=$noproxy HTTPS_PROXY=$noproxy http_proxy=$noproxy https_proxy=$noproxy \
    NO_PROXY= no_proxy= containerd --config "$c/config.toml"
  wait_up containerd "containerd answers ($snap snapshotter)" ctr --address "$CTR_SOCK" version
}

# The pod sandbox image, built locally from build-tools' static pause binary.
pause_image() {
  local tar=$OCI_ARCHIVES/rheo-pause.tar l
  if [[ ! -s $tar || $tar -ot $BIN/pause ]]; then
    l=$(mktemp -d) && mkdir -p "$l/root"
    install -m 0755 "$BIN/pause" "$l/root/pause"
    umoci init --layout "$l/oci"
    umoci new --image "$l/oci:${K8S_PAUSE_IMAGE##*:}"
    oci_add_layer "$l/oci:${K8S_PAUSE_IMAGE##*:}" "$l/root"
    umoci config --image "$l/oci:${K8S_PAUSE_IMAGE##*:}" --config.entrypoint /pause --config.user 65535:65535 \
      --architecture "$(dpkg --print-architecture)" --os linux --config.label org.opencontainers.image.title=rheo-pause
    oci_export "$l/oci" "$tar" "$K8S_PAUSE_IMAGE"
    rm -rf "$l"
  fi
  echo "$tar"
}

load() {
  local snap t
  snap=$(cat "$RUN/containerd/snapshotter" 2>/dev/null) || die "the cluster is not up"
  for t in "$@"; do
    ctr_ images import --snapshotter "$snap" "$t" | sed 's/^/[ctr import] /' >&2
  done
}

# ---------------------------------------------------------------------------------------------
write_configs() {
  mkdir -p "$RUN/cni/net.d" "$RUN/cni/ipam" "$RUN/kubelet"
  cat >"$RUN/cni/net.d/10-rheo.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "rheo",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$RUN/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.88.0.10", "gateway": "$HOST_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
  # Pods get a resolv.conf with no server: there is no cluster DNS, and no pod talks to the outside.
  echo "options ndots:1" >"$RUN/kubelet/resolv.conf"
  cat >"$RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $HOST_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$CTR_SOCK
resolvConf: $RUN/kubelet/resolv.conf
clusterDomain: cluster.local
# clusterdns (a host process, like kube-proxy) answers Service names on the bridge's address.
clusterDNS: [$HOST_IP]
tlsCertFile: $RUN/pki/kubelet-server.crt
tlsPrivateKeyFile: $RUN/pki/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $RUN/pki/ca.crt}
authorization:
  mode: Webhook
rotateCertificates: false
serverTLSBootstrap: false
# A test node on a shared machine whose disk others fill: evict (and garbage-collect images) only
# when it is really full. Percentages are of the whole disk (1% of 250G is 2.5G).
evictionHard: {memory.available: "100Mi", nodefs.available: "256Mi", imagefs.available: "256Mi", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 60
EOF
  cat >"$RUN/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $RUN/pki/kube-proxy.kubeconfig}
hostnameOverride: $NODE
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$HOST_IP/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

up() {
  [[ $(id -u) -eq 0 ]] || die "cluster.sh up needs root (kubelet, containerd, iptables, mounts)"
  local t0=$SECONDS
  if alive kube-apiserver && alive kubelet; then log "already up (cluster.sh down stops it)"; return 0; fi
  [[ -d $RUN ]] && { log "stale state in $RUN: cleaning up first"; down; }
  apt_install containerd runc containernetworking-plugins iptables conntrack socat umoci openssl curl jq bind9-dnsutils
  BIN=$("$here/build-tools.sh")
  DNS_BIN=$("$here/build-dns.sh")
  export PATH=$BIN:$PATH
  mkdir -p "$RUN"/{logs,pids,etcd}
  echo "$BIN" >"$RUN/bin"
  make_pki
  write_configs
  net_up

  start etcd "$BIN/etcd" --name rheo --data-dir "$RUN/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster rheo=http://127.0.0.1:2380 --listen-metrics-urls '' --log-level warn
  wait_up etcd "etcd healthy" curl -sf --max-time 2 http://127.0.0.1:2379/health

  local p=$RUN/pki
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=$HOST_IP --advertise-address=$HOST_IP --secure-port=6443 \
    --service-cluster-ip-range=$SVC_CIDR \
    --client-ca-file="$p/ca.crt" --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$p/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
  wait_up kube-apiserver "kube-apiserver ready" kc get --raw /readyz

  containerd_up
  load "$(pause_image)"
  local a
  for a in "$OCI_ARCHIVES"/*.tar; do
    [[ -f $a && $(basename "$a") != rheo-pause.tar ]] && load "$a"
  done

  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$p/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$p/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$p/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --service-cluster-ip-range=$SVC_CIDR --allocate-node-cidrs=false --profiling=false --v=1
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$p/scheduler.kubeconfig" \
    --authentication-kubeconfig="$p/scheduler.kubeconfig" \
    --authorization-kubeconfig="$p/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false --v=1

  start kubelet "$BIN/kubelet" --config="$RUN/kubelet/config.yaml" \
    --kubeconfig="$p/kubelet.kubeconfig" --root-dir="$RUN/kubelet/root" \
    --hostname-override=$NODE --node-ip=$HOST_IP \
    --pod-infra-container-image="$K8S_PAUSE_IMAGE" --v=1
  start kube-proxy "$BIN/kube-proxy" --config="$RUN/kube-proxy.yaml" --v=1
  # Service names for pods (kube-proxy's identity may list Services and EndpointSlices).
  start clusterdns "$DNS_BIN" --kubeconfig="$p/kube-proxy.kubeconfig" --listen=$HOST_IP:53

  wait_up kube-controller-manager "kube-controller-manager healthy" https_ok https://127.0.0.1:10257/healthz
  wait_up kube-scheduler "kube-scheduler healthy" https_ok https://127.0.0.1:10259/healthz
  wait_up kubelet "kubelet healthy" curl -sf --max-time 2 http://127.0.0.1:10248/healthz
  wait_up kube-proxy "kube-proxy healthy" curl -sf --max-time 2 http://127.0.0.1:10256/healthz
  wait_up clusterdns "clusterdns answers" dns_ok
  wait_up kubelet "node $NODE registered" kc get node $NODE
  wait_up kubelet "node $NODE Ready" kc wait --for=condition=Ready node/$NODE --timeout=2s
  wait_up kube-controller-manager "ServiceAccount default/default" kc get serviceaccount default -n default
  log "cluster up in $((SECONDS - t0)) s: export KUBECONFIG=$KUBECONFIG_ADMIN (Kubernetes $K8S_VERSION, $(cat "$RUN/containerd/snapshotter") snapshotter)"
}

# The kubelet's pod cgroups (cgroupfs driver), empty once their processes are gone.
cgroups_down() {
  local n
  for n in /sys/fs/cgroup/*/kubepods; do
    [[ -d $n ]] && { find "$n" -depth -type d -exec rmdir {} + 2>/dev/null || true; }
  done
  return 0
}

# stop NAME...: SIGTERM to each (by the pid this script recorded), then SIGKILL to those still
# running after 20 s.
stop() {
  local name pid pids=() start=$SECONDS
  for name in "$@"; do
    [[ -f $(pidfile "$name") ]] || continue
    pid=$(cat "$(pidfile "$name")")
    rm -f "$(pidfile "$name")"
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && (( SECONDS - start < 20 )); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "pid $pid did not stop on SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  log "stopped $* in $((SECONDS - start)) s"
}

down() {
  [[ $(id -u) -eq 0 ]] || die "cluster.sh down needs root"
  [[ -d $RUN ]] || { cgroups_down; net_down; log "not up"; return 0; }
  local BIN n pid
  BIN=$(cat "$RUN/bin" 2>/dev/null || true)
  stop clusterdns kube-proxy kubelet kube-scheduler kube-controller-manager
  # The pods: every container task is killed and removed through containerd itself.
  local netns=()
  if alive containerd; then
    for n in $(ctr_ containers ls -q 2>/dev/null); do
      netns+=($(ctr_ containers info "$n" 2>/dev/null \
        | jq -r '.Spec.linux.namespaces[]? | select(.type == "network") | .path // empty' 2>/dev/null || true))
    done
    for n in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$n" >/dev/null 2>&1 || true; done
    for n in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$n" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  # Shims of this containerd (they outlive it by design), found by its socket path, killed by pid.
  for pid in $(pgrep -f -- "-address $CTR_SOCK" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  stop kube-apiserver
  stop etcd
  # Mounts under $RUN (pod volumes, snapshots, sandbox shm), innermost first, and the network
  # namespaces of the sandboxes (the CNI DEL that would remove them never ran).
  for n in $(awk -v r="$RUN" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$n" 2>/dev/null || umount -l "$n" 2>/dev/null || log "WARN: cannot unmount $n"
  done
  for n in "${netns[@]}"; do
    [[ -e $n ]] || continue
    umount "$n" 2>/dev/null || umount -l "$n" 2>/dev/null || true
    rm -f "$n"
  done
  cgroups_down
  net_down
  # The logs outlive the run dir, for a look after a failed run.
  rm -rf "$RUN.last-logs" && mv "$RUN/logs" "$RUN.last-logs" 2>/dev/null || true
  rm -rf "$RUN"
  log "down: processes stopped, mounts, network and state under $RUN removed (logs: $RUN.last-logs)"
}

status() {
  local n rc=0
  [[ -d $RUN ]] || { echo "down"; return 3; }
  BIN=$(cat "$RUN/bin")
  for n in etcd kube-apiserver containerd kube-controller-manager kube-scheduler kubelet kube-proxy clusterdns; do
    if alive "$n"; then printf '%-24s running (pid %s)\n' "$n" "$(cat "$(pidfile "$n")")"
    else printf '%-24s NOT RUNNING\n' "$n"; rc=1; fi
  done
  kc get nodes -o wide 2>&1 || rc=1
  return $rc
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  kubeconfig) [[ -f $KUBECONFIG_ADMIN ]] || die "the cluster is not up"; echo "$KUBECONFIG_ADMIN" ;;
  env) [[ -f $RUN/bin ]] || die "the cluster is not up"
       echo "export KUBECONFIG=$KUBECONFIG_ADMIN PATH=$(cat "$RUN/bin"):\$PATH" ;;
  load) shift; load "$@" ;;
  *) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
