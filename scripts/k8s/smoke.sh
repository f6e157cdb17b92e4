#!/usr/bin/env bash
# Smoke test of the real single-node cluster (make e2e-cluster-smoke):
#   - RBAC is enforced by the real authorizer (a ServiceAccount may not list Secrets),
#   - a Pod from the locally built rheo image (imagePullPolicy: Never, read-only root, uid 10001)
#     runs `rheo run word-count --input /etc/os-release` and completes,
#   - a Deployment running `rheo jobmanager` behind a Service: its REST API answers on the
#     Service's cluster IP from the host and from another pod (kube-proxy, iptables mode),
#   - `kubectl delete pod` of that Deployment's pod: a new pod replaces it and the Service answers again.
# Starts the cluster if it is not running and then stops it at the end (RHEO_K8S_KEEP=1 keeps it);
# builds the worker image if its archive is missing. Every wait is on an event, with a timeout.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$here/lib.sh"
source "$here/oci.sh"

NS=rheo-smoke
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$repo/Cargo.toml")
IMAGE=rheo:$VERSION
begin_checks smoke
eval "$("$here/cluster.sh" env)"
ok "cluster up (Kubernetes $K8S_VERSION): $(kubectl get node -o jsonpath='{.items[0].metadata.name} {.items[0].status.nodeInfo.kubeletVersion} {.items[0].status.nodeInfo.containerRuntimeVersion}')"

# The worker image: built and loaded unless containerd already has it.
if ! ctr --address "$K8S_RUN/containerd/containerd.sock" -n k8s.io images ls -q | grep -qx "docker.io/library/$IMAGE"; then
  [[ -s $OCI_ARCHIVES/rheo.tar ]] || "$repo/docker/build.sh" worker
  "$here/cluster.sh" load "$OCI_ARCHIVES/rheo.tar"
fi

# A fresh namespace (the previous run's, if any, is gone first).
if kubectl get namespace $NS >/dev/null 2>&1; then
  kubectl delete namespace $NS --timeout=120s >/dev/null
fi
kubectl create namespace $NS >/dev/null
wait_for "ServiceAccount $NS/default" 60 kubectl -n $NS get serviceaccount default

# --- RBAC: the real authorizer -----------------------------------------------------------------
can=$(kubectl auth can-i list secrets -n $NS --as=system:serviceaccount:$NS:default 2>&1)
[[ $can == no ]] && ok "RBAC: a ServiceAccount without a Role may not list Secrets" || bad "RBAC: can-i said '$can'"
can=$(kubectl auth can-i list secrets -n $NS 2>&1)
[[ $can == yes ]] && ok "RBAC: the admin (system:masters) may" || bad "RBAC: admin can-i said '$can'"

# --- a Pod that runs a job to completion ---------------------------------------------------------
# wait_phase POD: waits until the pod Succeeded (0) or Failed (1), 180 s at most (2).
wait_phase() {
  local phase start=$SECONDS
  while (( SECONDS - start < 180 )); do
    phase=$(kubectl -n $NS get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null)
    case $phase in Succeeded) return 0 ;; Failed) return 1 ;; esac
    kubectl -n $NS wait --for=jsonpath='{.status.phase}'=Succeeded pod/"$1" --timeout=5s >/dev/null 2>&1 && return 0
  done
  return 2
}
kubectl -n $NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: word-count}
spec:
  restartPolicy: Never
  enableServiceLinks: false
  securityContext: {runAsNonRoot: true}
  containers:
  - name: rheo
    image: $IMAGE
    imagePullPolicy: Never
    args: [run, word-count, --input, /etc/os-release]
    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
    volumeMounts:
    - {name: data, mountPath: /opt/rheo/data}
    - {name: tmp, mountPath: /tmp}
  volumes:
  - {name: data, emptyDir: {}}
  - {name: tmp, emptyDir: {}}
EOF
start=$SECONDS
wait_phase word-count; rc=$?
out=$(kubectl -n $NS logs word-count 2>&1)
if [[ $rc -eq 0 ]]; then
  ok "pod: rheo run word-count --input /etc/os-release Succeeded in $((SECONDS - start)) s (image $IMAGE, pull policy Never)"
  grep -qiw debian <<<"$out" && ok "pod: its output counts the word 'debian'" || bad "pod: no 'debian' in the output" "$out"
else
  bad "pod: word-count did not succeed (rc $rc)" "$(kubectl -n $NS describe pod word-count 2>&1 | tail -15; echo "$out")"
fi

# --- a Deployment behind a Service ---------------------------------------------------------------
kubectl -n $NS apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: jobmanager}
spec:
  replicas: 1
  selector: {matchLabels: {app: jobmanager}}
  template:
    metadata: {labels: {app: jobmanager}}
    spec:
      enableServiceLinks: false
      terminationGracePeriodSeconds: 10
      containers:
      - name: rheo
        image: $IMAGE
        imagePullPolicy: Never
        args: [jobmanager]
        ports: [{name: rest, containerPort: 8081}]
        readinessProbe: {httpGet: {path: /overview, port: rest}, periodSeconds: 2}
        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, runAsNonRoot: true}
        volumeMounts:
        - {name: data, mountPath: /opt/rheo/data}
        - {name: tmp, mountPath: /tmp}
      volumes:
      - {name: data, emptyDir: {}}
      - {name: tmp, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: smoke-jm}
spec:
  selector: {app: jobmanager}
  ports: [{name: rest, port: 8081, targetPort: rest}]
EOF
if kubectl -n $NS rollout status deployment/jobmanager --timeout=180s >/dev/null 2>&1; then
  ok "deployment: rheo jobmanager Available"
else
  bad "deployment: not Available in 180 s" "$(kubectl -n $NS describe pods -l app=jobmanager 2>&1 | tail -20)"
fi
ip=$(kubectl -n $NS get service smoke-jm -o jsonpath='{.spec.clusterIP}')
# rest_ok: the JobManager's REST API answers through the Service (retried until kube-proxy has
# programmed the endpoints; 60 s at most).
rest_ok() { curl -sf --max-time 2 "http://$ip:8081/overview"; }
wait_for "Service $ip:8081 answering from the host" 60 rest_ok \
  && ok "service: GET http://$ip:8081/overview from the host: $(rest_ok | head -c 120)" \
  || bad "service: $ip:8081 does not answer from the host" "$(iptables-save -t nat | grep -c KUBE) KUBE nat rules"

kubectl -n $NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  restartPolicy: Never
  enableServiceLinks: false
  containers:
  - name: client
    image: $IMAGE
    imagePullPolicy: Never
    command: [/bin/bash, -c]
    args:
    - |
      exec 3<>/dev/tcp/$ip/8081 && printf 'GET /overview HTTP/1.0\r\nHost: smoke-jm\r\n\r\n' >&3 && cat <&3
EOF
wait_phase client; rc=$?
out=$(kubectl -n $NS logs client 2>&1)
if [[ $rc -eq 0 ]] && grep -q '200 OK' <<<"$out"; then
  ok "service: GET /overview on $ip:8081 from another pod: HTTP 200"
else
  bad "service: not reachable from a pod (rc $rc)" "$out"
fi

# --- rescheduling ---------------------------------------------------------------------------------
old=$(kubectl -n $NS get pods -l app=jobmanager -o jsonpath='{.items[0].metadata.name}')
start=$SECONDS
kubectl -n $NS delete pod "$old" --wait=false >/dev/null
new_ready() {
  local n
  n=$(kubectl -n $NS get pods -l app=jobmanager \
      -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
      | awk -v old="$old" '$1 != old && $2 == "True" {print $1}')
  [[ -n $n ]] && echo "$n"
}
if wait_for "a new jobmanager pod Ready" 180 new_ready; then
  ok "reschedule: deleted $old, $(new_ready) Ready after $((SECONDS - start)) s"
  wait_for "Service answering again" 60 rest_ok && ok "reschedule: the Service answers from the new pod" \
    || bad "reschedule: the Service does not answer after the new pod is Ready"
else
  bad "reschedule: no new Ready pod after deleting $old" "$(kubectl -n $NS get pods -o wide 2>&1; kubectl -n $NS get events 2>&1 | tail -10)"
fi
