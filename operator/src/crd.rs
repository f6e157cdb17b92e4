//! The `FlinkJob` custom resource (`rheo.io/v1alpha1`, short name `fj`).
//!
//! The spec follows Apache Flink's `FlinkDeployment` where the meaning is the same, so a Flink user
//! recognises `flinkConfiguration`, `jobManager`, `taskManager`, `job.upgradeMode` and the nonces.
//! The CRD YAML in `crds/flinkjob.yaml` is generated from these types (`rheo-operator crd`).
//! What an OpenAPI schema cannot say is written as CEL rules (`x-kubernetes-validations`), and the
//! same rules are checked again by [`crate::validate`] before anything is deployed.

// Several `printcolumn(...)` share keys like `type_`, which this lint mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Flink configuration keys the operator owns: they wire the pods and Services together.
pub const RESERVED_CONFIG_KEYS: [&str; 3] = [
    rheo_config::options::JOBMANAGER_ADDRESS.key,
    rheo_config::options::JOBMANAGER_PORT.key,
    rheo_config::options::REST_PORT.key,
];

/// The longest `FlinkJob` name: child names add at most 13 characters (`-taskmanager`) and must
/// stay valid 63-character DNS labels, with room for the ReplicaSet/pod suffixes.
pub const MAX_NAME_LENGTH: usize = 40;

/// A Flink streaming job run by Rheo: one JobManager and a scalable set of TaskManagers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rheo.io",
    version = "v1alpha1",
    kind = "FlinkJob",
    plural = "flinkjobs",
    singular = "flinkjob",
    shortname = "fj",
    category = "rheo",
    namespaced,
    status = "FlinkJobStatus",
    derive = "PartialEq",
    doc = "A Flink streaming job run by Rheo: one JobManager and a scalable set of TaskManagers.",
    scale(
        spec_replicas_path = ".spec.taskManager.replicas",
        status_replicas_path = ".status.taskManager.replicas",
        label_selector_path = ".status.taskManager.selector"
    ),
    printcolumn(
        name = "Job State",
        type_ = "string",
        json_path = ".status.jobStatus.state",
        description = "Flink job state"
    ),
    printcolumn(
        name = "Lifecycle",
        type_ = "string",
        json_path = ".status.lifecycleState",
        description = "Lifecycle state of the resource"
    ),
    printcolumn(
        name = "Parallelism",
        type_ = "integer",
        json_path = ".status.jobStatus.parallelism",
        description = "Parallelism of the running job"
    ),
    printcolumn(
        name = "TaskManagers",
        type_ = "integer",
        json_path = ".status.taskManager.replicas",
        description = "TaskManager pods"
    ),
    printcolumn(
        name = "Last Checkpoint",
        type_ = "date",
        json_path = ".status.jobStatus.lastCheckpoint.timestamp",
        description = "Age of the newest completed checkpoint"
    ),
    printcolumn(
        name = "Autoscaler",
        type_ = "string",
        json_path = ".status.autoscaler.decision",
        description = "The newest decision of Rheo's autoscaler",
        priority = "1"
    ),
    printcolumn(
        name = "Last Rescale",
        type_ = "date",
        json_path = ".status.autoscaler.lastRescaleTime",
        description = "When Rheo's autoscaler last rescaled the job",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.deletionPolicy != 'savepoint' || 'state.savepoints.dir' in self.flinkConfiguration",
        "message": "deletionPolicy savepoint needs flinkConfiguration['state.savepoints.dir'] on durable storage",
        "fieldPath": ".deletionPolicy"
    },
    {
        "rule": "self.job.upgradeMode != 'savepoint' || 'state.savepoints.dir' in self.flinkConfiguration",
        "message": "upgradeMode savepoint needs flinkConfiguration['state.savepoints.dir'] on durable storage",
        "fieldPath": ".job.upgradeMode"
    },
    {
        "rule": "!has(self.job.savepointRedeployNonce) || has(self.job.initialSavepointPath)",
        "message": "job.savepointRedeployNonce needs job.initialSavepointPath (the savepoint to redeploy from)",
        "fieldPath": ".job.savepointRedeployNonce"
    },
    {
        "rule": "'state.checkpoints.dir' in self.flinkConfiguration",
        "message": "flinkConfiguration['state.checkpoints.dir'] must name durable storage shared by all pods (e.g. s3://bucket/checkpoints): a pod's own disk is lost with the pod",
        "fieldPath": ".flinkConfiguration"
    },
    {
        "rule": "!('state.checkpoints.dir' in self.flinkConfiguration) || !self.flinkConfiguration['state.checkpoints.dir'].startsWith('file:///opt/rheo/data') && !self.flinkConfiguration['state.checkpoints.dir'].startsWith('file:///tmp')",
        "message": "flinkConfiguration['state.checkpoints.dir'] is on the pod's own disk: use object storage or a shared volume",
        "fieldPath": ".flinkConfiguration"
    }
]))]
pub struct FlinkJobSpec {
    /// The worker image: the `rheo` binary, or a user's own binary built on the `rheo` crate.
    #[schemars(length(min = 1))]
    pub image: String,

    /// Pull policy of the worker image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Flink configuration (`rheo.yaml`), e.g. `state.checkpoints.dir`. Overrides the operator's
    /// defaults, except the keys that wire the cluster (`jobmanager.rpc.address`,
    /// `jobmanager.rpc.port`, `rest.port`). Never put credentials here: use `podTemplate` env.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!('jobmanager.rpc.address' in self) && !('jobmanager.rpc.port' in self) && !('rest.port' in self)",
        "message": "jobmanager.rpc.address, jobmanager.rpc.port and rest.port are set by the operator"
    }]))]
    pub flink_configuration: BTreeMap<String, String>,

    /// The JobManager pod.
    #[serde(default)]
    pub job_manager: JobManagerSpec,

    /// The TaskManager pods.
    #[serde(default)]
    pub task_manager: TaskManagerSpec,

    /// The job to run.
    pub job: JobSpec,

    /// A pod template merged under both JobManager and TaskManager pods (sidecars, volumes,
    /// env, `envFrom` Secrets, node selection). The container named `rheo` is the main one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub pod_template: Option<serde_json::Value>,

    /// ServiceAccount of the JobManager and TaskManager pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,

    /// Change to any new value to restart the job (using `job.upgradeMode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<i64>,

    /// What happens to the running job when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// How long deletion waits for the deletion savepoint before giving up and cancelling.
    #[serde(default = "default_deletion_timeout")]
    #[schemars(range(min = 0))]
    pub deletion_timeout_seconds: i64,

    /// Rolling back an upgrade that does not become healthy (Flink's
    /// `kubernetes.operator.deployment.rollback.enabled` and `deployment.readiness.timeout`).
    #[serde(default)]
    pub rollback: RollbackSpec,
}

/// An upgrade whose job is not RUNNING within `readinessTimeoutSeconds` of its deployment is
/// rolled back to the last spec that ran (`status.reconciliation.lastStableSpec`), restoring
/// the snapshot the failed deployment started from. The failed spec is not tried again until
/// the spec changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// Off by default, as in Flink.
    #[serde(default)]
    pub enabled: bool,
    /// How long a new deployment has to get its job RUNNING.
    #[serde(default = "default_readiness_timeout")]
    #[schemars(range(min = 1))]
    pub readiness_timeout_seconds: i64,
}

fn default_readiness_timeout() -> i64 {
    300
}

impl Default for RollbackSpec {
    fn default() -> Self {
        Self { enabled: false, readiness_timeout_seconds: default_readiness_timeout() }
    }
}

fn default_deletion_timeout() -> i64 {
    300
}

/// Whether a change of a spec field needs a new job (an upgrade), declared field by field.
///
/// The destructuring below names every field, so a new field does not compile until it is
/// classified here: [`UpgradeScope::Job`] fields need an upgrade, [`UpgradeScope::Live`] fields
/// are applied to the running job (scaling, savepoint triggers, deletion settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeScope {
    /// A change needs the job redeployed.
    Job,
    /// A change is applied without a new job.
    Live,
}

impl FlinkJobSpec {
    /// The spec with every [`UpgradeScope::Live`] field blanked: two specs whose upgrade parts
    /// are equal run the same job.
    pub fn upgrade_part(&self) -> FlinkJobSpec {
        let FlinkJobSpec {
            image: _,                    // Job
            image_pull_policy: _,        // Job
            flink_configuration: _,      // Job
            job_manager: _,              // Job
            task_manager,                // see TaskManagerSpec::upgrade_part
            job,                         // see JobSpec::upgrade_part
            pod_template: _,             // Job
            service_account: _,          // Job
            restart_nonce: _,            // Job: a new value restarts the job
            deletion_policy: _,          // Live
            deletion_timeout_seconds: _, // Live
            rollback: _,                 // Live: how the next upgrade is watched
        } = self;
        FlinkJobSpec {
            task_manager: task_manager.upgrade_part(job),
            job: job.upgrade_part(),
            deletion_policy: DeletionPolicy::default(),
            deletion_timeout_seconds: 0,
            rollback: RollbackSpec::default(),
            ..self.clone()
        }
    }
}

impl TaskManagerSpec {
    fn upgrade_part(&self, job: &JobSpec) -> TaskManagerSpec {
        let TaskManagerSpec {
            // Live for a reactive job (it uses every slot) or a fixed `job.parallelism`;
            // otherwise Job: the parallelism is replicas × slots.
            replicas,
            slots: _,        // Job
            resources: _,    // Job
            autoscaler: _,   // Live bounds and mode, but whether there is one is Job (reactive mode)
            pod_template: _, // Job
        } = self;
        let parallelism_follows_replicas = self.autoscaler.is_none() && job.parallelism.is_none();
        TaskManagerSpec {
            replicas: if parallelism_follows_replicas { *replicas } else { 0 },
            autoscaler: self.autoscaler.as_ref().map(|_| AutoscalerSpec {
                min_replicas: 0,
                max_replicas: 0,
                mode: AutoscalerMode::default(),
                metrics_interval_seconds: 0,
            }),
            ..self.clone()
        }
    }
}

impl JobSpec {
    fn upgrade_part(&self) -> JobSpec {
        let JobSpec {
            entry: _,                               // Job
            args: _,                                // Job
            parallelism: _,                         // Job
            state: _,                               // Job (suspend, resume)
            upgrade_mode: _,                        // Live: how the next upgrade is done
            savepoint_trigger_nonce: _,             // Live
            checkpoint_trigger_nonce: _,            // Live
            savepoint_redeploy_nonce: _,            // Job when set to a new value: see upgrade_reason
            initial_savepoint_path: _,              // Live: first deployment and savepoint redeploys
            allow_non_restored_state: _,            // Job
            allow_last_state_fallback: _,           // Live
            restart_policy: _,                      // Live
            periodic_savepoint_interval_seconds: _, // Live
            savepoint_history: _,                   // Live
        } = self;
        JobSpec {
            upgrade_mode: UpgradeMode::default(),
            savepoint_trigger_nonce: None,
            checkpoint_trigger_nonce: None,
            savepoint_redeploy_nonce: None,
            initial_savepoint_path: None,
            allow_last_state_fallback: false,
            restart_policy: None,
            periodic_savepoint_interval_seconds: None,
            savepoint_history: SavepointHistoryPolicy::default(),
            ..self.clone()
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// The JobManager pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobManagerSpec {
    /// CPU and memory of the JobManager container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// A pod template for the JobManager only, merged over the top-level `podTemplate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub pod_template: Option<serde_json::Value>,
}

/// The TaskManager pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskManagerSpec {
    /// Number of TaskManager pods; also the scale subresource (`kubectl scale fj/NAME`, HPA).
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// Task slots per TaskManager (`taskmanager.numberOfTaskSlots`).
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub slots: i32,

    /// CPU and memory of each TaskManager container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Set when an autoscaler sets `replicas` through this resource's scale subresource: an
    /// HPA or other tool (`mode: External`), or the operator itself from the job's metrics
    /// (`mode: Rheo`). The job then runs in Flink's reactive mode and uses every slot it gets,
    /// and the operator keeps the TaskManager count within `minReplicas..=maxReplicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerSpec>,

    /// A pod template for the TaskManagers only, merged over the top-level `podTemplate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub pod_template: Option<serde_json::Value>,
}

fn one() -> i32 {
    1
}

impl Default for TaskManagerSpec {
    fn default() -> Self {
        Self { replicas: 1, slots: 1, resources: None, autoscaler: None, pod_template: None }
    }
}

/// Bounds of an autoscaled TaskManager set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.minReplicas <= self.maxReplicas",
    "message": "minReplicas must not exceed maxReplicas",
    "fieldPath": ".minReplicas"
}]))]
pub struct AutoscalerSpec {
    /// Fewest TaskManagers (also `job.autoscaler.taskmanager.min-replicas` of mode `Rheo`).
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most TaskManagers (also `job.autoscaler.taskmanager.max-replicas` of mode `Rheo`).
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Who sets `replicas`.
    #[serde(default)]
    pub mode: AutoscalerMode,
    /// Mode `Rheo`: how often the operator samples the job's metrics and decides. The
    /// algorithm's options are Flink's `job.autoscaler.*` keys in `flinkConfiguration`.
    #[serde(default = "default_metrics_interval")]
    #[schemars(range(min = 1))]
    pub metrics_interval_seconds: i64,
}

fn default_metrics_interval() -> i64 {
    10
}

/// Who sets an autoscaled FlinkJob's TaskManager `replicas`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AutoscalerMode {
    /// Someone else, through the scale subresource: an HPA, KEDA, `kubectl scale`.
    #[default]
    External,
    /// The operator, from the job's own metrics (busy time, rates, backlog) by Rheo's
    /// autoscaler; each rescale stops the job with a synchronous checkpoint and redeploys it
    /// from it, so nothing is processed twice.
    Rheo,
}

/// The job to run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// The job's name in the worker binary (`rheo jobs` lists them), e.g. `word-count`.
    #[schemars(length(min = 1))]
    pub entry: String,

    /// Arguments passed to the job after `--`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,

    /// Parallelism (`parallelism.default`). Default: TaskManager replicas × slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub parallelism: Option<i32>,

    /// Desired state of the job.
    #[serde(default)]
    pub state: DesiredJobState,

    /// How state is carried over when the job is upgraded, restarted or suspended.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,

    /// Change to any new value to take a savepoint of the running job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_trigger_nonce: Option<i64>,

    /// Change to any new value to take a checkpoint of the running job (through the
    /// JobManager's `POST /jobs/:id/checkpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_trigger_nonce: Option<i64>,

    /// Change to any new value to redeploy the job from `initialSavepointPath`, discarding its
    /// current state (the running job is cancelled, not stopped with a savepoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_redeploy_nonce: Option<i64>,

    /// Savepoint or checkpoint to start from on the first deployment, and on a redeploy by
    /// `savepointRedeployNonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub initial_savepoint_path: Option<String>,

    /// Allow restoring a savepoint whose state no longer maps to an operator of the job.
    #[serde(default)]
    pub allow_non_restored_state: bool,

    /// When a savepoint upgrade cannot take a savepoint (the job is not RUNNING, or its
    /// JobManager does not come up), continue from the newest complete checkpoint instead of
    /// waiting for the user (Flink's `last-state-fallback`).
    #[serde(default)]
    pub allow_last_state_fallback: bool,

    /// What happens when the job FAILS: left failed (the default) or restarted with backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,

    /// Take a savepoint this often while the job runs (e.g. `3600`); kept in
    /// `status.jobStatus.savepointHistory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub periodic_savepoint_interval_seconds: Option<i64>,

    /// How many savepoints the history keeps, and for how long (older entries are dropped).
    #[serde(default)]
    pub savepoint_history: SavepointHistoryPolicy,
}

/// Restarts of a FAILED job: each one a last-state redeploy (a new job id from the newest
/// complete checkpoint), after `backoffSeconds` doubling with every restart, at most
/// `maxRestarts` times in a row; a job that stays RUNNING for 10 minutes resets the count.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartPolicy {
    /// `Never` leaves a FAILED job failed; `OnFailure` restarts it.
    #[serde(default)]
    pub mode: RestartMode,
    /// Restarts in a row before the job is left FAILED.
    #[serde(default = "default_max_restarts")]
    #[schemars(range(min = 0))]
    pub max_restarts: i32,
    /// Wait before the first restart; each further one waits twice as long (at most 10 minutes).
    #[serde(default = "default_backoff_seconds")]
    #[schemars(range(min = 0))]
    pub backoff_seconds: i64,
}

fn default_max_restarts() -> i32 {
    5
}

fn default_backoff_seconds() -> i64 {
    10
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RestartMode {
    #[default]
    Never,
    OnFailure,
}

/// Cleanup of `status.jobStatus.savepointHistory`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointHistoryPolicy {
    /// Entries kept (the newest ones).
    #[serde(default = "default_history_count")]
    #[schemars(range(min = 1))]
    pub max_count: i32,
    /// Entries older than this are dropped (the newest entry is always kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_age_seconds: Option<i64>,
}

fn default_history_count() -> i32 {
    10
}

impl Default for SavepointHistoryPolicy {
    fn default() -> Self {
        Self { max_count: default_history_count(), max_age_seconds: None }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DesiredJobState {
    #[default]
    Running,
    Suspended,
}

/// How state moves from the old job to the new one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Cancel the job and start the new one with empty state.
    #[default]
    Stateless,
    /// Cancel the job and start the new one from its newest completed checkpoint.
    LastState,
    /// Stop the job with a savepoint and start the new one from it.
    Savepoint,
}

impl UpgradeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeMode::Stateless => "stateless",
            UpgradeMode::LastState => "last-state",
            UpgradeMode::Savepoint => "savepoint",
        }
    }
}

/// What deleting the `FlinkJob` does to the running job before its pods go away.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeletionPolicy {
    /// Cancel the job.
    #[default]
    Cancel,
    /// Stop the job with a savepoint (reported in an Event), within `deletionTimeoutSeconds`.
    Savepoint,
}

/// Observed state, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlinkJobStatus {
    /// Where the resource is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_state: Option<LifecycleState>,

    /// The Flink job as its JobManager reports it.
    #[serde(default)]
    pub job_status: JobStatus,

    /// The TaskManager pods (the scale subresource reads `replicas` and `selector`).
    #[serde(default)]
    pub task_manager: TaskManagerStatus,

    /// kstatus conditions: Ready, Progressing, Degraded, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The current problem, if any, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,

    /// What the operator has deployed and what it is doing: written before it acts.
    #[serde(default)]
    pub reconciliation: ReconciliationStatus,

    /// Rheo's autoscaler (`taskManager.autoscaler.mode: Rheo`): what it measured, what it
    /// decided and why, and the rescale in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
}

/// What Rheo's autoscaler saw and decided in its newest evaluation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// When the job's metrics were last sampled and evaluated (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation_time: Option<String>,
    /// The newest decision: `NoChange`, `ScaleUp` or `ScaleDown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Why, in words (e.g. `collecting metrics ...`, `parallelism 1 → 3, TaskManagers 1 → 3: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each vertex as the newest evaluation saw it, in topological order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vertices: Vec<AutoscalerVertexStatus>,
    /// When the operator last rescaled the job (RFC 3339): the end of its last rescale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rescale_time: Option<String>,
    /// A rescale in progress: recorded before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescale: Option<RescaleProgress>,
}

/// One vertex's metrics averaged over the window, and the parallelism it wants.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerVertexStatus {
    /// The vertex id (`/jobs/:id/vertices/:vid`).
    pub id: String,
    /// The vertex's name (its operators).
    pub name: String,
    /// Its parallelism now.
    pub parallelism: i32,
    /// Records it processed per second (for a source, records it read), over the window.
    pub records_in_per_second: f64,
    /// Milliseconds per second it was busy (0 to 1000), over the window: its busiest subtask's,
    /// or as `job.autoscaler.metrics.busy-time.aggregator` says (`MAX`, `AVG`, `MIN`).
    pub busy_time_ms_per_second: f64,
    /// Milliseconds per second its subtasks were back-pressured (0 to 1000), over the window.
    pub back_pressured_time_ms_per_second: f64,
    /// A source's backlog (`pendingRecords`), if it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_records: Option<f64>,
    /// Records per second it has to process (arrivals plus the backlog to catch up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Records per second it could process at its parallelism if always busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_processing_rate: Option<f64>,
    /// The parallelism the window asks for (none until a full window is collected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted_parallelism: Option<i32>,
    /// Why it wants that: `WithinBand`, `ScaleUp`, `ScaleDown`, `ScaleDownDelayed`, `Idle`,
    /// `AtMaxParallelism`, `AtMinParallelism`, `OutOfBounds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A rescale by Rheo's autoscaler. A scale-up first holds the job at its parallelism, adds the
/// TaskManagers, and rescales once they have registered (one pause, not one per pod); a
/// scale-down rescales first and then removes the TaskManagers it left idle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RescaleProgress {
    /// The job's parallelism before.
    pub from_parallelism: i32,
    /// The parallelism asked for.
    pub parallelism: i32,
    /// TaskManagers before.
    pub from_task_managers: i32,
    /// TaskManagers asked for.
    pub task_managers: i32,
    /// Where it is.
    pub phase: RescalePhase,
    /// When it started (RFC 3339).
    pub since: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RescalePhase {
    /// Scale-up: the TaskManagers are starting and registering.
    AddingTaskManagers,
    /// The job stops with a synchronous checkpoint and restarts from it at the new parallelism.
    Redeploying,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleState {
    /// Accepted, nothing deployed yet.
    Created,
    /// Deployed; the job is not running yet.
    Deployed,
    /// Deployed and the job is running.
    Stable,
    /// Taking state out of the old job to deploy the new spec.
    Upgrading,
    /// Suspended: no pods run, state kept in a savepoint or checkpoint.
    Suspended,
    /// The job failed (and no restart policy restarts it, or not yet).
    Failed,
    /// The job is over: FINISHED or CANCELED. Final until the spec changes.
    Finished,
    /// An upgrade did not become healthy in time: the last stable spec runs again.
    RolledBack,
    /// Being deleted.
    Deleting,
}

impl LifecycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Created => "CREATED",
            LifecycleState::Deployed => "DEPLOYED",
            LifecycleState::Stable => "STABLE",
            LifecycleState::Upgrading => "UPGRADING",
            LifecycleState::Suspended => "SUSPENDED",
            LifecycleState::Failed => "FAILED",
            LifecycleState::Finished => "FINISHED",
            LifecycleState::RolledBack => "ROLLED_BACK",
            LifecycleState::Deleting => "DELETING",
        }
    }
}

/// The Flink job as its JobManager reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The job id (32 hex digits) the JobManager runs the job under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Flink's job state (`RUNNING`, `FAILED`, ...), `SUSPENDED` when suspended, `UNKNOWN`
    /// while the JobManager cannot be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobStateView>,
    /// The job's newest failure (`/jobs/:id/exceptions`), in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Parallelism of the running job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// The newest completed checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointRef>,
    /// The newest savepoint the operator took or saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_savepoint: Option<SavepointRef>,
    /// A savepoint in flight: recorded before it is triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_savepoint: Option<PendingSavepoint>,
    /// A checkpoint asked for by `job.checkpointTriggerNonce`: recorded before it is triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_checkpoint: Option<PendingCheckpoint>,
    /// Savepoints taken, newest last; trimmed by `job.savepointHistory`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub savepoint_history: Vec<SavepointRef>,
    /// Savepoints trimmed from the history whose files are still to be deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub savepoints_to_dispose: Vec<String>,
}

/// A job state as the status shows it: Flink's states, plus `SUSPENDED` (nothing runs) and
/// `UNKNOWN` (the JobManager cannot be asked: the job may or may not be running).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStateView {
    Initializing,
    Created,
    Running,
    Failing,
    Failed,
    Cancelling,
    Canceled,
    Finished,
    Restarting,
    Suspended,
    Reconciling,
    Unknown,
}

impl JobStateView {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStateView::Initializing => "INITIALIZING",
            JobStateView::Created => "CREATED",
            JobStateView::Running => "RUNNING",
            JobStateView::Failing => "FAILING",
            JobStateView::Failed => "FAILED",
            JobStateView::Cancelling => "CANCELLING",
            JobStateView::Canceled => "CANCELED",
            JobStateView::Finished => "FINISHED",
            JobStateView::Restarting => "RESTARTING",
            JobStateView::Suspended => "SUSPENDED",
            JobStateView::Reconciling => "RECONCILING",
            JobStateView::Unknown => "UNKNOWN",
        }
    }

    /// FINISHED and CANCELED: the job is over and nothing restarts it.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStateView::Finished | JobStateView::Canceled)
    }

    pub fn is_unhealthy(self) -> bool {
        matches!(self, JobStateView::Failed | JobStateView::Failing | JobStateView::Restarting)
    }
}

impl From<rheo_rest::JobState> for JobStateView {
    fn from(s: rheo_rest::JobState) -> Self {
        use rheo_rest::JobState as J;
        match s {
            J::Initializing => JobStateView::Initializing,
            J::Created => JobStateView::Created,
            J::Running => JobStateView::Running,
            J::Failing => JobStateView::Failing,
            J::Failed => JobStateView::Failed,
            J::Cancelling => JobStateView::Cancelling,
            J::Canceled => JobStateView::Canceled,
            J::Finished => JobStateView::Finished,
            J::Restarting => JobStateView::Restarting,
            J::Suspended => JobStateView::Suspended,
            J::Reconciling => JobStateView::Reconciling,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRef {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// When it completed (RFC 3339).
    pub timestamp: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointRef {
    pub path: String,
    /// When it completed (RFC 3339).
    pub timestamp: String,
    pub purpose: SavepointPurpose,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingSavepoint {
    pub purpose: SavepointPurpose,
    /// The trigger id from the JobManager, once triggered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
    /// The `savepointTriggerNonce` this savepoint answers (manual savepoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<i64>,
    /// When it was recorded (RFC 3339).
    pub since: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingCheckpoint {
    /// The trigger id, chosen by the operator and recorded before the trigger: a trigger sent
    /// again after an operator restart takes no second checkpoint.
    pub trigger_id: String,
    /// The `checkpointTriggerNonce` this checkpoint answers.
    pub nonce: i64,
    /// Whether the JobManager accepted the trigger.
    #[serde(default)]
    pub triggered: bool,
    /// When it was recorded (RFC 3339).
    pub since: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SavepointPurpose {
    /// Asked for through `job.savepointTriggerNonce`.
    Manual,
    /// Taken every `job.periodicSavepointIntervalSeconds`.
    Periodic,
    /// Stop-with-savepoint for an upgrade, restart or suspend.
    Upgrade,
    /// Stop-with-savepoint before deletion.
    Deletion,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskManagerStatus {
    /// TaskManager pods that exist (the scale subresource's status replicas).
    #[serde(default)]
    pub replicas: i32,
    /// TaskManager pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// TaskManager pods the operator asked for (spec replicas within the autoscaler bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Label selector of the TaskManager pods, for the scale subresource and HPA.
    #[serde(default)]
    pub selector: String,
    /// When the operator last changed the TaskManager count (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
}

/// The operator's record of what is deployed and of an upgrade in progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationStatus {
    /// The spec the running pods were built from (JSON), absent before the first deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciled_spec: Option<String>,
    /// Counts job (re)deployments; the job id is derived from the resource uid and this epoch.
    #[serde(default)]
    pub job_epoch: i64,
    /// The savepoint or checkpoint the deployed job restores from (the next one when suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_path: Option<String>,
    /// The last `savepointTriggerNonce` handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_savepoint_trigger_nonce: Option<i64>,
    /// The last `checkpointTriggerNonce` handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_trigger_nonce: Option<i64>,
    /// When the deployed spec was deployed (RFC 3339): the readiness timeout of a rollback
    /// counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<String>,
    /// The newest spec whose job ran (JSON): what a rollback returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable_spec: Option<String>,
    /// The spec that was rolled back (JSON): not tried again until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_spec: Option<String>,
    /// Checkpoint directories of earlier job epochs (`<state.checkpoints.dir>/<job-id>`), removed
    /// through the JobManager once the running job has completed a checkpoint of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_checkpoint_dirs: Vec<String>,
    /// An upgrade in progress: recorded before the old job is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeProgress>,
    /// Restarts of a FAILED job in a row (`job.restartPolicy`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failure_restarts: i32,
    /// When the job of this epoch was first seen RUNNING (RFC 3339): a job never seen running
    /// has no state of its own, so an upgrade restores what it was deployed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<String>,
    /// When the job was first seen FAILED (RFC 3339), for the restart backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_since: Option<String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeProgress {
    /// How state is taken out of the old job.
    pub mode: UpgradeMode,
    /// Why the job is redeployed.
    pub reason: UpgradeReason,
    /// When the upgrade started (RFC 3339).
    pub since: String,
}

/// Why a job is redeployed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UpgradeReason {
    /// A field that needs a new job changed.
    SpecChanged,
    /// `restartNonce` changed.
    Restart,
    /// `job.state` became `suspended`.
    Suspend,
    /// `job.state` became `running`.
    Resume,
    /// TaskManager replicas changed and the parallelism follows them.
    Scale,
    /// The job FAILED and `job.restartPolicy` restarts it.
    FailureRestart,
    /// `job.savepointRedeployNonce` changed: start over from `job.initialSavepointPath`.
    SavepointRedeploy,
    /// The upgrade did not become healthy in time: back to the last stable spec.
    Rollback,
}

impl UpgradeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeReason::SpecChanged => "SpecChanged",
            UpgradeReason::Restart => "Restart",
            UpgradeReason::Suspend => "Suspend",
            UpgradeReason::Resume => "Resume",
            UpgradeReason::Scale => "Scale",
            UpgradeReason::FailureRestart => "FailureRestart",
            UpgradeReason::SavepointRedeploy => "SavepointRedeploy",
            UpgradeReason::Rollback => "Rollback",
        }
    }
}

/// `type: object` that keeps unknown fields: used for pod templates, whose full schema would
/// make the CRD huge. The build step decodes them into typed pod templates and reports errors.
fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

impl FlinkJob {
    /// The job's name as given in metadata (always set for objects from the API server).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }
}

/// The CRD as YAML, exactly what `rheo-operator crd` prints and `crds/flinkjob.yaml` holds.
pub fn crd_yaml() -> String {
    let mut out = String::from("# Generated by `rheo-operator crd` from operator/src/crd.rs. Do not edit.\n");
    out.push_str(&serde_yaml::to_string(&crd()).expect("the CRD serializes to YAML"));
    out
}

/// A `FlinkJob` name must make valid child names: Services need DNS-1035 labels (a lowercase
/// letter first, no dots), and the longest child suffix must still fit.
pub const NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// The CRD, with the rules on `metadata.name` that a derive cannot place at the root.
pub fn crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = FlinkJob::crd();
    for version in &mut crd.spec.versions {
        let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) else { continue };
        let rule = |rule: String, message: String| {
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule {
                rule,
                message: Some(message),
                ..Default::default()
            }
        };
        schema.x_kubernetes_validations.get_or_insert_with(Vec::new).extend([
            rule(
                format!("self.metadata.name.matches('{NAME_PATTERN}')"),
                "metadata.name must be lowercase letters, digits and '-', start with a letter and end with a letter or digit (it names Services)".into(),
            ),
            rule(
                format!("size(self.metadata.name) <= {MAX_NAME_LENGTH}"),
                format!("metadata.name must be at most {MAX_NAME_LENGTH} characters"),
            ),
        ]);
    }
    crd
}
