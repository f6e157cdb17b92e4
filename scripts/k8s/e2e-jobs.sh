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

fj_get() { kubectl -n $NS get fj/"$1" -o jsonpath="$2" 2>/dev/null; }
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
}

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
children_gone() { [[ -z $(kubectl -n $NS get deploy,svc,cm,pods -l app.kubernetes.io/instance=$1 -o name 2>/dev/null) ]]; }
for FJ in hpa-word-count word-count-s3; do
  start=$SECONDS
  if out=$(kubectl -n $NS delete fj/$FJ --timeout=180s 2>&1) && ! kubectl -n $NS get fj/$FJ >/dev/null 2>&1 \
     && wait_for "$FJ's children garbage-collected" 120 children_gone $FJ; then
    ok "$FJ: kubectl delete fj: finalizer released, Deployments, Services, ConfigMap and pods gone in $((SECONDS - start)) s"
  else
    bad "$FJ: kubectl delete fj" "$out$(kubectl -n $NS get fj/$FJ -o jsonpath='{.metadata.finalizers} {.status}' 2>&1; kubectl -n $NS get deploy,svc,cm,pods -l app.kubernetes.io/instance=$FJ 2>&1)"
  fi
done

# --- examples/autoscaled-arriving-numbers.yaml: Rheo's autoscaler scales the TaskManagers -------
# The load steps from 30/s to 900/s (alternating 990 and 810 every 5 s, so +-10 %) at 90 s and back
# to 30/s at 300 s, through a map costing 4 ms per record (a subtask keeps up with roughly 300/s):
# the operator adds TaskManagers (at most maxReplicas 3, fewer than the load wants), does not
# remove any while the load is high, removes them after the scale-down delay once it is low, and
# the committed output is every arrived number exactly once.
FJ=arriving-numbers
load_t0=$(date +%s%3N)
{
  echo "$load_t0 30"
  for ((k = 0; k < 42; k++)); do echo "$((load_t0 + 90000 + k * 5000)) $((k % 2 ? 810 : 990))"; done
  echo "$((load_t0 + 300000)) 30"
  echo "$((load_t0 + 480000)) 0"
} >"$work/schedule"
# Records arrived by the end: the schedule integrated (each line rate times its duration).
total=$(awk 'NR > 1 { n += r * ($1 - t) / 1000 } { t = $1; r = $2 } END { printf "%d", n }' "$work/schedule")
kubectl -n $NS create configmap arriving-numbers-schedule --from-file=schedule="$work/schedule" >/dev/null
jq -n --arg image "rheo:$TAG" '{FlinkJob: {spec: {
    image: $image,
    flinkConfiguration: {"execution.checkpointing.interval": "2s", "job.autoscaler.metrics.window": "30s",
                         "job.autoscaler.stabilization.interval": "10s", "job.autoscaler.scale-down.interval": "60s"},
    jobManager: {resources: {requests: {cpu: "100m", memory: "256Mi"}, limits: {memory: "1Gi"}}},
    taskManager: {autoscaler: {maxReplicas: 3, metricsIntervalSeconds: 5},
                  resources: {requests: {cpu: "200m", memory: "256Mi"}, limits: {memory: "1Gi"}}}}}}' \
  >"$work/$FJ.patch.json"
"$PY" "$here/e2e-derive.py" "$repo/examples/autoscaled-arriving-numbers.yaml" "$work/$FJ.patch.json" >"$work/$FJ.yaml"
kubectl -n $NS apply -f "$work/$FJ.yaml" >/dev/null
elapsed() { echo $(( ($(date +%s%3N) - load_t0) / 1000 )); }
if wait_for "$FJ RUNNING" 300 state_is $FJ RUNNING; then
  ok "$FJ: RUNNING at parallelism $(fj_get $FJ '{.status.jobStatus.parallelism}') on 1 TaskManager, $(elapsed) s after the apply"
else
  bad "$FJ: not RUNNING" "$(describe $FJ)"
fi
# The scale log: a line `SECONDS PARALLELISM REPLICAS DECISION` whenever the running job's
# parallelism or the replicas the operator asks for change, sampled every second until the job is
# back on one TaskManager after the load stepped down (or 400 s after that).
: >"$work/scale.log"
last=
while (( $(elapsed) < 700 )); do
  if state_is $FJ RUNNING; then
    p=$(fj_get $FJ '{.status.jobStatus.parallelism}'); r=$(fj_get $FJ '{.spec.taskManager.replicas}')
    if [[ -n $p && "$p $r" != "$last" ]]; then
      last="$p $r"; echo "$(elapsed) $p $r $(fj_get $FJ '{.status.autoscaler.decision}')" >>"$work/scale.log"
      (( p >= 2 && p == r && $(elapsed) < 300 )) && kubectl -n $NS get fj/$FJ -o wide >"$work/wide.txt" 2>&1
    fi
    (( $(elapsed) >= 300 )) && [[ "$p $r" == "1 1" ]] && break
  fi
  sleep 1
done
log "$FJ: $(tr '\n' ';' <"$work/scale.log")"
up=$(awk '$1 >= 90 && $2 >= 2 && $2 == $3 { print $1 - 90, $2; exit }' "$work/scale.log")
top=$(awk '$1 < 300 && $2 > m { m = $2 } END { print m + 0 }' "$work/scale.log")
if [[ -n $up ]]; then
  ok "$FJ: the load stepped up to 900/s at 90 s; ${up% *} s later it ran at parallelism ${up#* } on as many TaskManagers, at most $top before the step down:"
  sed 's/^/     | /' "$work/wide.txt"
else
  bad "$FJ: not scaled up under the load" "$(cat "$work/scale.log"; describe $FJ)"
fi
# No TaskManager removed while the load was high: the parallelism only grew from 90 s to 300 s.
if awk '$1 >= 90 && $1 < 300 { if ($2 < m) exit 1; m = $2 }' "$work/scale.log"; then
  ok "$FJ: held through the +-10 % wobble: no scale-down while the load was high"
else
  bad "$FJ: scaled down while the load was high" "$(cat "$work/scale.log")"
fi
down=$(awk '$1 >= 300 && $2 == 1 && $3 == 1 { print $1 - 300; exit }' "$work/scale.log")
if [[ -n $down ]]; then
  ok "$FJ: the load stepped down to 30/s at 300 s; parallelism 1 on 1 TaskManager $down s later (backlog, window 30 s, scale-down delay 60 s)"
else
  bad "$FJ: not scaled down to 1 TaskManager" "$(cat "$work/scale.log"; describe $FJ)"
fi
if awk '$3 > 3 { exit 1 }' "$work/scale.log"; then
  ok "$FJ: replicas never above maxReplicas 3 (seconds, parallelism, replicas, decision):"; sed 's/^/     | t=/' "$work/scale.log"
else
  bad "$FJ: replicas above maxReplicas 3" "$(cat "$work/scale.log")"
fi
events=$(kubectl -n $NS get events --field-selector involvedObject.name=$FJ -o json \
  | jq -r '.items[] | select(.reason == "ScaledUp" or .reason == "ScaledDown" or .reason == "Rescaled")
           | select((.action // "") | startswith("AutoscaleTo")) | "\(.reason) \(.note // .message)"')
if grep -q "^ScaledUp parallelism 1 → " <<<"$events" && grep -Eq "^ScaledDown parallelism [0-9] → 1, TaskManagers [0-9] → 1: " <<<"$events" \
   && grep -q "^Rescaled " <<<"$events"; then
  ok "$FJ: each decision is an Event:"; sed 's/^/     | /' <<<"$events"
else
  bad "$FJ: missing ScaledUp, ScaledDown or Rescaled Events" "$events"
fi
status=$(kubectl -n $NS get fj/$FJ -o json | jq -c '.status.autoscaler | {decision, reason, lastRescaleTime,
  vertices: [.vertices[] | {name, parallelism, recordsInPerSecond, busyTimeMsPerSecond, wantedParallelism}]}')
if jq -e '.lastRescaleTime != null and (.vertices | length) >= 2 and all(.vertices[]; .recordsInPerSecond != null)' <<<"$status" >/dev/null; then
  ok "$FJ: status.autoscaler: $status"
else
  bad "$FJ: status.autoscaler incomplete" "$status"
fi
# Exactly once: after the arrivals stop at 480 s, the committed output reaches every arrived number.
committed() {
  local f
  : >"$work/$FJ.out"
  for f in $(filer_ls "/buckets/rheo/output/$FJ/" | grep -E '/part-[^/#]*\.csv$'); do
    filer_get "$f" >>"$work/$FJ.out" || return 1
  done
  [[ $(wc -l <"$work/$FJ.out") -ge $total ]]
}
if wait_for "$FJ: $total numbers committed" 420 committed; then
  sort -n "$work/$FJ.out" -o "$work/$FJ.out"
  if cmp -s "$work/$FJ.out" <(seq 0 $((total - 1))); then
    ok "$FJ: the committed output is the numbers 0 to $((total - 1)), each exactly once, through every rescale"
  else
    bad "$FJ: the committed output is not 0..$((total - 1)) exactly once" \
      "$(wc -l <"$work/$FJ.out") lines, $(uniq -d "$work/$FJ.out" | wc -l) duplicated; $(diff <(seq 0 $((total - 1))) "$work/$FJ.out" | head -10)"
  fi
else
  bad "$FJ: $(wc -l <"$work/$FJ.out") of $total numbers committed" "$(describe $FJ)"
fi
start=$SECONDS
if out=$(kubectl -n $NS delete fj/$FJ --timeout=180s 2>&1) && wait_for "$FJ's children garbage-collected" 120 children_gone $FJ; then
  ok "$FJ: deleted in $((SECONDS - start)) s"
else
  bad "$FJ: kubectl delete fj" "$out"
fi

# --- helm uninstall ------------------------------------------------------------------------------
operator_gone() { [[ -z $(kubectl -n $OP_NS get deploy,pods,svc,sa -l app.kubernetes.io/instance=$RELEASE -o name 2>/dev/null) ]]; }
if out=$(helm uninstall $RELEASE -n $OP_NS --wait --timeout 120s 2>&1) \
   && wait_for "the operator's objects gone" 120 operator_gone; then
  ok "helm uninstall: the operator's objects are gone; the CRD stays (Helm never deletes CRDs): $(kubectl get crd $CRD_NAME -o name)"
else
  bad "helm uninstall" "$out$(kubectl -n $OP_NS get all 2>&1)"
fi
