# Sourced by e2e.sh: the images, the S3 store and the operator (helm install).
# Needs: here, repo, NS, ok/bad/wait_for (lib.sh), OCI_ARCHIVES (oci.sh), kubectl/helm on PATH.

PROFILE=${RHEO_E2E_PROFILE:-debug}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$repo/Cargo.toml")
case $PROFILE in
  debug) TAG=$VERSION-debug ;;
  release) TAG=$VERSION ;;
  *) die "RHEO_E2E_PROFILE must be debug or release, got '$PROFILE'" ;;
esac
OP_NS=rheo-system
RELEASE=rheo-operator
S3_NS=storage
S3_ACCESS=rheoe2eaccess
S3_SECRET=rheoe2esecret
PY=$("$repo/scripts/pyenv.sh")/python

# Where the pods' logs go when a check fails: the suite stops the cluster at its end, and the
# logs of the operator and of the jobs' pods would go with it. Kept after the run, one directory
# a failure (save_logs), named in the failure's report and at the end.
E2E_LOGS=${RHEO_E2E_LOGS:-/tmp/rheo-e2e-logs/$(date +%Y%m%d-%H%M%S)}

# On exit (lib.sh's finish_checks): the release and the namespaces, unless RHEO_K8S_KEEP=1.
cleanup() {
  [[ -d $E2E_LOGS ]] && echo "logs of the operator and of the failed jobs' pods, at each failure: $E2E_LOGS"
  [[ -n ${RHEO_K8S_KEEP:-} ]] && return 0
  helm uninstall $RELEASE -n $OP_NS --wait --timeout 60s >/dev/null 2>&1
  kubectl delete namespace $S3_NS $OP_NS --wait=false >/dev/null 2>&1
}

# A fresh start: the previous run's namespaces and release, if any, are gone first.
helm uninstall $RELEASE -n $OP_NS --wait --timeout 60s >/dev/null 2>&1
for ns in $NS $S3_NS $OP_NS; do
  if kubectl get namespace $ns >/dev/null 2>&1; then kubectl delete namespace $ns --timeout=180s >/dev/null; fi
done

# --- images --------------------------------------------------------------------------------------
start=$SECONDS
if out=$(RHEO_IMAGES_PROFILE=$PROFILE "$repo/docker/build.sh" worker operator 2>&1); then
  ok "images rheo:$TAG and rheo-operator:$TAG ($PROFILE binaries) built with umoci and loaded in $((SECONDS - start)) s"
else
  bad "RHEO_IMAGES_PROFILE=$PROFILE docker/build.sh worker operator" "$out"; exit 1
fi
if weed_image=$("$here/seaweedfs-image.sh" 2>/dev/null) \
   && out=$("$here/cluster.sh" load "$OCI_ARCHIVES/seaweedfs.tar" 2>&1); then
  ok "image $weed_image (the weed binary scripts/services/s3.sh runs) loaded"
else
  bad "scripts/k8s/seaweedfs-image.sh" "$out"; exit 1
fi

# --- the S3 store: SeaweedFS at seaweedfs.storage.svc:8333, the endpoint of the examples' Secret ---
kubectl create namespace $S3_NS >/dev/null
kubectl -n $S3_NS apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata: {name: seaweedfs-s3}
stringData:
  s3.json: |
    {"identities":[{"name":"rheo","credentials":[{"accessKey":"$S3_ACCESS","secretKey":"$S3_SECRET"}],
      "actions":["Admin","Read","List","Tagging","Write"]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: seaweedfs}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: seaweedfs}}
  template:
    metadata: {labels: {app: seaweedfs}}
    spec:
      enableServiceLinks: false
      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001}
      containers:
      - name: weed
        image: ${weed_image#docker.io/library/}
        imagePullPolicy: IfNotPresent
        # One process: master, volume server, filer and S3 gateway, which find each other on the
        # pod's loopback; S3 (8333) and the filer (8888, which this test reads) on the pod's address.
        args: [mini, -dir=/data, -ip=127.0.0.1, -ip.bind=0.0.0.0, -s3.port=8333, -s3.config=/etc/seaweedfs/s3.json,
               -bucket=rheo, -admin.ui=false, -webdav=false, -s3.port.iceberg=0, -s3.port.lance=0]
        ports: [{name: s3, containerPort: 8333}, {name: filer, containerPort: 8888}]
        readinessProbe: {tcpSocket: {port: s3}, periodSeconds: 2}
        resources: {requests: {cpu: 100m, memory: 256Mi}}
        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: tmp, mountPath: /tmp}
        - {name: config, mountPath: /etc/seaweedfs, readOnly: true}
      volumes:
      - {name: data, emptyDir: {}}
      - {name: tmp, emptyDir: {}}
      - {name: config, secret: {secretName: seaweedfs-s3}}
---
apiVersion: v1
kind: Service
metadata: {name: seaweedfs}
spec:
  selector: {app: seaweedfs}
  ports: [{name: s3, port: 8333, targetPort: s3}, {name: filer, port: 8888, targetPort: filer}]
EOF
# filer_get PATH [CURL ARGS]: the filer's HTTP API through the Service (host -> cluster IP).
FILER=$(kubectl -n $S3_NS get service seaweedfs -o jsonpath='{.spec.clusterIP}'):8888
filer_get() { local p=$1; shift; curl -sf --max-time 5 "$@" "http://$FILER$p"; }
# filer_ls DIR: the full paths of DIR's entries, one a line (DIR must end in /).
filer_ls() { filer_get "$1?limit=100000" -H 'Accept: application/json' | jq -r '.Entries[]?.FullPath'; }
bucket_listed() { filer_ls /buckets/ | grep -qx /buckets/rheo; }
# --- what the suites share: a FlinkJob's status, its pods, what to print when a wait fails -------
fj_get() { kubectl -n $NS get fj/"$1" -o jsonpath="$2" 2>/dev/null; }
state_is() { [[ $(fj_get "$1" '{.status.jobStatus.state}') == "$2" ]]; }
pods() { kubectl -n $NS get pods -l "app.kubernetes.io/instance=$1,app.kubernetes.io/component=$2" \
           -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}'; }
running_pods() { pods "$1" "$2" | awk '$2 == "Running" && $3 == "" {print $1}'; }
count_running() { [[ $(running_pods "$1" "$2" | wc -l) -eq $3 ]]; }
describe() { # what to print when a wait fails
  kubectl -n $NS get fj,pods -o wide 2>&1
  kubectl -n $NS get fj/"$1" -o jsonpath='{.status}' 2>&1; echo
  kubectl -n $NS logs -l "app.kubernetes.io/instance=$1,app.kubernetes.io/component=jobmanager" --tail=15 2>&1
  kubectl -n $OP_NS logs deploy/$RELEASE --tail=10 2>&1
  save_logs "$1"
}
# save_logs NAME: the logs of every operator pod and of FlinkJob NAME's pods (with the previous
# container's, if one restarted), the FlinkJob, the pods and the namespace's Events, into a new
# directory under E2E_LOGS; prints where, and the tail of the JobManager's log.
save_logs() {
  local name=$1 dir pod ns
  dir=$E2E_LOGS/$(date +%H%M%S)-$name
  mkdir -p "$dir" || return
  for ns in $OP_NS $NS; do
    for pod in $(if [[ $ns == "$OP_NS" ]]; then kubectl -n $ns get pods -l app.kubernetes.io/instance=$RELEASE -o name
                 else kubectl -n $ns get pods -l app.kubernetes.io/instance=$name -o name; fi 2>/dev/null); do
      kubectl -n $ns logs "$pod" --all-containers --timestamps >"$dir/${pod#pod/}.log" 2>&1
      kubectl -n $ns logs "$pod" --all-containers --timestamps --previous >"$dir/${pod#pod/}.previous.log" 2>/dev/null \
        || rm -f "$dir/${pod#pod/}.previous.log"
    done
  done
  kubectl -n $NS get fj/"$name" -o yaml >"$dir/flinkjob.yaml" 2>&1
  kubectl -n $NS get pods -o wide >"$dir/pods.txt" 2>&1
  kubectl -n $OP_NS get pods -o wide >>"$dir/pods.txt" 2>&1
  kubectl -n $NS get events --sort-by=.lastTimestamp >"$dir/events.txt" 2>&1
  echo "logs of the operator and of $name's pods kept in $dir:"
  ls "$dir" | tr '\n' ' '; echo
  tail -n 5 "$dir"/"$name"-jobmanager-*.log 2>/dev/null
}
children_gone() { [[ -z $(kubectl -n $NS get deploy,svc,cm,pods -l app.kubernetes.io/instance=$1 -o name 2>/dev/null) ]]; }

# check_output NAME WORK: the committed part files under s3://rheo/output/NAME/ (not the marker of
# the job that owns the directory), sorted into WORK/NAME.out, equal WORK/reference.csv.
check_output() {
  local name=$1 work=$2 f= parts=0 out=$2/$1.out
  : >"$out"
  for f in $(filer_ls "/buckets/rheo/output/$name/" | grep -E '/part-[^/]*\.csv$'); do
    filer_get "$f" >>"$out" || { bad "$name: cannot read $f from the filer"; return; }
    parts=$((parts + 1))
  done
  sort "$out" -o "$out"
  if cmp -s "$out" "$work/reference.csv"; then
    ok "$name: the committed output ($(wc -l <"$out") rows in $parts part files on S3) equals the reference from the input: no duplicate, no loss"
  else
    bad "$name: output ($(wc -l <"$out") rows, $(cut -d, -f1,2 "$out" | uniq -d | wc -l) duplicated window/word keys, $parts parts) differs from the reference ($(wc -l <"$work/reference.csv") rows)" \
      "$(diff "$work/reference.csv" "$out" | head -20)"
  fi
}
if kubectl -n $S3_NS rollout status deployment/seaweedfs --timeout=180s >/dev/null 2>&1 \
   && wait_for "bucket rheo listed by the filer" 120 bucket_listed; then
  ok "S3 store: SeaweedFS pod Ready behind seaweedfs.$S3_NS.svc:8333, bucket rheo"
else
  bad "S3 store: SeaweedFS not ready" "$(kubectl -n $S3_NS describe pods 2>&1 | tail -15; kubectl -n $S3_NS logs deploy/seaweedfs 2>&1 | tail -15)"
  exit 1
fi

# --- the operator: helm install ------------------------------------------------------------------
start=$SECONDS
if out=$(helm install $RELEASE "$repo/charts/rheo-operator" -n $OP_NS --create-namespace \
           --set image.tag=$TAG --set logFormat=text --wait --timeout 180s 2>&1); then
  op_pod=$(kubectl -n $OP_NS get pods -l app.kubernetes.io/instance=$RELEASE \
    -o jsonpath='{range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.phase}{"\n"}{end}')
  ok "helm install: the operator runs as a pod in $((SECONDS - start)) s: $op_pod"
else
  bad "helm install charts/rheo-operator" "$out$(kubectl -n $OP_NS describe pods 2>&1 | tail -20)"; exit 1
fi
