//! The pure build step: a `FlinkJob` and the operator's deployment record → the five child
//! objects (ConfigMap, JobManager Deployment, REST Service, headless RPC Service, TaskManager
//! Deployment). No I/O: golden tests pin its output (`make golden` regenerates them).

pub mod pod_template;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use rheo_config::options;
use rheo_types::JobId;

use crate::crd::{DesiredJobState, FlinkJob, FlinkJobSpec, ImagePullPolicy};

pub const REST_PORT: i32 = options::DEFAULT_REST_PORT as i32;
pub const RPC_PORT: i32 = options::DEFAULT_RPC_PORT as i32;
pub const DATA_PORT: i32 = options::DEFAULT_DATA_PORT as i32;
/// The worker image's user (the image runs as uid 10001 with a read-only root filesystem).
pub const WORKER_UID: i64 = 10001;
pub const CONFIG_DIR: &str = "/opt/rheo/conf";
pub const CONFIG_FILE: &str = "rheo.yaml";
pub const DATA_DIR: &str = "/opt/rheo/data";
/// Annotation on every child: the `FlinkJob` generation it was built from.
pub const GENERATION_ANNOTATION: &str = "rheo.io/generation";
/// Annotation on the pod templates: the job id, so a new job rolls every pod.
pub const JOB_ID_ANNOTATION: &str = "rheo.io/job-id";
pub const MANAGER: &str = "rheo-operator";

/// Why a `FlinkJob` cannot be built into objects.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BuildError {
    #[error("metadata.{0} is missing")]
    MissingMetadata(&'static str),
    #[error("metadata.uid {0:?} is not a UUID: cannot derive a job id")]
    BadUid(String),
    #[error("{field}: {message}")]
    PodTemplate { field: &'static str, message: String },
}

/// What to deploy: taken from the operator's deployment record in status, not from the live spec,
/// so an operator restart rebuilds exactly the objects it deployed.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The spec that was (or is being) deployed.
    pub spec: FlinkJobSpec,
    /// The job id the JobManager runs the job under.
    pub job_id: String,
    /// Savepoint or checkpoint to start the job from.
    pub restore_path: Option<String>,
    /// TaskManager pods: from the live spec (scaling is not an upgrade), 0 when suspended.
    pub task_manager_replicas: i32,
    /// No pods at all (see [`Plan::stopped`]).
    pub stopped: bool,
}

impl Plan {
    /// A plan for `deployed` (the recorded spec), scaled by the live spec of `fj`.
    pub fn new(fj: &FlinkJob, deployed: FlinkJobSpec, job_id: String, restore_path: Option<String>) -> Self {
        let task_manager_replicas =
            if deployed.job.state == DesiredJobState::Suspended { 0 } else { desired_task_managers(&fj.spec) };
        Plan { spec: deployed, job_id, restore_path, task_manager_replicas, stopped: false }
    }

    /// The same plan with no pods: the job is over (FINISHED or CANCELED), and a JobManager
    /// started again would run it again.
    pub fn stopped(mut self) -> Self {
        self.task_manager_replicas = 0;
        self.stopped = true;
        self
    }

    fn job_manager_replicas(&self) -> i32 {
        if self.stopped || self.spec.job.state == DesiredJobState::Suspended { 0 } else { 1 }
    }
}

/// TaskManager replicas the spec asks for, kept within the autoscaler's bounds.
pub fn desired_task_managers(spec: &FlinkJobSpec) -> i32 {
    let replicas = spec.task_manager.replicas.max(0);
    match &spec.task_manager.autoscaler {
        Some(a) if a.min_replicas <= a.max_replicas => replicas.clamp(a.min_replicas, a.max_replicas),
        _ => replicas,
    }
}

/// The five objects the operator owns for one `FlinkJob`.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub config_map: ConfigMap,
    pub job_manager: Deployment,
    pub rest_service: Service,
    pub rpc_service: Service,
    pub task_manager: Deployment,
}

/// Child object names, all derived from the `FlinkJob` name.
pub mod names {
    pub fn config_map(job: &str) -> String {
        format!("{job}-config")
    }
    pub fn job_manager(job: &str) -> String {
        format!("{job}-jobmanager")
    }
    /// The headless Service giving the JobManager a stable DNS name for RPC.
    pub fn rpc_service(job: &str) -> String {
        format!("{job}-jobmanager")
    }
    pub fn rest_service(job: &str) -> String {
        format!("{job}-rest")
    }
    pub fn task_manager(job: &str) -> String {
        format!("{job}-taskmanager")
    }
}

/// The JobManager's REST endpoint inside the cluster.
pub fn rest_url(fj: &FlinkJob) -> String {
    format!("http://{}.{}.svc:{REST_PORT}", names::rest_service(fj.name()), fj.namespace())
}

/// The job id for a deployment epoch: the resource uid without dashes for epoch 0; each later
/// (re)deployment adds its epoch to the last 32 bits, so ids stay recognisable and never repeat.
pub fn job_id(uid: &str, epoch: i64) -> Result<String, BuildError> {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    let id: JobId = hex.parse().map_err(|_| BuildError::BadUid(uid.to_string()))?;
    let mut bytes = *id.as_bytes();
    let tail = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]).wrapping_add(epoch as u32);
    bytes[12..].copy_from_slice(&tail.to_be_bytes());
    Ok(JobId::from_bytes(bytes).to_string())
}

/// Recommended labels of a component; the first three also select its pods.
pub fn labels(job: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(job, component);
    l.insert("app.kubernetes.io/part-of".into(), "rheo".into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l
}

pub fn selector_labels(job: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "rheo".to_string()),
        ("app.kubernetes.io/instance".to_string(), job.to_string()),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
    ])
}

/// The TaskManager pods' label selector as a string, for the scale subresource and HPAs.
pub fn task_manager_selector(job: &str) -> String {
    selector_labels(job, "taskmanager").iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Builds every child object of `fj` for `plan`.
pub fn build(fj: &FlinkJob, plan: &Plan) -> Result<Children, BuildError> {
    let name = fj.metadata.name.as_deref().ok_or(BuildError::MissingMetadata("name"))?;
    fj.metadata.uid.as_deref().ok_or(BuildError::MissingMetadata("uid"))?;
    let owner = fj.controller_owner_ref(&()).ok_or(BuildError::MissingMetadata("uid"))?;
    let generation = fj.metadata.generation.unwrap_or_default();
    let meta = |object_name: String, component: &str| ObjectMeta {
        name: Some(object_name),
        namespace: Some(fj.namespace().to_string()),
        labels: Some(labels(name, component)),
        annotations: Some(BTreeMap::from([(GENERATION_ANNOTATION.to_string(), generation.to_string())])),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };

    let config_map = ConfigMap {
        metadata: meta(names::config_map(name), "configuration"),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), config_yaml(fj, plan))])),
        ..Default::default()
    };

    let jm_pod = pod(fj, plan, Component::JobManager)?;
    let job_manager = deployment(
        meta(names::job_manager(name), "jobmanager"),
        plan.job_manager_replicas(),
        name,
        "jobmanager",
        jm_pod,
    );
    let tm_pod = pod(fj, plan, Component::TaskManager)?;
    let task_manager = deployment(
        meta(names::task_manager(name), "taskmanager"),
        plan.task_manager_replicas,
        name,
        "taskmanager",
        tm_pod,
    );

    let rest_service = Service {
        metadata: meta(names::rest_service(name), "jobmanager"),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            // A JobManager whose job FAILED is not Ready, and it is exactly then that the
            // operator (and a user) must read the job's state and exceptions through here.
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(name, "jobmanager")),
            ports: Some(vec![service_port("rest", REST_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let rpc_service = Service {
        metadata: meta(names::rpc_service(name), "jobmanager"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // TaskManagers resolve the JobManager while it is still starting.
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(name, "jobmanager")),
            ports: Some(vec![service_port("rpc", RPC_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    };

    Ok(Children { config_map, job_manager, rest_service, rpc_service, task_manager })
}

/// The Flink configuration file: the operator's defaults, then the user's keys.
pub fn config(fj: &FlinkJob, plan: &Plan) -> BTreeMap<String, String> {
    let spec = &plan.spec;
    let mut c = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        c.insert(k.to_string(), v);
    };
    set(options::JOBMANAGER_ADDRESS.key, format!("{}.{}.svc", names::rpc_service(fj.name()), fj.namespace()));
    set(options::JOBMANAGER_PORT.key, RPC_PORT.to_string());
    set(options::REST_PORT.key, REST_PORT.to_string());
    set(options::TASK_SLOTS.key, spec.task_manager.slots.to_string());
    // No default for state.checkpoints.dir or state.savepoints.dir: a pod's own disk is never
    // a checkpoint store (validation requires durable shared storage).
    set(options::CHECKPOINT_INTERVAL.key, "10s".into());
    if spec.task_manager.autoscaler.is_some() {
        set(options::SCHEDULER_MODE.key, "reactive".into());
        if let Some(p) = spec.job.parallelism {
            set(options::PARALLELISM_DEFAULT.key, p.to_string());
        }
    } else {
        let p = spec.job.parallelism.unwrap_or((spec.task_manager.replicas * spec.task_manager.slots).max(1));
        set(options::PARALLELISM_DEFAULT.key, p.to_string());
    }
    for (k, v) in &spec.flink_configuration {
        if !crate::crd::RESERVED_CONFIG_KEYS.contains(&k.as_str()) {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

/// `rheo.yaml`: flat Flink keys; numbers and booleans are plain YAML scalars, the rest strings.
pub fn config_yaml(fj: &FlinkJob, plan: &Plan) -> String {
    let typed: BTreeMap<String, serde_yaml::Value> = config(fj, plan)
        .into_iter()
        .map(|(k, v)| {
            let value = if let Ok(i) = v.parse::<i64>() {
                serde_yaml::Value::from(i)
            } else if let Ok(b) = v.parse::<bool>() {
                serde_yaml::Value::from(b)
            } else {
                serde_yaml::Value::from(v)
            };
            (k, value)
        })
        .collect();
    serde_yaml::to_string(&typed).expect("a map of scalars serializes")
}

#[derive(Clone, Copy, PartialEq)]
enum Component {
    JobManager,
    TaskManager,
}

/// The worker's arguments for a component.
pub fn args(plan: &Plan, jobmanager: bool) -> Vec<String> {
    if !jobmanager {
        return vec!["taskmanager".into()];
    }
    let mut a: Vec<String> = vec!["jobmanager".into(), "--job".into(), plan.spec.job.entry.clone()];
    a.extend(["--job-id".into(), plan.job_id.clone()]);
    if let Some(path) = &plan.restore_path {
        a.extend(["--from-savepoint".into(), path.clone()]);
        if plan.spec.job.allow_non_restored_state {
            a.push("--allow-non-restored-state".into());
        }
    }
    a.push("--".into());
    a.extend(plan.spec.job.args.iter().cloned());
    a
}

fn pod(fj: &FlinkJob, plan: &Plan, component: Component) -> Result<PodTemplateSpec, BuildError> {
    let spec = &plan.spec;
    let name = fj.name();
    let (component_name, resources, own_template, field) = match component {
        Component::JobManager => {
            ("jobmanager", &spec.job_manager.resources, &spec.job_manager.pod_template, "spec.jobManager.podTemplate")
        }
        Component::TaskManager => (
            "taskmanager",
            &spec.task_manager.resources,
            &spec.task_manager.pod_template,
            "spec.taskManager.podTemplate",
        ),
    };
    let layered = pod_template::layer(spec.pod_template.as_ref(), own_template.as_ref());
    let user = pod_template::decode(layered.as_ref()).map_err(|message| BuildError::PodTemplate { field, message })?;

    let (ports, readiness, liveness) = match component {
        Component::JobManager => {
            // Ready while the JobManager serves its own job and that job has not FAILED
            // (`/jobs/:id/ready`: 404 before it is submitted, 503 once it failed); alive while
            // it answers at all.
            let job_path = format!("/jobs/{}/ready", plan.job_id);
            let probe = |path: &str, initial: i32, period: i32, failures: i32| Probe {
                http_get: Some(HTTPGetAction {
                    path: Some(path.into()),
                    port: IntOrString::String("rest".into()),
                    ..Default::default()
                }),
                initial_delay_seconds: Some(initial),
                period_seconds: Some(period),
                failure_threshold: Some(failures),
                ..Default::default()
            };
            (
                vec![container_port("rest", REST_PORT), container_port("rpc", RPC_PORT)],
                probe(&job_path, 2, 5, 3),
                probe("/overview", 15, 10, 6),
            )
        }
        Component::TaskManager => {
            let probe = |initial: i32, period: i32, failures: i32| Probe {
                tcp_socket: Some(TCPSocketAction { port: IntOrString::String("data".into()), ..Default::default() }),
                initial_delay_seconds: Some(initial),
                period_seconds: Some(period),
                failure_threshold: Some(failures),
                ..Default::default()
            };
            (vec![container_port("data", DATA_PORT)], probe(2, 5, 3), probe(15, 10, 6))
        }
    };

    let main = Container {
        name: pod_template::MAIN_CONTAINER.into(),
        image: Some(spec.image.clone()),
        // IfNotPresent unless asked otherwise: an image loaded into the node (kind, k3s) works,
        // and a `:latest` tag does not silently switch to Always.
        image_pull_policy: Some(spec.image_pull_policy.unwrap_or(ImagePullPolicy::IfNotPresent).as_str().to_string()),
        args: Some(args(plan, component == Component::JobManager)),
        ports: Some(ports),
        env: Some(vec![EnvVar { name: "RHEO_CONF_DIR".into(), value: Some(CONFIG_DIR.into()), ..Default::default() }]),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, true),
            mount("tmp", "/tmp", false),
            mount("data", DATA_DIR, false),
        ]),
        resources: Some(resources.clone().unwrap_or_else(|| default_resources(component))),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ours = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(name, component_name)),
            annotations: Some(BTreeMap::from([(JOB_ID_ANNOTATION.to_string(), plan.job_id.clone())])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![main],
            service_account_name: spec.service_account.clone(),
            // A namespace with many Services would otherwise fill every pod's environment.
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(WORKER_UID),
                run_as_group: Some(WORKER_UID),
                fs_group: Some(WORKER_UID),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                ..Default::default()
            }),
            volumes: Some(vec![
                Volume {
                    name: "config".into(),
                    config_map: Some(ConfigMapVolumeSource { name: names::config_map(name), ..Default::default() }),
                    ..Default::default()
                },
                Volume { name: "tmp".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() },
                Volume { name: "data".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() },
            ]),
            ..Default::default()
        }),
    };
    Ok(pod_template::merge(user, ours))
}

/// Requests of a container without `resources` in the spec, so the scheduler places it
/// knowingly; no limits (the user sets those knowing the job).
fn default_resources(component: Component) -> ResourceRequirements {
    let (cpu, memory) = match component {
        Component::JobManager => ("100m", "256Mi"),
        Component::TaskManager => ("250m", "512Mi"),
    };
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        ..Default::default()
    }
}

fn deployment(meta: ObjectMeta, replicas: i32, job: &str, component: &str, template: PodTemplateSpec) -> Deployment {
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(job, component)), ..Default::default() },
            // Never two JobManagers, and a new job gets a fresh set of TaskManagers.
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), ..Default::default() }),
            template,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort { name: Some(name.into()), container_port: port, protocol: Some("TCP".into()), ..Default::default() }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_is_the_uid_then_moves_with_the_epoch() {
        let uid = "6232260e-7262-bc21-1b07-d58420043bd8";
        assert_eq!(job_id(uid, 0).unwrap(), "6232260e7262bc211b07d58420043bd8");
        assert_eq!(job_id(uid, 1).unwrap(), "6232260e7262bc211b07d58420043bd9");
        assert_eq!(job_id("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", 1).unwrap(), "ffffffffffffffffffffffff00000000");
        assert_eq!(job_id("not-a-uuid", 0), Err(BuildError::BadUid("not-a-uuid".into())));
    }

    #[test]
    fn selector_string_matches_pod_labels() {
        assert_eq!(
            task_manager_selector("wc"),
            "app.kubernetes.io/component=taskmanager,app.kubernetes.io/instance=wc,app.kubernetes.io/name=rheo"
        );
    }
}
