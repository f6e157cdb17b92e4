//! Checks of a `FlinkJob` beyond its OpenAPI schema.
//!
//! The CRD carries the same rules as CEL, but the operator checks them again: a CRD may be older
//! than the operator, and a spec that cannot be deployed must end in a status error and an
//! Event, never in a crash loop.

use crate::build::pod_template;
use crate::crd::{DeletionPolicy, FlinkJob, MAX_NAME_LENGTH, RESERVED_CONFIG_KEYS, UpgradeMode};

/// Every problem found, each naming the field, e.g. `spec.job.entry: must not be empty`.
pub fn validate(fj: &FlinkJob) -> Result<(), Vec<String>> {
    let spec = &fj.spec;
    let mut errors = Vec::new();
    let mut check = |ok: bool, msg: &str| {
        if !ok {
            errors.push(msg.to_string());
        }
    };

    check(fj.name().len() <= MAX_NAME_LENGTH, &format!("metadata.name: at most {MAX_NAME_LENGTH} characters"));
    check(!spec.image.trim().is_empty(), "spec.image: must not be empty");
    check(!spec.job.entry.trim().is_empty(), "spec.job.entry: must not be empty");
    check(spec.job.parallelism.is_none_or(|p| p >= 1), "spec.job.parallelism: must be at least 1");
    check(spec.task_manager.replicas >= 0, "spec.taskManager.replicas: must not be negative");
    check(spec.task_manager.slots >= 1, "spec.taskManager.slots: must be at least 1");
    check(spec.deletion_timeout_seconds >= 0, "spec.deletionTimeoutSeconds: must not be negative");
    if let Some(a) = &spec.task_manager.autoscaler {
        check(a.min_replicas >= 1, "spec.taskManager.autoscaler.minReplicas: must be at least 1");
        check(a.min_replicas <= a.max_replicas, "spec.taskManager.autoscaler.minReplicas: must not exceed maxReplicas");
    }
    for key in RESERVED_CONFIG_KEYS {
        check(
            !spec.flink_configuration.contains_key(key),
            &format!("spec.flinkConfiguration: {key} is set by the operator"),
        );
    }
    let has = |key: &str| spec.flink_configuration.contains_key(key);
    check(
        spec.deletion_policy != DeletionPolicy::Savepoint || has("state.savepoints.dir"),
        "spec.deletionPolicy: savepoint needs flinkConfiguration['state.savepoints.dir']",
    );
    check(
        spec.job.upgrade_mode != UpgradeMode::Savepoint || has("state.savepoints.dir"),
        "spec.job.upgradeMode: savepoint needs flinkConfiguration['state.savepoints.dir']",
    );
    check(
        spec.job.upgrade_mode != UpgradeMode::LastState || has("state.checkpoints.dir"),
        "spec.job.upgradeMode: last-state needs flinkConfiguration['state.checkpoints.dir']",
    );
    for (field, template) in [
        ("spec.podTemplate", &spec.pod_template),
        ("spec.jobManager.podTemplate", &spec.job_manager.pod_template),
        ("spec.taskManager.podTemplate", &spec.task_manager.pod_template),
    ] {
        if let Err(e) = pod_template::decode(template.as_ref()) {
            errors.push(format!("{field}: {e}"));
        }
    }

    if errors.is_empty() { Ok(()) } else { Err(errors) }
}
