# Sourced by e2e.sh after e2e-jobs.sh (suites `lifecycle` and `autoscale`): a FlinkJob's
# lifecycle on the real cluster (issues 11 and 12), each scenario a job of its own, all of them
# at once (each in a background subshell with its own log, printed when it ends), with two
# operator replicas, and beside them the autoscaler's scenario (e2e-autoscale.sh):
#
#   lc-savepoint   both nonces; a spec change under upgradeMode savepoint with the operator's
#                  leader pod deleted while UPGRADING (the other replica finishes it); suspend
#                  (no pods) and resume from the savepoint; exact output
#   lc-last-state  a spec change under last-state: the new job restores the old one's newest
#                  checkpoint; a redeploy from a missing savepoint refused before the job is
#                  touched, then withdrawn; exact output
#   lc-stateless   a spec change under stateless: the new job starts from nothing and, with
#                  fs.overwrite-files, rewrites the whole output; exact output
#   lc-delete      kubectl delete fj of a RUNNING job with deletionPolicy savepoint: the final
#                  savepoint on S3, the finalizer released, the children garbage-collected
#   lc-bad-image   a bad image tag (ImagePullBackOff in status.error), fixed by a spec change;
#                  then a bad upgrade rolled back (spec.rollback) from its savepoint; exact output
#   lc-restart     the TaskManager SIGKILLed with restart-strategy none: the job FAILS, the
#                  JobManager pod turns NotReady (/jobs/:id/ready), job.restartPolicy restarts it
#                  from its newest checkpoint; exact output
#   lc-scale       kubectl scale of a job that is not reactive: a savepoint redeploy at
#                  replicas x slots; a periodic savepoint trims the history to 1 and deletes the
#                  dropped savepoint's files; exact output
#
# Needs only lib.sh and e2e-stack.sh (TAG, S3 credentials, filer_get/filer_ls, OP_NS, RELEASE),
# so it runs without e2e-jobs.sh too: scripts/k8s/e2e.sh with RHEO_E2E_SUITES=lifecycle.
# The input: lines `TIMESTAMP_MS<TAB>8 words` 10 ms apart, read at LC_RATE lines per second,
# so every job runs long enough for what is done to it; each wait is on a state, bounded.

LC_LINES=${RHEO_E2E_LC_LINES:-6000}
LC_RATE=${RHEO_E2E_LC_RATE:-40}
LC_TIMEOUT=${RHEO_E2E_JOB_TIMEOUT:-600}
lc_start=$SECONDS
lc_work=$(mktemp -d)
eval "lc_previous_cleanup() $(declare -f cleanup | tail -n +2)"
cleanup() { rm -rf "$lc_work"; lc_previous_cleanup; }

awk -v n="$LC_LINES" 'BEGIN { srand(12); for (i = 0; i < n; i++) { l = i * 10 "\t"
  for (j = 0; j < 8; j++) l = l (j ? " " : "") "w" int(rand() * 60); print l } }' >"$lc_work/lines.txt"
awk -F'\t' '{ end = (int($1 / 1000) + 1) * 1000; n = split($2, w, " "); for (i = 1; i <= n; i++) c[end "," w[i]]++ }
  END { for (k in c) print k "," c[k] }' "$lc_work/lines.txt" | sort >"$lc_work/reference.csv"
kubectl -n $NS create configmap lc-input --from-file=lines.txt="$lc_work/lines.txt" >/dev/null

# --- the operator: two replicas, one leader ------------------------------------------------------
start=$SECONDS
if out=$(helm upgrade --install $RELEASE "$repo/charts/rheo-operator" -n $OP_NS --create-namespace \
           --set image.tag=$TAG --set logFormat=text --set replicas=2 --wait --timeout 180s 2>&1); then
  ok "operator with 2 replicas (leader election) in $((SECONDS - start)) s: $(kubectl -n $OP_NS get pods -l app.kubernetes.io/instance=$RELEASE -o jsonpath='{.items[*].metadata.name}')"
else
  bad "helm install --set replicas=2" "$out"; exit 1
fi
leader() { kubectl -n $OP_NS get lease rheo-operator-leader -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
has_leader() { [[ -n $(leader) ]]; }
wait_for "an operator leader" 60 has_leader || bad "no operator holds the lease"

# lc_manifest NAME SPEC_JSON: examples/word-count-s3.yaml with the test's patch and then SPEC_JSON
# deep-merged into the FlinkJob's spec (a null deletes a key).
lc_manifest() {
  local name=$1 spec=$2
  jq -n --arg name "$name" --arg image "rheo:$TAG" --arg key "$S3_ACCESS" --arg secret "$S3_SECRET" \
        --arg rate "$LC_RATE" --arg out "s3://rheo/output/$name" --argjson spec "$spec" '{
    Secret: {stringData: {AWS_ACCESS_KEY_ID: $key, AWS_SECRET_ACCESS_KEY: $secret}},
    FlinkJob: {metadata: {name: $name}, spec: ({
      image: $image,
      flinkConfiguration: {"execution.checkpointing.interval": "2s"},
      jobManager: {resources: {requests: {cpu: "50m", memory: "256Mi"}, limits: {memory: "1Gi"}}},
      taskManager: {replicas: 1, slots: 2, resources: {requests: {cpu: "100m", memory: "256Mi"}, limits: {memory: "1Gi"}}},
      podTemplate: {spec: {
        containers: [{name: "rheo", envFrom: [{secretRef: {name: "s3-credentials"}}],
                      volumeMounts: [{name: "input", mountPath: "/opt/rheo/input", readOnly: true}]}],
        volumes: [{name: "input", configMap: {name: "lc-input"}}]}},
      job: {entry: "word-count", parallelism: null, savepointTriggerNonce: null, checkpointTriggerNonce: null,
            args: ["--event-time", "--window", "1s", "--input", "/opt/rheo/input/lines.txt",
                   "--output", $out, "--rate", $rate]},
      rollback: null} * $spec)}}' >"$lc_work/$name.patch.json"
  "$PY" "$here/e2e-derive.py" "$repo/examples/word-count-s3.yaml" "$lc_work/$name.patch.json"
}

lc_apply() { lc_manifest "$1" "$2" >"$lc_work/$1.yaml" && kubectl -n $NS apply -f "$lc_work/$1.yaml" >/dev/null; }
lc_patch() { kubectl -n $NS patch fj/"$1" --type merge -p "$2" >/dev/null; }
# lc_holds NAME JQ: the FlinkJob (as JSON) satisfies JQ.
lc_holds() { kubectl -n $NS get fj/"$1" -o json 2>/dev/null | jq -e "$2" >/dev/null; }
lc_get() { kubectl -n $NS get fj/"$1" -o json 2>/dev/null | jq -r "$2"; }
lc_rest() {
  local ip=
  ip=$(kubectl -n $NS get service "$1-rest" -o jsonpath='{.spec.clusterIP}' 2>/dev/null) || return 1
  curl -s --max-time 3 "http://$ip:8081$2"
}
lc_job() { lc_get "$1" '.status.jobStatus.jobId'; }
lc_ckpts() { lc_rest "$1" "/jobs/$(lc_job "$1")/checkpoints"; }
lc_ckpt_holds() { lc_ckpts "$1" | jq -e "$2" >/dev/null; }
lc_epoch() { lc_get "$1" '.status.reconciliation.jobEpoch'; }
# lc_running NAME EPOCH: the job of that deployment epoch RUNNING and checkpointing.
lc_running() {
  lc_holds "$1" ".status.reconciliation.jobEpoch == $2 and .status.jobStatus.state == \"RUNNING\"" \
    && lc_ckpt_holds "$1" '.counts.completed >= 1'
}
lc_pods() { kubectl -n $NS get pods -l "app.kubernetes.io/instance=$1${2:+,app.kubernetes.io/component=$2}" -o name 2>/dev/null; }
lc_no_pods() { [[ -z $(lc_pods "$1") ]]; }
# lc_events NAME: `REASON ACTION INSTANCE NOTE` of the FlinkJob's Events, oldest first.
lc_events() {
  kubectl -n $NS get events --field-selector "involvedObject.kind=FlinkJob,involvedObject.name=$1" -o json 2>/dev/null \
    | jq -r '.items | sort_by(.eventTime // .lastTimestamp) | .[] | "\(.reason) \(.action) \(.reportingInstance) \(.message // .note)"'
}
lc_event() { lc_events "$1" | grep -q "^$2 "; }
lc_savepoint_exists() { filer_get "/buckets/${1#s3://}/_metadata" -o /dev/null; }
lc_describe() {
  kubectl -n $NS get fj/"$1" -o wide 2>&1; kubectl -n $NS get pods -l app.kubernetes.io/instance="$1" 2>&1
  kubectl -n $NS get fj/"$1" -o json 2>&1 | jq -c '.status | del(.reconciliation.lastReconciledSpec, .reconciliation.lastStableSpec, .reconciliation.rolledBackSpec)'
  lc_events "$1" | tail -8
  kubectl -n $NS logs -l "app.kubernetes.io/instance=$1,app.kubernetes.io/component=jobmanager" --tail=8 2>&1
  save_logs "$1" | head -1
}

# lc_finish NAME: FINISHED, exact output, kubectl delete fj (a finished job: released at once).
lc_finish() {
  local name=$1
  if wait_for "$name FINISHED" "$LC_TIMEOUT" lc_holds "$name" '.status.jobStatus.state == "FINISHED"'; then
    ok "$name: FINISHED ($(lc_get "$name" '.status.lifecycleState'))"
    check_output "$name" "$lc_work"
    # The checkpoint directories of earlier epochs are removed once the new job checkpoints.
    if lc_event "$name" CheckpointsKept || lc_holds "$name" '(.status.reconciliation.retiredCheckpointDirs // []) | length > 0'; then
      bad "$name: checkpoint directories of earlier job epochs kept" "$(lc_events "$name" | grep '^Checkpoints')"
    elif [[ $(lc_epoch "$name") -gt 0 ]]; then
      ok "$name: the checkpoint directories of earlier job epochs removed: $(lc_events "$name" | grep '^CheckpointsRemoved ' | tail -1 | cut -d' ' -f4-)"
    fi
  else
    bad "$name: not FINISHED within $LC_TIMEOUT s" "$(lc_describe "$name")"
  fi
  kubectl -n $NS delete fj/"$name" --timeout=120s >/dev/null 2>&1 || bad "$name: kubectl delete fj" "$(lc_describe "$name")"
}

# lc_first_run NAME: RUNNING with a checkpoint.
lc_first_run() {
  local start=$SECONDS
  if wait_for "$1 RUNNING" 300 lc_running "$1" 0; then
    ok "$1: RUNNING with a checkpoint in $((SECONDS - start)) s"
  else
    bad "$1: not RUNNING with a checkpoint" "$(lc_describe "$1")"; return 1
  fi
}

# --- lc-savepoint: nonces, savepoint upgrade through an operator failover, suspend and resume ----
lc_savepoint() {
  local FJ=lc-savepoint start= old_job= old_leader= new_leader= path= restored=
  lc_apply $FJ '{"job": {"upgradeMode": "savepoint", "savepointTriggerNonce": 1, "checkpointTriggerNonce": 1}}'
  lc_first_run $FJ || return

  # Both nonces: a savepoint in status (and on S3), a checkpoint by the JobManager's trigger API.
  start=$SECONDS
  lc_patch $FJ '{"spec": {"job": {"savepointTriggerNonce": 2, "checkpointTriggerNonce": 2}}}'
  if wait_for "$FJ: the nonce's savepoint" 120 lc_holds $FJ \
       '.status.reconciliation.lastSavepointTriggerNonce == 2 and .status.jobStatus.lastSavepoint.purpose == "manual"' \
     && path=$(lc_get $FJ '.status.jobStatus.lastSavepoint.path') && lc_savepoint_exists "$path"; then
    ok "$FJ: savepointTriggerNonce 1 -> 2: savepoint $path in status and on S3 after $((SECONDS - start)) s"
  else
    bad "$FJ: no savepoint for savepointTriggerNonce 2" "$(lc_describe $FJ)"
  fi
  if wait_for "$FJ: the nonce's checkpoint" 120 lc_holds $FJ '.status.reconciliation.lastCheckpointTriggerNonce == 2' \
     && lc_event $FJ CheckpointCompleted; then
    ok "$FJ: checkpointTriggerNonce 1 -> 2: $(lc_events $FJ | grep '^CheckpointCompleted ' | tail -1 | cut -d' ' -f4-)"
  else
    bad "$FJ: no checkpoint for checkpointTriggerNonce 2" "$(lc_describe $FJ)"
  fi

  # A spec change under savepoint mode, the operator's leader deleted in the middle of it.
  old_job=$(lc_job $FJ)
  old_leader=$(leader)
  start=$SECONDS
  lc_patch $FJ '{"spec": {"flinkConfiguration": {"execution.checkpointing.interval": "3s"}}}'
  # Deleted once the stop-with-savepoint is sent: a later pass is to read its result. The whole
  # upgrade may take less than one look at the status on a loaded machine, so its Event counts
  # too (Events stay); the deletion then comes after the upgrade, which must not undo it.
  sent() {
    lc_holds $FJ '.status.lifecycleState == "UPGRADING" and .status.jobStatus.pendingSavepoint.triggerId != null' \
      || lc_event $FJ StopWithSavepointTriggered
  }
  local lifecycle_at_deletion=
  if wait_for "$FJ: stop-with-savepoint triggered" 60 sent; then
    lifecycle_at_deletion=$(lc_get $FJ '.status.lifecycleState')
    kubectl -n $OP_NS delete pod "$old_leader" --wait=false >/dev/null
    echo "     ($FJ $lifecycle_at_deletion, stop-with-savepoint triggered: deleted the operator leader $old_leader)"
  else
    bad "$FJ: no stop-with-savepoint seen after the spec change" "$(lc_describe $FJ)"
  fi
  other_leader() { local l; l=$(leader); [[ -n $l && $l != "$old_leader" ]]; }
  if wait_for "$FJ upgraded" 300 lc_running $FJ 1 && wait_for "a new leader" 60 other_leader; then
    new_leader=$(leader)
    path=$(lc_get $FJ '.status.reconciliation.restorePath')
    restored=$(lc_ckpts $FJ | jq -r '.latest.restored.external_path')
    local interval= finisher= upgrades=
    interval=$(lc_rest $FJ "/jobs/$(lc_job $FJ)/checkpoints/config" | jq '.interval')
    finisher=$(lc_events $FJ | grep '^UpgradedFromSavepoint ' | tail -1 | cut -d' ' -f3)
    upgrades=$(lc_events $FJ | grep -c '^UpgradedFromSavepoint ')
    # Either replica may finish it: the deleted leader keeps the Lease until its passes in
    # flight end (up to 20 s), and one of them may read the completed savepoint; else the next
    # leader does. Either way once: one savepoint taken and restored, one upgrade Event.
    if [[ $path == s3://rheo/savepoints/savepoint-* && $restored == "$path" && $interval == 3000 && $upgrades == 1 \
          && ($finisher == "$new_leader" || $finisher == "$old_leader") ]]; then
      ok "$FJ: spec change (savepoint mode) with leader $old_leader deleted while its stop-with-savepoint ran: lifecycle $lifecycle_at_deletion at the deletion, finished once by $finisher ($([[ $finisher == "$new_leader" ]] && echo "the next leader" || echo "the deleted leader, before it let the Lease go")), $new_leader leads now; job $old_job -> $(lc_job $FJ) restored $path, checkpoint interval 3 s, in $((SECONDS - start)) s"
    else
      bad "$FJ: upgrade: restorePath '$path', restored '$restored', interval '$interval', $upgrades upgrade Events, finished by '$finisher' (new leader $new_leader)" "$(lc_describe $FJ)"
    fi
  else
    bad "$FJ: the upgrade did not finish after the leader's deletion" "$(leader; lc_describe $FJ; kubectl -n $OP_NS get pods 2>&1)"
  fi

  # Suspend: the pods go away, the state stays in a savepoint; resume restores it.
  start=$SECONDS
  lc_patch $FJ '{"spec": {"job": {"state": "suspended"}}}'
  if wait_for "$FJ SUSPENDED" 180 lc_holds $FJ '.status.lifecycleState == "SUSPENDED"' \
     && wait_for "$FJ: no pods" 120 lc_no_pods $FJ; then
    path=$(lc_get $FJ '.status.reconciliation.restorePath')
    ok "$FJ: suspended in $((SECONDS - start)) s: no pods, $(lc_events $FJ | grep '^Suspended' | tail -1 | cut -d' ' -f1,4-)"
  else
    bad "$FJ: not suspended" "$(lc_describe $FJ)"
  fi
  start=$SECONDS
  lc_patch $FJ '{"spec": {"job": {"state": "running"}}}'
  if wait_for "$FJ resumed" 300 lc_running $FJ 3 \
     && restored=$(lc_ckpts $FJ | jq -r '.latest.restored.external_path') \
     && [[ $path == s3://rheo/savepoints/savepoint-* && $restored == "$path" ]]; then
    ok "$FJ: resumed in $((SECONDS - start)) s from the suspension's savepoint $path"
  else
    bad "$FJ: not resumed from the savepoint '$path' (restored '${restored:-}')" "$(lc_describe $FJ)"
  fi
  lc_finish $FJ
}

# lc_spec_change NAME MODE: a spec change (the checkpoint interval) under upgradeMode MODE.
lc_spec_change() {
  local FJ=$1 mode=$2 extra=${3:-'{}'} start= old_job= newest= stats=
  lc_apply "$FJ" "$(jq -n --arg mode "$mode" --argjson extra "$extra" '{job: {upgradeMode: $mode}} * $extra')"
  lc_first_run "$FJ" || return
  wait_for "$FJ: 2 checkpoints" 120 lc_ckpt_holds "$FJ" '.counts.completed >= 2'
  old_job=$(lc_job "$FJ")
  newest=$(lc_ckpts "$FJ" | jq '.latest.completed.id')
  start=$SECONDS
  lc_patch "$FJ" '{"spec": {"flinkConfiguration": {"execution.checkpointing.interval": "3s"}}}'
  if wait_for "$FJ upgraded" 300 lc_running "$FJ" 1; then
    stats=$(lc_ckpts "$FJ")
    case $mode in
      last-state)
        if jq -e --arg dir "s3://rheo/checkpoints/$old_job/chk-" --argjson newest "$newest" \
             '(.latest.restored.external_path | startswith($dir)) and .latest.restored.id >= $newest' <<<"$stats" >/dev/null; then
          ok "$FJ: spec change (last-state): job $old_job -> $(lc_job "$FJ") restored its newest checkpoint $(jq -r '.latest.restored.external_path' <<<"$stats") (newest before the change: $newest) in $((SECONDS - start)) s"
        else
          bad "$FJ: last-state upgrade did not restore checkpoint >= $newest of $old_job" "$(jq -c '.latest' <<<"$stats"; lc_describe "$FJ")"
        fi ;;
      stateless)
        if jq -e '.counts.restored == 0 and .latest.restored == null' <<<"$stats" >/dev/null \
           && lc_holds "$FJ" '.status.reconciliation.restorePath == null'; then
          ok "$FJ: spec change (stateless): job $old_job -> $(lc_job "$FJ") started from nothing in $((SECONDS - start)) s"
        else
          bad "$FJ: stateless upgrade restored something" "$(jq -c '{counts, latest}' <<<"$stats"; lc_describe "$FJ")"
        fi ;;
    esac
  else
    bad "$FJ: the $mode upgrade did not finish" "$(lc_describe "$FJ")"
  fi
  [[ $mode == last-state ]] && lc_unrestorable_redeploy "$FJ"
  lc_finish "$FJ"
}

# lc_unrestorable_redeploy NAME: a redeploy from a savepoint that does not exist is refused
# before the running job is touched (the JobManager reads it first: /snapshots/validation);
# taking the nonce and path back withdraws the upgrade, and the job runs on.
lc_unrestorable_redeploy() {
  local FJ=$1 job_before= missing=s3://rheo/savepoints/no-such-savepoint
  job_before=$(lc_job "$FJ")
  lc_patch "$FJ" "{\"spec\": {\"job\": {\"initialSavepointPath\": \"$missing\", \"savepointRedeployNonce\": 1}}}"
  if wait_for "$FJ: SnapshotUnrestorable" 60 lc_holds "$FJ" \
       '.status.conditions[] | select(.type == "Stalled") | .reason == "SnapshotUnrestorable"' \
     && [[ $(lc_job "$FJ") == "$job_before" ]] && lc_holds "$FJ" '.status.jobStatus.state == "RUNNING"'; then
    ok "$FJ: savepointRedeployNonce with $missing refused before job $job_before was touched, which runs on: $(lc_get "$FJ" '.status.error')"
  else
    bad "$FJ: a redeploy from a missing savepoint was not refused, or the job was touched" "$(lc_describe "$FJ")"
  fi
  lc_patch "$FJ" '{"spec": {"job": {"initialSavepointPath": null, "savepointRedeployNonce": null}}}'
  if wait_for "$FJ: upgrade withdrawn" 60 lc_holds "$FJ" \
       '.status.reconciliation.upgrade == null and (.status.error // "") == "" and .status.jobStatus.state == "RUNNING"'; then
    ok "$FJ: nonce and path taken back: the upgrade withdrawn, job $(lc_job "$FJ") RUNNING"
  else
    bad "$FJ: the refused redeploy was not withdrawn" "$(lc_describe "$FJ")"
  fi
}

# --- lc-delete: kubectl delete fj of a running job takes the final savepoint ---------------------
lc_delete() {
  local FJ=lc-delete start= out= path=
  lc_apply $FJ '{"deletionPolicy": "savepoint"}'
  lc_first_run $FJ || return
  start=$SECONDS
  children_gone() { [[ -z $(kubectl -n $NS get deploy,svc,cm,pods -l app.kubernetes.io/instance=$FJ -o name 2>/dev/null) ]]; }
  if out=$(kubectl -n $NS delete fj/$FJ --timeout=180s 2>&1) && ! kubectl -n $NS get fj/$FJ >/dev/null 2>&1 \
     && wait_for "$FJ's children garbage-collected" 120 children_gone; then
    path=$(lc_events $FJ | awk '$1 == "StopWithSavepointCompleted" && $2 == "Delete" {print $NF}' | tail -1)
    if [[ $path == s3://rheo/savepoints/savepoint-* ]] && lc_savepoint_exists "$path"; then
      ok "$FJ: kubectl delete fj of a RUNNING job (deletionPolicy savepoint): final savepoint $path on S3, finalizer released, children gone in $((SECONDS - start)) s"
    else
      bad "$FJ: deleted, but no final savepoint in its Events (or not on S3): '$path'" "$(lc_events $FJ)"
    fi
  else
    bad "$FJ: kubectl delete fj" "$out$(lc_describe $FJ)"
  fi
}

# --- lc-bad-image: ImagePullBackOff in status, fixed by a spec change; an unhealthy upgrade rolled back
lc_bad_image() {
  local FJ=lc-bad-image start= error= path= restored=
  lc_apply $FJ '{"image": "rheo:no-such-tag", "job": {"upgradeMode": "savepoint"},
                 "rollback": {"enabled": true, "readinessTimeoutSeconds": 40}}'
  if wait_for "$FJ: the pull failure in status" 180 lc_holds $FJ '.status.error // "" | test("ImagePullBackOff|ErrImagePull")'; then
    ok "$FJ: image rheo:no-such-tag: status.error says $(lc_get $FJ '.status.error'), job state $(lc_get $FJ '.status.jobStatus.state')"
  else
    bad "$FJ: no ImagePullBackOff in status.error" "$(lc_describe $FJ)"
  fi
  start=$SECONDS
  lc_patch $FJ "{\"spec\": {\"image\": \"rheo:$TAG\"}}"
  if wait_for "$FJ fixed" 300 lc_running $FJ 1; then
    ok "$FJ: image fixed by a spec change: RUNNING with a checkpoint in $((SECONDS - start)) s, nothing deleted ($(lc_events $FJ | grep -E '^Upgraded' | tail -1 | cut -d' ' -f1,4-))"
  else
    bad "$FJ: not RUNNING after the image fix" "$(lc_describe $FJ)"; return
  fi
  # An upgrade to a bad tag never becomes RUNNING: rolled back after readinessTimeoutSeconds.
  start=$SECONDS
  lc_patch $FJ '{"spec": {"image": "rheo:no-such-tag-either"}}'
  if wait_for "$FJ rolled back" 300 lc_holds $FJ \
       '.status.lifecycleState == "ROLLED_BACK" and .status.jobStatus.state == "RUNNING" and .status.reconciliation.jobEpoch == 3' \
     && wait_for "$FJ: checkpointing after the rollback" 120 lc_ckpt_holds $FJ '.counts.completed >= 1'; then
    path=$(lc_get $FJ '.status.reconciliation.restorePath')
    restored=$(lc_ckpts $FJ | jq -r '.latest.restored.external_path')
    if [[ $path == s3://rheo/savepoints/savepoint-* && $restored == "$path" ]] && lc_holds $FJ ".spec.image == \"rheo:no-such-tag-either\" and (.status.error | test(\"rolled back\"))"; then
      ok "$FJ: upgrade to a bad tag rolled back in $((SECONDS - start)) s: the last stable spec runs from the upgrade's savepoint $path; status.error: $(lc_get $FJ '.status.error')"
    else
      bad "$FJ: rolled back, but restored '$restored' (restorePath '$path')" "$(lc_describe $FJ)"
    fi
  else
    bad "$FJ: the unhealthy upgrade was not rolled back" "$(lc_describe $FJ)"
  fi
  lc_finish $FJ
}

# --- lc-restart: a FAILED job, its JobManager NotReady, restarted by job.restartPolicy ------------
lc_restart() {
  local FJ=lc-restart start= tm= container= jm=
  lc_apply $FJ '{"flinkConfiguration": {"restart-strategy.type": "none"},
                 "job": {"upgradeMode": "last-state", "restartPolicy": {"mode": "OnFailure", "maxRestarts": 2, "backoffSeconds": 20}}}'
  lc_first_run $FJ || return
  wait_for "$FJ: 2 checkpoints" 120 lc_ckpt_holds $FJ '.counts.completed >= 2'
  # SIGKILL of the TaskManager's process (not a pod deletion, which leaves gracefully).
  tm=$(kubectl -n $NS get pods -l app.kubernetes.io/instance=$FJ,app.kubernetes.io/component=taskmanager -o jsonpath='{.items[0].metadata.name}')
  container=$(kubectl -n $NS get pod "$tm" -o jsonpath='{.status.containerStatuses[0].containerID}')
  start=$SECONDS
  ctr --address "$K8S_RUN/containerd/containerd.sock" -n k8s.io tasks kill -s SIGKILL "${container#containerd://}" >/dev/null
  jm_ready() { [[ $(kubectl -n $NS get pods -l app.kubernetes.io/instance=$FJ,app.kubernetes.io/component=jobmanager \
                     -o jsonpath='{.items[0].status.conditions[?(@.type=="Ready")].status}') == "$1" ]]; }
  if wait_for "$FJ FAILED" 120 lc_holds $FJ '.status.jobStatus.state == "FAILED" and .status.reconciliation.jobEpoch == 0'; then
    ok "$FJ: TaskManager $tm SIGKILLed (restart-strategy none): job FAILED after $((SECONDS - start)) s: $(lc_get $FJ '.status.jobStatus.failure')"
    if wait_for "$FJ: JobManager pod NotReady" 60 jm_ready False \
       && [[ $(lc_rest $FJ "/jobs/$(lc_job $FJ)/ready") == *'"ready":false'* ]]; then
      ok "$FJ: the JobManager pod is NotReady while its job is FAILED (/jobs/:id/ready answers 503), and the operator still reads the job through the REST Service"
    else
      bad "$FJ: the JobManager pod stayed Ready with its job FAILED" "$(kubectl -n $NS get pods -l app.kubernetes.io/instance=$FJ 2>&1; lc_describe $FJ)"
    fi
  else
    bad "$FJ: the job did not FAIL after its TaskManager's SIGKILL" "$(lc_describe $FJ)"
  fi
  if wait_for "$FJ restarted" 300 lc_running $FJ 1 \
     && lc_holds $FJ '.status.reconciliation.failureRestarts == 1' \
     && lc_ckpt_holds $FJ '.latest.restored.external_path | startswith("s3://rheo/checkpoints/")' \
     && wait_for "$FJ: JobManager pod Ready" 60 jm_ready True; then
    ok "$FJ: restarted by job.restartPolicy after the 20 s backoff ($((SECONDS - start)) s after the kill): $(lc_ckpts $FJ | jq -r '.latest.restored.external_path'), JobManager Ready again"
  else
    bad "$FJ: not restarted by job.restartPolicy" "$(lc_describe $FJ)"
  fi
  lc_finish $FJ
}

# --- lc-scale: kubectl scale of a job that is not reactive; periodic savepoints and history ------
lc_scale() {
  local FJ=lc-scale start= newest= sp=
  lc_apply $FJ '{"job": {"upgradeMode": "savepoint", "periodicSavepointIntervalSeconds": 60, "savepointHistory": {"maxCount": 1}}}'
  lc_first_run $FJ || return
  [[ $(lc_get $FJ '.status.jobStatus.parallelism') == 2 ]] || bad "$FJ: parallelism $(lc_get $FJ '.status.jobStatus.parallelism'), expected 1 x 2 slots"
  start=$SECONDS
  kubectl -n $NS scale fj/$FJ --replicas=2 >/dev/null
  if wait_for "$FJ rescaled" 300 lc_running $FJ 1 \
     && wait_for "$FJ: parallelism 4" 60 lc_holds $FJ '.status.jobStatus.parallelism == 4 and .status.taskManager.readyReplicas == 2'; then
    sp=$(lc_get $FJ '.status.reconciliation.restorePath')
    ok "$FJ: kubectl scale --replicas=2 (not reactive): parallelism 2 -> 4 from savepoint $sp in $((SECONDS - start)) s ($(lc_events $FJ | grep '^Rescaled' | tail -1 | cut -d' ' -f1))"
  else
    bad "$FJ: kubectl scale did not change the parallelism" "$(lc_describe $FJ)"; lc_finish $FJ; return
  fi
  # The rescale's savepoint is the history's one entry; the first periodic one, 60 s later,
  # replaces it, and its files are deleted.
  start=$SECONDS
  if wait_for "$FJ: a periodic savepoint" 150 lc_holds $FJ \
       '.status.jobStatus.savepointHistory | length == 1 and .[0].purpose == "periodic"' \
     && wait_for "$FJ: the dropped savepoint deleted" 60 lc_event $FJ SavepointDisposed \
     && ! lc_savepoint_exists "$sp"; then
    ok "$FJ: periodic savepoint $(lc_get $FJ '.status.jobStatus.savepointHistory[0].path') after $((SECONDS - start)) s; history trimmed to 1 (maxCount), $sp deleted from S3"
  else
    bad "$FJ: no periodic savepoint with history cleanup" "$(lc_describe $FJ)"
  fi
  lc_finish $FJ
}

# --- run them all at once ------------------------------------------------------------------------
# With the autoscale suite, its scenario (e2e-autoscale.sh) runs beside these: run after them it
# would add its whole 4 to 5 minutes to make e2e.
scenarios=()
if [[ $SUITES == *" lifecycle "* ]]; then
  scenarios+=(lc_savepoint "lc_spec_change lc-last-state last-state" \
              "lc_spec_change lc-stateless stateless {\"flinkConfiguration\":{\"fs.overwrite-files\":\"true\"}}" \
              lc_delete lc_bad_image lc_restart lc_scale)
fi
if [[ $SUITES == *" autoscale "* ]]; then
  mkdir -p "$lc_work/autoscale"
  scenarios+=("autoscale_scenario $lc_work/autoscale")
fi
pids=()
for i in "${!scenarios[@]}"; do
  # shellcheck disable=SC2086 # a scenario is a function and its arguments
  ( ${scenarios[$i]} ) >"$lc_work/scenario-$i.log" 2>&1 &
  pids+=($!)
done
for i in "${!scenarios[@]}"; do
  wait "${pids[$i]}"
  echo "--- ${scenarios[$i]}"
  cat "$lc_work/scenario-$i.log"
  pass=$((pass + $(grep -c '^ok ' "$lc_work/scenario-$i.log")))
  fail=$((fail + $(grep -c '^FAIL ' "$lc_work/scenario-$i.log")))
done
echo "lifecycle and autoscale scenarios: $((SECONDS - lc_start)) s"

# The operator back to what e2e.sh installed it as is not needed: the suite ends here.
if out=$(helm uninstall $RELEASE -n $OP_NS --wait --timeout 120s 2>&1); then
  ok "helm uninstall (after the lifecycle scenarios)"
else
  bad "helm uninstall" "$out"
fi
