"""Tests of charts/rheo-operator with the real Helm library (helm-python-sdk) and
kubernetes-validate: lint, render with several value sets, strict schema validation of every
manifest, exact RBAC, the operator's env contract, the CRD copy, and refusal of bad values."""
from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

import helm_python
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, RELEASE, RELEASE_NS, REPO, render
import helm as helmpy

# Recent Kubernetes version to validate against (newest schemas kubernetes-validate ships).
KUBE_VERSION = "1.37.0"

VALUE_SETS = {
    "default": {},
    "namespaced-two": {"watchNamespaces": ["team-a", "team-b"]},
    "leader-election-2-replicas": {"replicas": 2, "leaderElection": {"enabled": True}},
    "metrics-off": {"metrics": {"enabled": False}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "single-no-leader-election": {"replicas": 1, "leaderElection": {"enabled": False}},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "ops"},
                                 "rbac": {"aggregateToDefaultRoles": False}},
    "text-logs-extra-env": {"logFormat": "text", "logLevel": "rheo_operator=debug,kube=info",
                            "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
                            "image": {"tag": "dev", "pullPolicy": "Never"}},
}

# ---------------------------------------------------------------------------------------------
# The operator's API access, exactly: an explicit table, not derived from the chart. Each verb is
# there because operator code needs it (kube 5.0); adding or removing a verb in the chart, or
# here, makes test_rbac_* fail: change both together with the operator's code.
#   flinkjobs list, watch    operator/src/controller.rs: Controller::new(jobs, ..) (watcher: list + watch)
#   flinkjobs patch          operator/src/reconcile.rs reconcile(): kube::runtime::finalizer adds and
#                            removes rheo.io/finalizer with a JSON patch on the FlinkJob
#   flinkjobs/status patch   operator/src/reconcile.rs write_status(): patch_status (server-side apply)
#   flinkjobs/scale patch    operator/src/reconcile/autoscale.rs scale_task_managers(): patch_scale
#                            (merge patch of spec.replicas), Rheo's autoscaler (mode: Rheo)
#   deployments, services, configmaps
#     list, watch            operator/src/controller.rs: .owns(..) watches of the children
#     patch, create          operator/src/reconcile.rs apply_children(): server-side apply, which
#                            creates a missing object (so needs create as well as patch)
#   events create, patch     operator/src/main.rs Recorder (kube::runtime::events): create, then a
#                            merge patch of a repeated Event's series; published in the FlinkJob's
#                            namespace by reconcile.rs write_status()
#   leases get, create, update
#                            operator/src/leader.rs try_acquire_or_renew(): get_opt, create,
#                            replace (= update); never patch
# Not granted, because nothing uses them: get (the controller works from its watch cache),
# delete (children go by garbage collection through owner references), pods, and
# flinkjobs/finalizers (only needed for ownerReferences with blockOwnerDeletion, which
# operator/src/build/mod.rs build() does not set: controller_owner_ref leaves it unset).
WORKLOAD_RIGHTS = {
    ("rheo.io", "flinkjobs"): {"list", "watch", "patch"},
    ("rheo.io", "flinkjobs/status"): {"patch"},
    ("rheo.io", "flinkjobs/scale"): {"patch"},
    ("apps", "deployments"): {"list", "watch", "create", "patch"},
    ("", "services"): {"list", "watch", "create", "patch"},
    ("", "configmaps"): {"list", "watch", "create", "patch"},
    ("", "pods"): {"list"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
LEASE_RIGHTS = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}

OPERATOR_ENV = {"WATCH_NAMESPACES", "LEADER_ELECTION", "LEASE_NAME", "POD_NAME", "POD_NAMESPACE", "HTTP_ADDR",
                "LOG_FORMAT", "RUST_LOG"}


def rights(rules: list[dict]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, flattening rules; wildcards are refused outright."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rule in rules:
        assert "nonResourceURLs" not in rule, rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out[(group, res)] |= set(rule["verbs"])
    return dict(out)


def bound_rights(r, sa_name: str, sa_ns: str = RELEASE_NS) -> dict[tuple[str, str], dict]:
    """Scope ('cluster' or a namespace) -> rights granted to the ServiceAccount through bindings."""
    roles = {("cluster", d["metadata"]["name"]): d for d in r.kind("ClusterRole")}
    roles |= {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in r.kind("Role")}
    out: dict[str, dict] = {}
    for b in r.kind("ClusterRoleBinding") + r.kind("RoleBinding"):
        subj = b["subjects"]
        if {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_ns} not in subj:
            continue
        assert len(subj) == 1, f"binding {b['metadata']['name']} has extra subjects {subj}"
        scope = "cluster" if b["kind"] == "ClusterRoleBinding" else b["metadata"]["namespace"]
        ref = b["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        key = ("cluster" if ref["kind"] == "ClusterRole" else scope, ref["name"])
        assert key in roles, f"{b['kind']} {b['metadata']['name']} refers to missing {ref['kind']} {ref['name']}"
        granted = rights(roles[key]["rules"])
        for k, verbs in granted.items():
            out.setdefault(scope, {}).setdefault(k, set()).update(verbs)
    return out


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def value_set(request):
    return request.param, VALUE_SETS[request.param]


def test_lint_default_strict():
    messages = helmpy.lint(CHART, {}, strict=True, kube_version="v" + KUBE_VERSION)
    bad = [m for m in messages if int(m["severity"]) >= 2]
    assert not bad, bad


def test_lint_each_value_set(value_set):
    name, values = value_set
    messages = helmpy.lint(CHART, values, strict=True, kube_version="v" + KUBE_VERSION)
    bad = [m for m in messages if int(m["severity"]) >= 2]
    assert not bad, f"{name}: {bad}"


def test_every_manifest_is_valid_kubernetes(value_set):
    name, values = value_set
    r = render(values)
    assert r.docs, f"{name}: nothing rendered"
    for obj in r.objects():
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            # not a built-in kind: kubernetes-validate has no schema; checked by test_service_monitor
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']}: {e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{name}: {e.message}")
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"].get("namespace"), f"{name}: {obj['kind']} without namespace"
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == RELEASE


def test_render_is_deterministic():
    assert helmpy.render(CHART, VALUE_SETS["namespaced-two"]) == helmpy.render(CHART, VALUE_SETS["namespaced-two"])


# --- RBAC ------------------------------------------------------------------------------------
def test_rbac_cluster_mode_exact():
    r = render({})
    granted = bound_rights(r, RELEASE)
    assert set(granted) == {"cluster", RELEASE_NS}
    assert granted["cluster"] == WORKLOAD_RIGHTS
    assert granted[RELEASE_NS] == LEASE_RIGHTS
    assert not r.kind("RoleBinding") or all(b["metadata"]["namespace"] == RELEASE_NS for b in r.kind("RoleBinding"))


def test_rbac_namespaced_mode_exact():
    r = render(VALUE_SETS["namespaced-two"])
    granted = bound_rights(r, RELEASE)
    assert set(granted) == {"team-a", "team-b", RELEASE_NS}
    assert granted["team-a"] == WORKLOAD_RIGHTS
    assert granted["team-b"] == WORKLOAD_RIGHTS
    assert granted[RELEASE_NS] == LEASE_RIGHTS
    # nothing cluster-wide for the operator in namespaced mode
    assert r.kind("ClusterRoleBinding") == []
    assert {d["metadata"]["name"] for d in r.kind("ClusterRole")} == {"rheo-flinkjob-edit", "rheo-flinkjob-view"}


def test_rbac_namespaced_mode_includes_own_namespace_only_if_listed():
    r = render({"watchNamespaces": [RELEASE_NS, "team-a"]})
    granted = bound_rights(r, RELEASE)
    assert granted["team-a"] == WORKLOAD_RIGHTS
    assert granted[RELEASE_NS] == WORKLOAD_RIGHTS | LEASE_RIGHTS


def test_rbac_lease_limited_to_own_lease_name():
    r = render({"leaderElection": {"leaseName": "my-lease"}})
    role = r.one("Role", f"{RELEASE}-leader-election", RELEASE_NS)
    for rule in role["rules"]:
        if rule["verbs"] == ["create"]:
            assert "resourceNames" not in rule  # create cannot be limited by name
        else:
            assert rule["resourceNames"] == ["my-lease"]
    env = {e["name"]: e.get("value") for e in r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LEASE_NAME"] == "my-lease"


def test_rbac_no_lease_without_leader_election():
    r = render(VALUE_SETS["single-no-leader-election"])
    granted = bound_rights(r, RELEASE)
    assert granted == {"cluster": WORKLOAD_RIGHTS}


def test_rbac_off():
    r = render({"rbac": {"create": False, "aggregateToDefaultRoles": False}})
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert r.kind(kind) == []


def test_rbac_existing_service_account():
    r = render(VALUE_SETS["existing-service-account"])
    assert r.kind("ServiceAccount") == []
    assert r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    assert bound_rights(r, "ops")["cluster"] == WORKLOAD_RIGHTS


def test_aggregated_user_roles():
    r = render({})
    edit = r.one("ClusterRole", "rheo-flinkjob-edit")
    view = r.one("ClusterRole", "rheo-flinkjob-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert rights(edit["rules"]) == {
        ("rheo.io", "flinkjobs"): {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
        ("rheo.io", "flinkjobs/scale"): {"get", "update", "patch"},
        ("rheo.io", "flinkjobs/status"): {"get"},
    }
    assert rights(view["rules"]) == {
        ("rheo.io", "flinkjobs"): {"get", "list", "watch"},
        ("rheo.io", "flinkjobs/status"): {"get", "list", "watch"},
        ("rheo.io", "flinkjobs/scale"): {"get", "list", "watch"},
    }


# --- Deployment ------------------------------------------------------------------------------
def container(r):
    return r.one("Deployment", RELEASE, RELEASE_NS)["spec"]["template"]["spec"]["containers"][0]


def test_deployment_defaults():
    r = render({})
    dep = r.one("Deployment", RELEASE, RELEASE_NS)
    spec = dep["spec"]["template"]["spec"]
    c = container(r)
    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert c["image"] == f"rheo-operator:{chart_meta['appVersion']}"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == ["run"] and "command" not in c
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert spec["serviceAccountName"] == RELEASE
    # security
    pod_sc, sc = spec["securityContext"], c["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == 10001
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsUser"] == 10001 and sc["runAsNonRoot"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # probes on the named http port, which is HTTP_ADDR's port
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # writable /tmp on a read-only root
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_operator_env_contract(value_set):
    name, values = value_set
    r = render(values)
    c = container(r)
    env = {e["name"]: e for e in c["env"]}
    assert OPERATOR_ENV <= set(env), f"{name}: missing {OPERATOR_ENV - set(env)}"
    extra = {e["name"] for e in values.get("extraEnv", [])}
    assert set(env) == OPERATOR_ENV | extra, f"{name}: unexpected env {set(env) - OPERATOR_ENV - extra}"
    assert env["WATCH_NAMESPACES"]["value"] == ",".join(values.get("watchNamespaces", []))
    le = values.get("leaderElection", {}).get("enabled", True)
    assert env["LEADER_ELECTION"]["value"] == ("true" if le else "false")
    assert env["LEASE_NAME"]["value"] == "rheo-operator-leader"
    # the Lease identity and Event reporter instance (operator/src/main.rs reads POD_NAME)
    assert env["POD_NAME"] == {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    port = c["ports"][0]["containerPort"]
    assert env["HTTP_ADDR"]["value"] == f"0.0.0.0:{port}"
    assert env["LOG_FORMAT"]["value"] in ("text", "json")
    assert env["LOG_FORMAT"]["value"] == values.get("logFormat", "json")
    assert env["RUST_LOG"]["value"] == values.get("logLevel", "info")


def test_namespaced_mode_env():
    env = {e["name"]: e.get("value") for e in container(render(VALUE_SETS["namespaced-two"]))["env"]}
    assert env["WATCH_NAMESPACES"] == "team-a,team-b"


def test_leader_election_two_replicas():
    r = render(VALUE_SETS["leader-election-2-replicas"])
    dep = r.one("Deployment")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    r.one("Role", f"{RELEASE}-leader-election", RELEASE_NS)
    r.one("RoleBinding", f"{RELEASE}-leader-election", RELEASE_NS)


def test_without_leader_election_pods_never_overlap():
    dep = render(VALUE_SETS["single-no-leader-election"]).one("Deployment")
    assert dep["spec"]["strategy"] == {"type": "Recreate"}


def test_custom_http_port_moves_probes_and_addr():
    r = render({"http": {"port": 9090}, "metrics": {"service": {"port": 9090}}})
    c = container(r)
    assert c["ports"][0]["containerPort"] == 9090
    assert {e["name"]: e.get("value") for e in c["env"]}["HTTP_ADDR"] == "0.0.0.0:9090"
    svc = r.one("Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_image_override():
    c = container(render(VALUE_SETS["text-logs-extra-env"]))
    assert c["image"] == "rheo-operator:dev" and c["imagePullPolicy"] == "Never"


# --- metrics ---------------------------------------------------------------------------------
def test_metrics_service_default():
    r = render({})
    svc = r.one("Service", f"{RELEASE}-metrics", RELEASE_NS)
    dep = r.one("Deployment")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert r.kind("ServiceMonitor") == []


def test_metrics_off():
    r = render(VALUE_SETS["metrics-off"])
    assert r.kind("Service") == [] and r.kind("ServiceMonitor") == []
    # the probes still use the http port
    assert container(r)["ports"][0]["name"] == "http"


def test_service_monitor():
    r = render(VALUE_SETS["service-monitor"])
    sm = r.one("ServiceMonitor", RELEASE, RELEASE_NS)
    svc = r.one("Service", f"{RELEASE}-metrics", RELEASE_NS)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NS]}
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


# --- NOTES -----------------------------------------------------------------------------------
def test_notes_tell_how_to_apply_and_scale():
    notes = render({}).notes
    assert "kubectl -n default apply -f examples/word-count-s3.yaml" in notes
    assert "kind: FlinkJob" in notes and "apiVersion: rheo.io/v1alpha1" in notes
    assert "kubectl -n default scale fj/datagen-word-count --replicas=3" in notes
    assert "all namespaces" in notes
    notes_ns = render(VALUE_SETS["namespaced-two"]).notes
    assert "team-a, team-b" in notes_ns and "kubectl -n team-a scale fj/datagen-word-count" in notes_ns


def test_notes_name_existing_examples():
    for name in re.findall(r"examples/([\w.-]+\.yaml)", render({}).notes):
        assert (REPO / "examples" / name).exists(), f"NOTES.txt names examples/{name}, which does not exist"


def test_notes_example_job_is_built_in():
    """The inline example's job.entry must be a job the worker binary carries (rheo jobs)."""
    notes = render({}).notes
    entry = re.search(r"entry: ([\w-]+)", notes).group(1)
    sources = "".join(p.read_text() for p in (REPO / "crates" / "rheo-cli" / "src" / "jobs").rglob("*.rs"))
    assert f'"{entry}"' in sources, f"job {entry} not found in crates/rheo-cli/src/jobs"


def test_notes_example_is_a_valid_flinkjob_if_crd_exists():
    """The FlinkJob in NOTES.txt must be accepted by the CRD's schema (when the CRD exists)."""
    src = REPO / "crds" / "flinkjob.yaml"
    if not src.exists():
        pytest.skip("crds/flinkjob.yaml not generated yet")
    import jsonschema
    notes = render({}).notes
    block = notes.split("cat <<'YAML'", 1)[1].split("\n", 1)[1].split("   YAML", 1)[0]
    fj = yaml.safe_load("\n".join(line[3:] for line in block.splitlines()))
    crd = next(d for d in yaml.safe_load_all(src.read_text()) if d and d.get("kind") == "CustomResourceDefinition")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == fj["apiVersion"].split("/")[1])
    spec_schema = closed(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    jsonschema.validate(fj["spec"], spec_schema)


def closed(schema):
    """The schema with objects closed as the API server's pruning would (unknown fields rejected
    instead of dropped), so a misspelt field in the example fails the test."""
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: closed(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = closed(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [closed(sub) for sub in value]
        elif key != "default":
            out[key] = value
    if "properties" in out and "additionalProperties" not in out \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


# --- CRD copy --------------------------------------------------------------------------------
def test_crd_copy_in_sync():
    src = REPO / "crds" / "flinkjob.yaml"
    copy = CHART / "crds" / "flinkjob.yaml"
    if not src.exists():
        assert not copy.exists(), ("charts/rheo-operator/crds/flinkjob.yaml exists but crds/flinkjob.yaml "
                                   "does not: the chart ships a CRD nobody generates")
        pytest.skip("crds/flinkjob.yaml not generated yet (the operator's `make crds`); nothing to copy")
    assert copy.exists(), "the chart has no CRD copy: run `make chart-crds`"
    assert copy.read_bytes() == src.read_bytes(), \
        "charts/rheo-operator/crds/flinkjob.yaml differs from crds/flinkjob.yaml: run `make chart-crds`"


def test_crd_is_valid_and_matches_rbac():
    copy = CHART / "crds" / "flinkjob.yaml"
    if not copy.exists():
        pytest.skip("no CRD in the chart yet (crds/flinkjob.yaml not generated)")
    crds = helm_python.Chart.load(str(CHART)).crds
    assert [c["name"] for c in crds] == ["crds/flinkjob.yaml"]
    docs = [d for d in yaml.safe_load_all(copy.read_text()) if d]
    assert len(docs) == 1
    crd = docs[0]
    kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)
    spec = crd["spec"]
    # the RBAC above names these: a rename of the CRD must be mirrored in the chart
    assert spec["group"] == "rheo.io"
    assert spec["names"]["plural"] == "flinkjobs" and spec["names"]["kind"] == "FlinkJob"
    assert spec["scope"] == "Namespaced"
    assert crd["metadata"]["name"] == "flinkjobs.rheo.io"
    served = [v for v in spec["versions"] if v["name"] == "v1alpha1"]
    assert served and served[0]["served"]
    sub = served[0].get("subresources", {})
    assert "status" in sub, "RBAC grants flinkjobs/status: the CRD must have the status subresource"
    assert "scale" in sub, "the user roles grant flinkjobs/scale: the CRD must have the scale subresource"


# --- chart metadata --------------------------------------------------------------------------
def test_app_version_matches_cargo_workspace():
    cargo = (REPO / "Cargo.toml").read_text()
    m = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S)
    assert m, "no [workspace.package] version in Cargo.toml"
    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart_meta["appVersion"] == m.group(1), "Chart.yaml appVersion must equal the workspace version"


# --- bad values ------------------------------------------------------------------------------
BAD_VALUES = [
    ({"replicas": 2, "leaderElection": {"enabled": False}}, "replicas=2 requires leaderElection.enabled=true"),
    ({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
     "metrics.serviceMonitor.enabled=true requires metrics.enabled=true"),
    ({"watchNamespaces": ["team-a", "team-a"]}, "watchNamespaces has duplicates"),
    ({"serviceAccount": {"create": False}}, "needs serviceAccount.name"),
    ({"replicas": "two"}, "/replicas"),
    ({"replicas": -1}, "/replicas"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ({"watchNamespaces": "team-a,team-b"}, "/watchNamespaces"),
    ({"logFormat": "xml"}, "/logFormat"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"replica": 2}, "replica"),  # typo of a top-level key
    ({"leaderElection": {"enabled": "yes"}}, "/leaderElection/enabled"),
    ({"http": {"port": 70000}}, "/http/port"),
]


@pytest.mark.parametrize("values,message", BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_bad_values_fail_clearly(values, message):
    with pytest.raises(helm_python.HelmError) as err:
        helmpy.render(CHART, values)
    assert message in str(err.value), str(err.value)


# --- the CLI wrapper -------------------------------------------------------------------------
def test_helm_py_cli_template_and_lint():
    py, script = sys.executable, str(REPO / "scripts" / "helm.py")
    out = subprocess.run([py, script, "template", str(CHART), "--set", "watchNamespaces={a,b}", "-n", "ops"],
                         capture_output=True, text=True, check=True).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    assert kinds.count("Role") == 3 and "# Source: rheo-operator/templates/deployment.yaml" in out
    bad = subprocess.run([py, script, "template", str(CHART), "--set", "replicas=3,leaderElection.enabled=false"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "requires leaderElection.enabled=true" in bad.stderr
    lint = subprocess.run([py, script, "lint", str(CHART), "--strict"], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
