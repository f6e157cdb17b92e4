# Sourced by e2e.sh after e2e-stack.sh: FlinkJobs run for real, pods deleted, a rescale, deletion,
# helm upgrade and uninstall.
#
# The jobs are the examples (e2e-derive.py applies a patch: image tag, the test's S3 credentials,
# smaller requests for a 2-core node, and the job: `word-count --event-time` over an input file
# from a ConfigMap, written exactly once as CSV part files to S3 instead of a generated,
# printed stream, so the output can be checked). The input's lines are `TIMESTAMP_MS<TAB>8
# words`, 10 ms apart, read at RATE lines per second: long enough for the pod deletions below,
# which wait on checkpoints, not on time. The reference is computed from the input with awk:
# one `window_end,word,count` line per 1 s event-time window and word.

LINES=${RHEO_E2E_LINES:-6000}
RATE=${RHEO_E2E_RATE:-50}
JOB_TIMEOUT=${RHEO_E2E_JOB_TIMEOUT:-600}
work=$(mktemp -d)
trap 'status=$?; rm -rf "$work"; [[ $status -ne 0 ]] && bad "the suite stopped early (exit status $status)"; finish_checks; exit $?' EXIT

awk -v n="$LINES" 'BEGIN { srand(11); for (i = 0; i < n; i++) { l = i * 10 "\t"
  for (j = 0; j < 8; j++) l = l (j ? " " : "") "w" int(rand() * 60); print l } }' >"$work/lines.txt"
awk -F'\t' '{ end = (int($1 / 1000) + 1) * 1000; n = split($2, w, " "); for (i = 1; i <= n; i++) c[end "," w[i]]++ }
  END { for (k in c) print k "," c[k] }' "$work/lines.txt" | sort >"$work/reference.csv"
kubectl -n $NS create configmap wc-input --from-file=lines.txt="$work/lines.txt" >/dev/null

# derive EXAMPLE NAME REPLICAS EXTRA_ARGS_JSON: the example with the test's patch, as YAML.
derive() {
  local example=$1 name=$2 replicas=$3 extra=$4
  jq -n --arg image "rheo:$TAG" --arg key "$S3_ACCESS" --arg secret "$S3_SECRET" --arg rate "$RATE" \
        --arg out "s3://rheo/output/$name" --argjson replicas "$replicas" --argjson extra "$extra" '{
    Secret: {stringData: {AWS_ACCESS_KEY_ID: $key, AWS_SECRET_ACCESS_KEY: $secret}},
    FlinkJob: {spec: {
      image: $image,
      flinkConfiguration: {"execution.checkpointing.interval": "2s"},
      jobManager: {resources: {requests: {cpu: "100m", memory: "256Mi"}, limits: {memory: "1Gi"}}},
      taskManager: {replicas: $replicas, resources: {requests: {cpu: "200m", memory: "256Mi"}, limits: {memory: "1Gi"}}},
      podTemplate: {spec: {
        # The input as a ConfigMap volume: each pod sees it with its own modification time,
        # and the file source checks at restore the content only (size, first and last
        # 64 KiB), so a new pod resumes at the offsets of the checkpoint.
        containers: [{name: "rheo", envFrom: [{secretRef: {name: "s3-credentials"}}],
                      volumeMounts: [{name: "input", mountPath: "/opt/rheo/input", readOnly: true}]}],
        volumes: [{name: "input", configMap: {name: "wc-input"}}]}},
      job: {entry: "word-count",
            args: (["--event-time", "--window", "1s", "--input", "/opt/rheo/input/lines.txt",
                    "--output", $out, "--rate", $rate] + $extra)}}}}' >"$work/$name.patch.json"
  "$PY" "$here/e2e-derive.py" "$repo/examples/$example" "$work/$name.patch.json"
}

# rest NAME PATH: the JobManager's REST API through its Service (host -> cluster IP).
rest() {
  local ip
  ip=$(kubectl -n $NS get service "$1-rest" -o jsonpath='{.spec.clusterIP}' 2>/dev/null) || return 1
  curl -sf --max-time 3 "http://$ip:8081$2"
}
# checkpoints NAME: /jobs/<id>/checkpoints of the FlinkJob's job.
checkpoints() { rest "$1" "/jobs/$(fj_get "$1" '{.status.jobStatus.jobId}')/checkpoints"; }
# ckpt_holds NAME JQ: the checkpoint statistics satisfy JQ (an event to wait for).
ckpt_holds() { checkpoints "$1" | jq -e "$2" >/dev/null; }
# --- examples/word-count-s3.yaml -----------------------------------------------------------------
FJ=word-count-s3
derive word-count-s3.yaml $FJ 2 '[]' >"$work/$FJ.yaml"
start=$SECONDS
if out=$(kubectl -n $NS apply -f "$work/$FJ.yaml" 2>&1); then ok "$FJ: applied ($(tr '\n' ';' <<<"$out"))"; else bad "$FJ: apply" "$out"; fi
if wait_for "$FJ RUNNING" 300 state_is $FJ RUNNING && wait_for "$FJ pods Running" 120 count_running $FJ taskmanager 2 \
   && wait_for "$FJ: 2 checkpoints" 180 ckpt_holds $FJ '.counts.completed >= 2'; then
  ok "$FJ: RUNNING in $((SECONDS - start)) s, pods Running: $(running_pods $FJ jobmanager) $(running_pods $FJ taskmanager | tr '\n' ' ')"
else
  bad "$FJ: not RUNNING with 2 TaskManagers and 2 checkpoints" "$(describe $FJ)"; exit 1
fi
# The printer columns, filled in by the operator's status (the Last Checkpoint may lag one poll).
columns_filled() { kubectl -n $NS get fj/$FJ --no-headers | awk '{exit !($2 == "RUNNING" && $3 == "STABLE" && $4 == 4 && $5 == 2 && $6 != "<none>")}'; }
if wait_for "$FJ: columns filled" 60 columns_filled; then
  ok "$FJ: kubectl get fj:"; kubectl -n $NS get fj/$FJ | sed 's/^/     | /'
else
  bad "$FJ: kubectl get fj columns not filled in (want RUNNING STABLE 4 2 <a time>)" "$(kubectl -n $NS get fj/$FJ 2>&1)"
fi
path=$(checkpoints $FJ | jq -r '.latest.completed.external_path')
files=$(filer_ls "/buckets/${path#s3://}/" | sed 's|.*/||' | tr '\n' ' ')
if [[ $path == s3://rheo/checkpoints/* && " $files " == *" _metadata "* ]]; then
  ok "$FJ: checkpoints on S3: $path holds $files"
else
  bad "$FJ: newest checkpoint '$path' not on S3 with a _metadata (found: $files)"
fi

# restored_newest NAME NEWEST: the job restored a checkpoint at least as new as NEWEST (the newest
# completed before the deletion) and completed a checkpoint after it.
restored_newest() {
  ckpt_holds "$1" "(.latest.restored.id // -1) >= $2 and .latest.completed.id > .latest.restored.id"
}
# A TaskManager pod deleted: the JobManager restarts the job from its newest checkpoint.
tm=$(running_pods $FJ taskmanager | head -1)
newest=$(checkpoints $FJ | jq '.latest.completed.id')
restored_before=$(checkpoints $FJ | jq '.counts.restored')
start=$SECONDS
kubectl -n $NS delete pod "$tm" --wait=false >/dev/null
if wait_for "$FJ restored after the TaskManager's deletion" 300 \
     ckpt_holds $FJ ".counts.restored > $restored_before and (.latest.restored.id // -1) >= $newest and .latest.completed.id > .latest.restored.id" \
   && wait_for "$FJ: 2 TaskManagers Running" 120 count_running $FJ taskmanager 2; then
  ok "$FJ: TaskManager $tm deleted (newest checkpoint $newest): restored checkpoint $(checkpoints $FJ | jq '.latest.restored.id') and checkpointing again after $((SECONDS - start)) s"
else
  bad "$FJ: no restore from checkpoint >= $newest after deleting $tm" "$(checkpoints $FJ | jq -c '{counts, restored: .latest.restored.id, completed: .latest.completed.id}' 2>&1; describe $FJ)"
fi
# The JobManager pod deleted: the new one resumes the job's newest checkpoint from S3.
jm=$(running_pods $FJ jobmanager | head -1)
newest=$(checkpoints $FJ | jq '.latest.completed.id')
start=$SECONDS
kubectl -n $NS delete pod "$jm" --wait=false >/dev/null
new_jm() { running_pods $FJ jobmanager | grep -vx "$jm"; }
if wait_for "a new JobManager pod" 180 new_jm \
   && wait_for "$FJ resumed by the new JobManager" 300 restored_newest $FJ "$newest"; then
  ok "$FJ: JobManager $jm deleted (newest checkpoint $newest): $(new_jm) restored $(checkpoints $FJ | jq -r '.latest.restored.external_path') and checkpoints again after $((SECONDS - start)) s"
else
  bad "$FJ: the new JobManager did not resume from checkpoint >= $newest" "$(checkpoints $FJ | jq -c '{counts, latest}' 2>&1; describe $FJ)"
fi
if wait_for "$FJ FINISHED" $JOB_TIMEOUT state_is $FJ FINISHED; then
  ok "$FJ: FINISHED after the end of its input"
  check_output $FJ "$work"
else
  bad "$FJ: not FINISHED within $JOB_TIMEOUT s" "$(describe $FJ)"
fi

# --- helm upgrade: the operator pod rolls; the new one runs the next job -------------------------
old_op=$(kubectl -n $OP_NS get pods -l app.kubernetes.io/instance=$RELEASE -o jsonpath='{.items[*].metadata.name}')
start=$SECONDS
if out=$(helm upgrade $RELEASE "$repo/charts/rheo-operator" -n $OP_NS --reuse-values --set logLevel=debug \
           --wait --timeout 180s 2>&1) \
   && wait_for "the old operator pod gone" 120 bash -c "! kubectl -n $OP_NS get pod $old_op >/dev/null 2>&1"; then
  ok "helm upgrade (revision $(helm status $RELEASE -n $OP_NS -o json | jq .version)) in $((SECONDS - start)) s: $old_op replaced by $(kubectl -n $OP_NS get pods -l app.kubernetes.io/instance=$RELEASE -o jsonpath='{.items[*].metadata.name}')"
else
  bad "helm upgrade" "$out"
fi

# --- examples/hpa-word-count.yaml: reactive mode, kubectl scale ----------------------------------
FJ=hpa-word-count
derive hpa-word-count.yaml $FJ 1 '[]' >"$work/$FJ.yaml"
kubectl -n $NS apply -f "$work/$FJ.yaml" >/dev/null
if wait_for "$FJ RUNNING" 300 state_is $FJ RUNNING && wait_for "$FJ: a checkpoint" 180 ckpt_holds $FJ '.counts.completed >= 1' \
   && [[ $(fj_get $FJ '{.status.jobStatus.parallelism}') == 2 ]]; then
  ok "$FJ: RUNNING at parallelism 2 on 1 TaskManager (2 slots, reactive mode)"
else
  bad "$FJ: not RUNNING at parallelism 2" "$(describe $FJ)"
fi
newest=$(checkpoints $FJ | jq '.latest.completed.id')
start=$SECONDS
if out=$(kubectl -n $NS scale fj/$FJ --replicas=2 2>&1) \
   && wait_for "$FJ: 2 TaskManagers Running" 180 count_running $FJ taskmanager 2 \
   && wait_for "$FJ rescaled to parallelism 4" 300 bash -c "[[ \$(kubectl -n $NS get fj/$FJ -o jsonpath='{.status.jobStatus.parallelism}') == 4 ]]" \
   && wait_for "$FJ restored after the rescale" 300 restored_newest $FJ "$newest"; then
  ok "$FJ: kubectl scale --replicas=2: parallelism 2 -> 4 from checkpoint $(checkpoints $FJ | jq '.latest.restored.id') (newest was $newest) in $((SECONDS - start)) s"
else
  bad "$FJ: kubectl scale did not rescale the job" "$out$(describe $FJ)"
fi
if wait_for "$FJ FINISHED" $JOB_TIMEOUT state_is $FJ FINISHED; then
  ok "$FJ: FINISHED after the end of its input"
  check_output $FJ "$work"
else
  bad "$FJ: not FINISHED within $JOB_TIMEOUT s" "$(describe $FJ)"
fi

# --- kubectl delete fj: the finalizer is released, the children are garbage-collected ------------
for FJ in hpa-word-count word-count-s3; do
  start=$SECONDS
  if out=$(kubectl -n $NS delete fj/$FJ --timeout=180s 2>&1) && ! kubectl -n $NS get fj/$FJ >/dev/null 2>&1 \
     && wait_for "$FJ's children garbage-collected" 120 children_gone $FJ; then
    ok "$FJ: kubectl delete fj: finalizer released, Deployments, Services, ConfigMap and pods gone in $((SECONDS - start)) s"
  else
    bad "$FJ: kubectl delete fj" "$out$(kubectl -n $NS get fj/$FJ -o jsonpath='{.metadata.finalizers} {.status}' 2>&1; kubectl -n $NS get deploy,svc,cm,pods -l app.kubernetes.io/instance=$FJ 2>&1)"
  fi
done

# --- helm uninstall ------------------------------------------------------------------------------
operator_gone() { [[ -z $(kubectl -n $OP_NS get deploy,pods,svc,sa -l app.kubernetes.io/instance=$RELEASE -o name 2>/dev/null) ]]; }
if out=$(helm uninstall $RELEASE -n $OP_NS --wait --timeout 120s 2>&1) \
   && wait_for "the operator's objects gone" 120 operator_gone; then
  ok "helm uninstall: the operator's objects are gone; the CRD stays (Helm never deletes CRDs): $(kubectl get crd $CRD_NAME -o name)"
else
  bad "helm uninstall" "$out$(kubectl -n $OP_NS get all 2>&1)"
fi
