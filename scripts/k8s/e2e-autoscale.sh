# Sourced by e2e.sh (suite `autoscale`): Rheo's own autoscaler on the real cluster, with
# examples/autoscaled-arriving-numbers.yaml. It defines `autoscale_scenario`, which
# e2e-lifecycle.sh runs in the background beside the lifecycle scenarios. The load follows the
# scenario's events, not the clock: it steps up once the autoscaler has judged a full window at the
# low rate, down once the job has run scaled up long enough to be judged again, and stops once the
# job is back on one TaskManager; every check waits on the FlinkJob's status, the job's
# parallelism, Events or the committed output, each wait bounded.
# Its requests (JobManager 50m, TaskManagers 100m each, at most 3) fit the node beside the seven
# lifecycle jobs. Needs lib.sh and e2e-stack.sh (TAG, PY, filer_get/filer_ls, fj_get, describe).

# The autoscaler's timing (flinkConfiguration below): a 20 s window, 10 s of stabilisation after
# each rescale, a 30 s scale-down delay, a sample every 5 s. After a rescale the job is judged on
# a full window at its new parallelism 10 + 20 s later, at the next sample: the load stays high
# AS_HOLD s after the first scale-up runs, which covers that with room for two judgements.
AS_HOLD=${RHEO_E2E_AS_HOLD:-45}

# The load: 30/s, then 900/s (alternating 990 and 810 every 5 s, so +-10 %), then 30/s again,
# then none, through a map costing 4 ms per record (a subtask keeps up with roughly 300/s): the
# operator adds TaskManagers (at most maxReplicas 3, fewer than the load wants), does not remove
# any while the load is high, removes them after the scale-down delay once it is low, and the
# committed output is every arrived number exactly once.
#
# The schedule file reaches the pods through a hostPath volume (this is a single-node cluster on
# this machine), which they see change at once; a ConfigMap's change (the example's way) reaches
# a pod only at the kubelet's next sync of it, up to a minute or more later, too late to follow
# the scenario's events. Each change starts at a whole second after t0, at least 2 s ahead
# (a source re-reads the file every 100 ms), so the arrivals before it never move and the
# schedule's integral (the numbers that arrive) is an integer.
autoscale_scenario() {
  local work=$1 FJ=arriving-numbers t0 sched total p r last phase= changed= up_at= down_at= end_at= scaled= deadline
  local up down top events status start out low_reason= k wobble fails_before=$fail
  FJ=arriving-numbers
  sched=$work/schedule.d
  mkdir -p "$sched" && chmod 755 "$sched"
  t0=$(date +%s%3N)
  elapsed() { echo $(( ($(date +%s%3N) - t0) / 1000 )); }
  # change_at_next_second LINES...: the schedule kept up to a whole second >= 2 s from now, then
  # LINES (with `@` standing for that time in ms, `@+N` for N ms after it), published atomically
  # (a rename) and world-readable (the pods run as uid 10001); prints that time in s after t0.
  change_at_next_second() {
    local at line
    at=$(( t0 + ( ($(date +%s%3N) - t0 + 2999) / 1000 ) * 1000 ))
    {
      awk -v at="$at" '$1 < at' "$work/schedule" 2>/dev/null
      for line in "$@"; do
        [[ $line =~ ^@\+([0-9]+)\ (.*)$ ]] && line="$((at + BASH_REMATCH[1])) ${BASH_REMATCH[2]}"
        echo "${line/#@/$at}"
      done
    } >"$work/schedule.next"
    mv "$work/schedule.next" "$work/schedule"
    install -m 644 "$work/schedule" "$sched/.schedule.new" && mv "$sched/.schedule.new" "$sched/schedule"
    echo $(( (at - t0) / 1000 ))
  }
  echo "$t0 30" >"$work/schedule"
  install -m 644 "$work/schedule" "$sched/schedule"
  jq -n --arg image "rheo:$TAG" --arg sched "$sched" '{FlinkJob: {spec: {
      image: $image,
      flinkConfiguration: {"execution.checkpointing.interval": "2s", "job.autoscaler.metrics.window": "20s",
                           "job.autoscaler.stabilization.interval": "10s", "job.autoscaler.scale-down.interval": "30s"},
      jobManager: {resources: {requests: {cpu: "50m", memory: "256Mi"}, limits: {memory: "1Gi"}}},
      taskManager: {autoscaler: {maxReplicas: 3, metricsIntervalSeconds: 5},
                    resources: {requests: {cpu: "100m", memory: "256Mi"}, limits: {memory: "1Gi"}}},
      podTemplate: {spec: {volumes: [{name: "schedule", hostPath: {path: $sched, type: "Directory"}}]}}}}}' \
    >"$work/$FJ.patch.json"
  "$PY" "$here/e2e-derive.py" "$repo/examples/autoscaled-arriving-numbers.yaml" "$work/$FJ.patch.json" >"$work/$FJ.yaml"
  kubectl -n $NS apply -f "$work/$FJ.yaml" >/dev/null
  if wait_for "$FJ RUNNING" 300 state_is $FJ RUNNING; then
    ok "$FJ: RUNNING at parallelism $(fj_get $FJ '{.status.jobStatus.parallelism}') on 1 TaskManager, $(elapsed) s after the apply"
  else
    bad "$FJ: not RUNNING" "$(describe $FJ)"; return
  fi
  # The scale log: a line `SECONDS PARALLELISM REPLICAS DECISION` whenever the running job's
  # parallelism or the replicas the operator asks for change, sampled every second; the phases
  # of the load change on what it shows. Each phase is bounded: past its deadline the load moves
  # on (and the checks below fail).
  : >"$work/scale.log"
  last= phase=low deadline=$(( $(elapsed) + 240 ))
  while (( $(elapsed) < 900 )); do
    if state_is $FJ RUNNING; then
      p=$(fj_get $FJ '{.status.jobStatus.parallelism}'); r=$(fj_get $FJ '{.spec.taskManager.replicas}')
      if [[ -n $p && "$p $r" != "$last" ]]; then
        last="$p $r" changed=$(elapsed)
        echo "$changed $p $r $(fj_get $FJ '{.status.autoscaler.decision}')" >>"$work/scale.log"
      fi
      case $phase in
        low)  # a full window judged at 30/s: no change; then 900/s +-10 % (up to 10 minutes of it)
          if [[ $(fj_get $FJ '{.status.autoscaler.decision}') == NoChange \
                && $(fj_get $FJ '{.status.autoscaler.reason}') == "every vertex keeps its parallelism" ]] \
             || (( $(elapsed) >= deadline )); then
            low_reason=$(fj_get $FJ '{.status.autoscaler.reason}')
            wobble=()
            for ((k = 0; k < 120; k++)); do wobble+=("@+$((k * 5000)) $((k % 2 ? 810 : 990))"); done
            up_at=$(change_at_next_second "${wobble[@]}")
            phase=high deadline=$(( $(elapsed) + 300 ))
          fi ;;
        high)  # scaled up, judged again at the new parallelism (a further scale-up, if any, done),
               # or the deadline: back to 30/s. Held longer, the backlog built before the scale-up
               # grows, and draining it delays the scale-down.
          if [[ -z $scaled ]] && (( p >= 2 && p == r )); then
            scaled=$(elapsed); kubectl -n $NS get fj/$FJ -o wide >"$work/wide.txt" 2>&1
          fi
          if [[ -n $scaled && $p == "$r" ]] && (( $(elapsed) - scaled >= AS_HOLD )) || (( $(elapsed) >= deadline )); then
            down_at=$(change_at_next_second "@ 30")
            phase=down deadline=$(( $(elapsed) + 300 ))
          fi ;;
        down)  # back on one TaskManager (or the deadline): the arrivals stop
          if [[ "$p $r" == "1 1" ]] || (( $(elapsed) >= deadline )); then
            end_at=$(change_at_next_second "@ 0")
            break
          fi ;;
      esac
    fi
    sleep 1
  done
  [[ -n $end_at ]] || end_at=$(change_at_next_second "@ 0")
  log "$FJ: load 30/s, 900/s from ${up_at:-?} s, 30/s from ${down_at:-?} s, none from ${end_at:-?} s; scale log: $(tr '\n' ';' <"$work/scale.log")"
  if [[ $low_reason == "every vertex keeps its parallelism" ]]; then
    ok "$FJ: a full window judged at 30/s: no change ($low_reason); the load stepped up to 900/s at $up_at s"
  else
    bad "$FJ: no full window judged at 30/s within 240 s ('$low_reason'); the load stepped up anyway at $up_at s" "$(cat "$work/scale.log"; describe $FJ)"
  fi
  up=$(awk -v a="${up_at:-1e9}" '$1 >= a && $2 >= 2 && $2 == $3 { print $1 - a, $2; exit }' "$work/scale.log")
  top=$(awk -v d="${down_at:-1e9}" '$1 < d && $2 > m { m = $2 } END { print m + 0 }' "$work/scale.log")
  if [[ -n $up && -n $scaled ]]; then
    ok "$FJ: ${up% *} s after the step up it ran at parallelism ${up#* } on as many TaskManagers, at most $top before the step down at $down_at s ($((down_at - scaled)) s after it first ran scaled up):"
    sed 's/^/     | /' "$work/wide.txt"
  else
    bad "$FJ: not scaled up under the load" "$(cat "$work/scale.log"; describe $FJ)"
  fi
  # No TaskManager removed while the load was high: parallelism and replicas only grew.
  if awk -v a="${up_at:-0}" -v d="${down_at:-1e9}" '$1 >= a && $1 < d { if ($2 < m || $3 < mr) exit 1; m = $2; mr = $3 }' "$work/scale.log"; then
    ok "$FJ: held through the +-10 % wobble: no scale-down while the load was high"
  else
    bad "$FJ: scaled down while the load was high" "$(cat "$work/scale.log")"
  fi
  down=$(awk -v d="${down_at:-1e9}" '$1 >= d && $2 == 1 && $3 == 1 { print $1 - d; exit }' "$work/scale.log")
  if [[ -n $down ]]; then
    ok "$FJ: the load stepped down to 30/s at $down_at s; parallelism 1 on 1 TaskManager $down s later (backlog, window 20 s, scale-down delay 30 s); arrivals stopped at $end_at s"
  else
    bad "$FJ: not scaled down to 1 TaskManager within 300 s of the step down" "$(cat "$work/scale.log"; describe $FJ)"
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
  # Exactly once: after the arrivals stop, the committed output reaches every arrived number (the
  # final schedule integrated: each line's rate times its duration).
  total=$(awk 'NR > 1 { n += r * ($1 - t) / 1000 } { t = $1; r = $2 } END { printf "%d", n }' "$work/schedule")
  committed() {
    local f
    : >"$work/$FJ.out"
    for f in $(filer_ls "/buckets/rheo/output/$FJ/" | grep -E '/part-[^/#]*\.csv$'); do
      filer_get "$f" >>"$work/$FJ.out" || return 1
    done
    [[ $(wc -l <"$work/$FJ.out") -ge $total ]]
  }
  if wait_for "$FJ: $total numbers committed" 300 committed; then
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
  # Whatever failed, the logs as they are at the end of the scenario, before the deletion.
  (( fail > fails_before )) && save_logs $FJ | head -1 | sed 's/^/     /'
  start=$SECONDS
  if out=$(kubectl -n $NS delete fj/$FJ --timeout=180s 2>&1) && wait_for "$FJ's children garbage-collected" 120 children_gone $FJ; then
    ok "$FJ: deleted in $((SECONDS - start)) s"
  else
    bad "$FJ: kubectl delete fj" "$out"
  fi
}
