//! Golden tests of the pure build step: for each interesting spec, the five child objects are
//! compared with checked-in YAML under `tests/golden/`. `make golden` (UPDATE_GOLDEN=1)
//! regenerates them; review the diff like code.

use rheo_operator::build::{self, Plan};
use rheo_operator::crd::FlinkJob;

const UID: &str = "6232260e-7262-bc21-1b07-d58420043bd8";

/// A case: a FlinkJob as a user writes it, and what the deployment record says.
struct Case {
    name: &'static str,
    manifest: &'static str,
    epoch: i64,
    restore_path: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "minimal",
        manifest: r#"
apiVersion: rheo.io/v1alpha1
kind: FlinkJob
metadata: {name: wc, namespace: streams, generation: 1}
spec:
  image: rheo:latest
  flinkConfiguration: {state.checkpoints.dir: s3://rheo/checkpoints}
  job: {entry: word-count}
"#,
        epoch: 0,
        restore_path: None,
    },
    Case {
        name: "s3-last-state-restored",
        manifest: r#"
apiVersion: rheo.io/v1alpha1
kind: FlinkJob
metadata: {name: orders, namespace: prod, generation: 7}
spec:
  image: registry.example/rheo-orders:1.4.2
  imagePullPolicy: IfNotPresent
  serviceAccount: orders
  flinkConfiguration:
    state.checkpoints.dir: s3://rheo/checkpoints
    state.savepoints.dir: s3://rheo/savepoints
    execution.checkpointing.interval: 30s
    s3.endpoint: http://seaweedfs.storage:8333
    s3.path-style-access: "true"
  jobManager:
    resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 1Gi}}
  taskManager:
    replicas: 3
    slots: 2
    resources: {requests: {cpu: "1", memory: 2Gi}, limits: {memory: 2Gi}}
  podTemplate:
    spec:
      containers:
        - name: rheo
          envFrom: [{secretRef: {name: s3-credentials}}]
      nodeSelector: {pool: streaming}
  job:
    entry: word-count
    args: [--input, kafka://orders]
    parallelism: 4
    upgradeMode: last-state
    allowNonRestoredState: true
"#,
        epoch: 2,
        restore_path: Some("s3://rheo/checkpoints/6232260e7262bc211b07d58420043bd9/chk-42"),
    },
    Case {
        name: "autoscaled-reactive",
        manifest: r#"
apiVersion: rheo.io/v1alpha1
kind: FlinkJob
metadata: {name: clicks, namespace: web, generation: 3}
spec:
  image: rheo:latest
  flinkConfiguration: {state.checkpoints.dir: s3://rheo/checkpoints}
  taskManager:
    replicas: 12
    slots: 4
    autoscaler: {minReplicas: 2, maxReplicas: 8}
    podTemplate:
      metadata: {annotations: {prometheus.io/scrape: "true"}}
  job: {entry: nexmark-q5}
"#,
        epoch: 0,
        restore_path: None,
    },
    Case {
        name: "suspended",
        manifest: r#"
apiVersion: rheo.io/v1alpha1
kind: FlinkJob
metadata: {name: wc, namespace: streams, generation: 4}
spec:
  image: rheo:latest
  flinkConfiguration: {state.checkpoints.dir: s3://rheo/checkpoints, state.savepoints.dir: s3://rheo/savepoints}
  taskManager: {replicas: 2}
  job: {entry: word-count, state: suspended, upgradeMode: savepoint}
"#,
        epoch: 1,
        restore_path: Some("s3://rheo/savepoints/savepoint-623226-0123456789ab"),
    },
];

fn render(case: &Case) -> String {
    let mut fj: FlinkJob = serde_yaml::from_str(case.manifest).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    fj.metadata.uid = Some(UID.into());
    rheo_operator::validate::validate(&fj).unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
    let job_id = build::job_id(UID, case.epoch).unwrap();
    let plan = Plan::new(&fj, fj.spec.clone(), job_id, case.restore_path.map(str::to_string));
    let c = build::build(&fj, &plan).unwrap();
    let docs = [
        serde_yaml::to_string(&c.config_map),
        serde_yaml::to_string(&c.rpc_service),
        serde_yaml::to_string(&c.rest_service),
        serde_yaml::to_string(&c.job_manager),
        serde_yaml::to_string(&c.task_manager),
    ];
    let mut out = format!("# Golden output of the build step for case `{}` (make golden regenerates).\n", case.name);
    for d in docs {
        out.push_str("---\n");
        out.push_str(&d.unwrap());
    }
    out
}

#[test]
fn build_matches_golden_files() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for case in CASES {
        let path = format!("{dir}/{}.yaml", case.name);
        let got = render(case);
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            stale.push(case.name);
            eprintln!("--- {path} differs; got:\n{got}");
        }
    }
    assert!(stale.is_empty(), "golden files differ for {stale:?}; run `make golden` and review the diff");
}

#[test]
fn build_is_deterministic() {
    for case in CASES {
        assert_eq!(render(case), render(case), "{}", case.name);
    }
}
