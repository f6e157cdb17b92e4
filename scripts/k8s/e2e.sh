#!/usr/bin/env bash
# Rheo on a real single-node Kubernetes cluster (make e2e, part of make test):
#   1. (e2e-stack.sh) images without Docker: rheo and rheo-operator (docker/build.sh, umoci;
#      the debug binaries `cargo test` already built, RHEO_E2E_PROFILE=release for release ones)
#      and SeaweedFS (the weed binary of scripts/services/s3.sh), imported into containerd;
#      SeaweedFS as a Deployment behind seaweedfs.storage.svc:8333 (the endpoint of
#      examples/word-count-s3.yaml); `helm install` of charts/rheo-operator: the operator runs as
#      a pod from its image and installs the CRD,
#   2. the CRD: Established, every examples/*.yaml accepted (`kubectl apply --dry-run=server`),
#      every operator/tests/invalid/*.yaml rejected, the API server's message naming the field
#      that fixture breaks (its `# expect:` line, the convention of scripts/crd_validate.py; for
#      CEL rules the rule's message too); the scale subresource and the printer columns,
#   3. (e2e-jobs.sh) examples/word-count-s3.yaml run for real, a TaskManager and the JobManager
#      pod deleted, output exact; examples/hpa-word-count.yaml rescaled with `kubectl scale`,
#      output exact; `kubectl delete fj`; `helm upgrade` and `helm uninstall`,
#   4. (e2e-lifecycle.sh) the lifecycle of issues 11 and 12, its scenarios at once: spec changes
#      under each upgrade mode, both nonces, suspend/resume, the final savepoint of a running job
#      at `kubectl delete fj`, the operator's leader deleted mid-upgrade, a bad image tag then
#      fixed, a FAILED job restarted by policy (its JobManager NotReady meanwhile), an unhealthy
#      upgrade rolled back, periodic savepoints with history cleanup, `kubectl scale` of a job
#      that is not reactive; output exact wherever the mode promises it; and beside them
#   5. (e2e-autoscale.sh) examples/autoscaled-arriving-numbers.yaml: Rheo's autoscaler adds
#      TaskManagers under a load step and removes them after it, output exact.
# Starts the cluster if it is not running and stops it at the end if it started it
# (RHEO_K8S_KEEP=1 keeps it and what runs on it). Every wait is on an event, with a timeout.
# RHEO_E2E_SUITES (default "crd jobs lifecycle autoscale") picks among them, e.g.
# RHEO_E2E_SUITES=autoscale. The lifecycle and autoscale scenarios run at once (e2e-lifecycle.sh).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$here/lib.sh"
source "$here/oci.sh"

NS=rheo-e2e
SUITES=" ${RHEO_E2E_SUITES:-crd jobs lifecycle autoscale} "
CRD=$repo/crds/flinkjob.yaml
CRD_NAME=flinkjobs.rheo.io
begin_checks e2e
eval "$("$here/cluster.sh" env)"

source "$here/e2e-stack.sh"

# --- the CRD (installed by the chart) ------------------------------------------------------------
if out=$(kubectl wait --for=condition=Established crd/$CRD_NAME --timeout=60s 2>&1); then
  ok "CRD Established (installed by helm from charts/rheo-operator/crds)"
else
  bad "CRD not Established within 60 s" "$out$(kubectl get crd $CRD_NAME -o jsonpath='{.status.conditions}' 2>&1)"; exit 1
fi
# The schemas, printer columns and subresources (the API server adds defaults elsewhere in spec).
crd_versions() { jq -S '[.spec.versions[] | {name, schema, subresources, additionalPrinterColumns}]'; }
crd_diff=$(diff <(kubectl get crd $CRD_NAME -o json | crd_versions) \
                <(kubectl create --dry-run=client -o json -f "$CRD" | crd_versions) 2>&1)
[[ -z $crd_diff ]] && ok "the installed CRD is crds/flinkjob.yaml" || bad "the installed CRD differs from crds/flinkjob.yaml" "$crd_diff"
# Established means the API server serves the kind; discovery in kubectl may lag a moment behind.
wait_for "flinkjobs in discovery" 60 kubectl get fj -A || { bad "FlinkJob not in discovery"; exit 1; }

kubectl create namespace $NS >/dev/null

if [[ $SUITES == *" crd "* ]]; then  # (not indented: the block is most of this file)
# --- the examples: accepted ----------------------------------------------------------------------
for f in "$repo"/examples/*.yaml; do
  if out=$(kubectl -n $NS apply --dry-run=server -f "$f" 2>&1); then
    ok "accepted: examples/$(basename "$f"): $(tr '\n' ';' <<<"$out")"
  else
    bad "rejected: examples/$(basename "$f")" "$out"
  fi
done

# --- the invalid fixtures: rejected, naming the field --------------------------------------------
# expected_needles EXPECT: what the API server's message must contain, one a line, from the
# fixture's `# expect:` fragment (written in crd_validate.py's jsonschema wording):
#   `.PATH: 'X' is a required property`              -> `PATH.X: Required value` (`X: ...` without PATH)
#   `.PATH: Additional properties ... ('X' was ...)` -> PATH.X
#   `.PATH: <jsonschema wording>`                    -> PATH
#   `.PATH: <a CEL rule's message>`                  -> PATH and the message
#   `<a CEL rule's message>` (rule on the root)      -> the message (it names the field itself)
expected_needles() {
  local expect=$1 path= rest
  if [[ $expect =~ ^\.([^:\ ]*):\ ?(.*)$ ]]; then path=${BASH_REMATCH[1]} rest=${BASH_REMATCH[2]}; else rest=$expect; fi
  if [[ $rest =~ ^\'([^\']+)\'\ is\ a\ required\ property ]]; then
    echo "${path:+$path.}${BASH_REMATCH[1]}: Required value"
  elif [[ $rest =~ ^Additional\ properties\ are\ not\ allowed\ \(\'([^\']+)\'\ was\ unexpected\) ]]; then
    echo "${path:+$path.}${BASH_REMATCH[1]}"
  elif [[ -z $rest || $rest =~ (is\ not\ one\ of|is\ less\ than\ the\ minimum|is\ not\ of\ type|is\ too\ short) ]]; then
    echo "$path"
  else
    [[ -n $path ]] && echo "$path"
    echo "$rest"
  fi
}
table=()
for f in "$repo"/operator/tests/invalid/*.yaml; do
  name=$(basename "$f" .yaml)
  expect=$(sed -n 's/^# expect: *//p' "$f")
  if [[ -z $expect ]]; then bad "$name: no '# expect:' line"; continue; fi
  out=$(kubectl -n $NS apply --dry-run=server -f "$f" 2>&1) && accepted=1 || accepted=
  # The message without kubectl's `Error from server (...): error when creating "FILE": ` prefix.
  msg=$(tr '\n' ' ' <<<"$out" | sed -E 's/^Error from server \([A-Za-z]+\): error when [a-z]+ "[^"]*": //; s/ +$//')
  table+=("$name|$msg")
  if [[ -n $accepted ]]; then bad "$name: accepted by the API server, expected a rejection naming '$expect'" "$out"; continue; fi
  missing=()
  while IFS= read -r needle; do
    [[ -n $needle && $msg != *"$needle"* ]] && missing+=("$needle")
  done < <(expected_needles "$expect")
  # Each fixture breaks one rule: a second, unrelated error would hide whether its own is checked.
  durable="state.checkpoints.dir'] must name durable storage"
  if [[ $msg == *"$durable"* && $expect != *"$durable"* && $expect != *"state.checkpoints.dir"* ]]; then
    bad "$name: also trips the durable-storage rule (add state.checkpoints.dir to the fixture)" "$msg"; continue
  fi
  if [[ ${#missing[@]} -eq 0 ]]; then
    ok "$name: rejected, names $(expected_needles "$expect" | head -1)"
  else
    bad "$name: rejected, but the message lacks: ${missing[*]}" "$msg"
  fi
done
echo
echo "| fixture | API server's message |"
echo "| --- | --- |"
for row in "${table[@]}"; do echo "| ${row%%|*} | ${row#*|} |"; done
echo

# --- the scale subresource and the printer columns -----------------------------------------------
FJ=socket-word-count
if out=$(kubectl -n $NS apply -f "$repo/examples/$FJ.yaml" 2>&1); then ok "created: $out"; else bad "kubectl apply examples/$FJ.yaml" "$out"; fi
wait_for "FlinkJob $NS/$FJ exists" 30 kubectl -n $NS get fj/$FJ
if out=$(kubectl -n $NS scale fj/$FJ --replicas=3 2>&1); then ok "kubectl scale: $out"; else bad "kubectl scale fj/$FJ --replicas=3" "$out"; fi
replicas=$(kubectl -n $NS get fj/$FJ -o jsonpath='{.spec.taskManager.replicas}' 2>&1)
[[ $replicas == 3 ]] && ok ".spec.taskManager.replicas = 3 after kubectl scale" || bad ".spec.taskManager.replicas is '$replicas', expected 3"
scale=$(kubectl get --raw "/apis/rheo.io/v1alpha1/namespaces/$NS/flinkjobs/$FJ/scale" 2>&1)
[[ $scale == *'"spec":{"replicas":3}'* ]] && ok "scale subresource: $scale" || bad "scale subresource does not say spec.replicas 3" "$scale"
table_out=$(kubectl -n $NS get fj 2>&1)
header=$(head -1 <<<"$table_out" | tr -s ' ')
want="NAME JOB STATE LIFECYCLE PARALLELISM TASKMANAGERS LAST CHECKPOINT AGE"
if [[ $header == "$want" ]] && grep -q "^$FJ " <<<"$table_out"; then
  ok "kubectl get fj prints the columns:"; sed 's/^/     | /' <<<"$table_out"
else
  bad "kubectl get fj: expected the header '$want' and a row $FJ" "$table_out"
fi
if out=$(kubectl -n $NS delete fj/$FJ --wait=true --timeout=60s 2>&1) \
   && ! kubectl -n $NS get fj/$FJ >/dev/null 2>&1; then
  ok "deleted: $out"
else
  bad "kubectl delete fj/$FJ" "$out"
fi

fi  # crd

if [[ $SUITES == *" jobs "* ]]; then source "$here/e2e-jobs.sh"; fi
source "$here/e2e-autoscale.sh"
if [[ $SUITES == *" lifecycle "* || $SUITES == *" autoscale "* ]]; then source "$here/e2e-lifecycle.sh"; fi
