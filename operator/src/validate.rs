//! Checks of a `FlinkJob` beyond its OpenAPI schema.
//!
//! The CRD carries the same rules as CEL, but the operator checks them again: a CRD may be older
//! than the operator, and a spec that cannot be deployed must end in a status error and an
//! Event, never in a crash loop.

use rheo_config::options;

use crate::build::pod_template;
use crate::crd::{AutoscalerMode, DeletionPolicy, FlinkJob, MAX_NAME_LENGTH, RESERVED_CONFIG_KEYS, UpgradeMode};

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
    check(
        is_dns_1035_label(fj.name()),
        &format!(
            "metadata.name: {:?} must be lowercase letters, digits and '-', start with a letter and end with a \
             letter or digit: it names the job's Services",
            fj.name()
        ),
    );
    check(!spec.image.trim().is_empty(), "spec.image: must not be empty");
    check(!spec.job.entry.trim().is_empty(), "spec.job.entry: must not be empty");
    check(spec.job.parallelism.is_none_or(|p| p >= 1), "spec.job.parallelism: must be at least 1");
    check(spec.task_manager.replicas >= 0, "spec.taskManager.replicas: must not be negative");
    check(spec.task_manager.slots >= 1, "spec.taskManager.slots: must be at least 1");
    check(spec.deletion_timeout_seconds >= 0, "spec.deletionTimeoutSeconds: must not be negative");
    if let Some(a) = &spec.task_manager.autoscaler {
        check(a.min_replicas >= 1, "spec.taskManager.autoscaler.minReplicas: must be at least 1");
        check(a.min_replicas <= a.max_replicas, "spec.taskManager.autoscaler.minReplicas: must not exceed maxReplicas");
        check(
            a.metrics_interval_seconds >= 1,
            "spec.taskManager.autoscaler.metricsIntervalSeconds: must be at least 1",
        );
        if a.mode == AutoscalerMode::Rheo
            && a.min_replicas <= a.max_replicas
            && let Err(e) = crate::reconcile::autoscale::autoscaler_config(spec)
        {
            check(false, &format!("spec.flinkConfiguration: {e}"));
        }
    }
    for key in RESERVED_CONFIG_KEYS {
        check(
            !spec.flink_configuration.contains_key(key),
            &format!("spec.flinkConfiguration: {key} is set by the operator"),
        );
    }
    // Values the workers would refuse to start with are refused here, before any pod runs.
    for (key, value) in &spec.flink_configuration {
        if let Some(Err(e)) = options::find(key).map(|option| option.check(value)) {
            check(false, &format!("spec.flinkConfiguration: {e}"));
        }
    }
    let has = |key: &str| spec.flink_configuration.contains_key(key);
    check(
        spec.deletion_policy != DeletionPolicy::Savepoint || has(options::SAVEPOINTS_DIR.key),
        "spec.deletionPolicy: savepoint needs flinkConfiguration['state.savepoints.dir']",
    );
    check(
        spec.job.upgrade_mode != UpgradeMode::Savepoint || has(options::SAVEPOINTS_DIR.key),
        "spec.job.upgradeMode: savepoint needs flinkConfiguration['state.savepoints.dir']",
    );
    match spec.flink_configuration.get(options::CHECKPOINTS_DIR.key) {
        None => check(
            false,
            "spec.flinkConfiguration: state.checkpoints.dir must name durable storage shared by all pods \
             (e.g. s3://bucket/checkpoints): a pod's own disk is lost with the pod",
        ),
        Some(dir) if on_pod_disk(dir) => check(
            false,
            &format!(
                "spec.flinkConfiguration: state.checkpoints.dir {dir:?} is on the pod's own disk: use object storage \
             or a shared volume"
            ),
        ),
        Some(_) => {}
    }
    check(
        spec.job.savepoint_redeploy_nonce.is_none() || spec.job.initial_savepoint_path.is_some(),
        "spec.job.savepointRedeployNonce: needs spec.job.initialSavepointPath (the savepoint to redeploy from)",
    );
    check(spec.rollback.readiness_timeout_seconds >= 1, "spec.rollback.readinessTimeoutSeconds: must be at least 1");
    if let Some(p) = &spec.job.restart_policy {
        check(p.max_restarts >= 0, "spec.job.restartPolicy.maxRestarts: must not be negative");
        check(p.backoff_seconds >= 0, "spec.job.restartPolicy.backoffSeconds: must not be negative");
    }
    check(
        spec.job.periodic_savepoint_interval_seconds.is_none_or(|s| s >= 60),
        "spec.job.periodicSavepointIntervalSeconds: must be at least 60",
    );
    check(
        spec.job.periodic_savepoint_interval_seconds.is_none() || has(options::SAVEPOINTS_DIR.key),
        "spec.job.periodicSavepointIntervalSeconds: needs flinkConfiguration['state.savepoints.dir']",
    );
    check(spec.job.savepoint_history.max_count >= 1, "spec.job.savepointHistory.maxCount: must be at least 1");
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

/// A DNS-1035 label: what a Service name must be.
fn is_dns_1035_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

/// A checkpoint directory on the pod's own disk: the operator's scratch volumes, lost with the pod.
fn on_pod_disk(dir: &str) -> bool {
    ["file:///opt/rheo/data", "file:///tmp"].iter().any(|p| dir.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert!(is_dns_1035_label("wc"));
        assert!(is_dns_1035_label("word-count-2"));
        assert!(!is_dns_1035_label("2wc"));
        assert!(!is_dns_1035_label("w.c"));
        assert!(!is_dns_1035_label("wc-"));
        assert!(!is_dns_1035_label("Wc"));
    }
}

#[cfg(test)]
mod configuration_tests {
    use super::*;

    fn flink_job(config: &str) -> FlinkJob {
        let manifest = format!(
            "apiVersion: rheo.io/v1alpha1\nkind: FlinkJob\nmetadata: {{name: wc, namespace: default}}\n\
             spec:\n  image: rheo:latest\n  flinkConfiguration: {{state.checkpoints.dir: 's3://rheo/checkpoints', {config}}}\n  \
             job: {{entry: word-count}}\n"
        );
        serde_yaml::from_str(&manifest).unwrap()
    }

    #[test]
    fn configuration_values_the_workers_would_refuse_are_refused() {
        validate(&flink_job("parallelism.default: '4', s3.path-style-access: 'true'")).unwrap();
        let errors = validate(&flink_job(
            "taskmanager.numberOfTaskSlots: '0', execution.checkpointing.interval: 'often', metrics.x: 'y'",
        ))
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("taskmanager.numberOfTaskSlots") && e.contains("at least 1")));
        assert!(errors.iter().any(|e| e.contains("execution.checkpointing.interval") && e.contains("'often'")));
    }
}
