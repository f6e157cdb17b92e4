#!/usr/bin/env bash
# The FlinkJob CRD against the real API server (make e2e):
#   - crds/flinkjob.yaml is applied server-side and becomes Established,
#   - every examples/*.yaml is accepted (`kubectl apply --dry-run=server`: images need not be loaded),
#   - every operator/tests/invalid/*.yaml is rejected, and the API server's message names the field
#     that fixture breaks (taken from its `# expect:` line, the convention of scripts/crd_validate.py;
#     for CEL rules the rule's message must appear too); a table fixture -> message is printed,
#   - the scale subresource: a created FlinkJob is scaled with `kubectl scale fj/NAME --replicas=3`
#     and `.spec.taskManager.replicas` reads back 3; `kubectl get fj` prints the printer columns.
# Starts the cluster if it is not running and stops it at the end if it started it
# (RHEO_K8S_KEEP=1 keeps it). Every wait is on an event, with a timeout.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$here/lib.sh"

NS=rheo-e2e
CRD=$repo/crds/flinkjob.yaml
CRD_NAME=flinkjobs.rheo.io
begin_checks e2e
eval "$("$here/cluster.sh" env)"

# --- the CRD -------------------------------------------------------------------------------------
if out=$(kubectl apply --server-side --force-conflicts --field-manager=rheo-e2e -f "$CRD" 2>&1); then
  ok "CRD applied server-side: $out"
else
  bad "kubectl apply --server-side $CRD" "$out"; exit 1
fi
if out=$(kubectl wait --for=condition=Established crd/$CRD_NAME --timeout=60s 2>&1); then
  ok "CRD Established"
else
  bad "CRD not Established within 60 s" "$out$(kubectl get crd $CRD_NAME -o jsonpath='{.status.conditions}' 2>&1)"; exit 1
fi
# Established means the API server serves the kind; discovery in kubectl may lag a moment behind.
wait_for "flinkjobs in discovery" 60 kubectl get fj -A || { bad "FlinkJob not in discovery"; exit 1; }

# A fresh namespace (the previous run's, if any, is gone first).
if kubectl get namespace $NS >/dev/null 2>&1; then
  kubectl delete namespace $NS --timeout=120s >/dev/null
fi
kubectl create namespace $NS >/dev/null

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
