# Sourced by e2e.sh (suite `autoscale`): Rheo's own autoscaler on the real cluster, with
# examples/autoscaled-arriving-numbers.yaml. It defines `autoscale_scenario`, which
# e2e-lifecycle.sh runs in the background beside the lifecycle scenarios: its load schedule is
# fixed in time (about 8 minutes), and every check waits on the FlinkJob's status, the job's
# parallelism, Events or the committed output, never on a share of the run.
# Its requests (JobManager 50m, TaskManagers 100m each, at most 3) fit the node beside the seven
# lifecycle jobs. Needs lib.sh and e2e-stack.sh (TAG, PY, filer_get/filer_ls, fj_get, describe).

# The load steps from 30/s to 900/s (alternating 990 and 810 every 5 s, so +-10 %) at 90 s and back
# to 30/s at 300 s, through a map costing 4 ms per record (a subtask keeps up with roughly 300/s):
# the operator adds TaskManagers (at most maxReplicas 3, fewer than the load wants), does not
# remove any while the load is high, removes them after the scale-down delay once it is low, and
# the committed output is every arrived number exactly once.
autoscale_scenario() {
  local work=$1 FJ=arriving-numbers load_t0 total last p r up top down events status start out
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
      jobManager: {resources: {requests: {cpu: "50m", memory: "256Mi"}, limits: {memory: "1Gi"}}},
      taskManager: {autoscaler: {maxReplicas: 3, metricsIntervalSeconds: 5},
                    resources: {requests: {cpu: "100m", memory: "256Mi"}, limits: {memory: "1Gi"}}}}}}' \
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
}
