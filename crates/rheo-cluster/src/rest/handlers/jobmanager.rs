//! `/jobmanager/...`: the JobManager's configuration, environment, metrics and logs.

use super::*;

/// `GET /jobmanager/config`: the configuration as `{key, value}` entries, secrets masked.
pub(super) async fn jobmanager_config(Extract(state): Extract<Shared>) -> Answer<Vec<api::ConfigurationEntry>> {
    ok(state
        .options
        .config
        .masked_entries()
        .map(|(key, value)| api::ConfigurationEntry { key: key.to_string(), value: value.to_string() })
        .collect())
}

/// `GET /jobmanager/environment`: Rheo runs no JVM, so `jvm` describes the process: the
/// version, the machine's architecture and the command line; `classpath` is the binary.
pub(super) async fn environment() -> Answer<api::EnvironmentInfo> {
    ok(api::EnvironmentInfo {
        jvm: api::JvmInfo {
            version: format!("Rheo {} (Rust, no JVM)", env!("CARGO_PKG_VERSION")),
            arch: std::env::consts::ARCH.to_string(),
            options: std::env::args().skip(1).collect(),
        },
        classpath: std::env::current_exe().map(|p| vec![p.display().to_string()]).unwrap_or_default(),
    })
}

/// The JobManager metrics Rheo serves, by Flink's names.
const JOBMANAGER_METRICS: [&str; 4] =
    ["numRegisteredTaskManagers", "numRunningJobs", "taskSlotsAvailable", "taskSlotsTotal"];

/// `GET /jobmanager/metrics[?get=a,b]`.
pub(super) async fn jobmanager_metrics(
    Extract(state): Extract<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<Vec<api::MetricValue>> {
    let taskmanagers = state.view.taskmanagers();
    let running = state.view.jobs().iter().filter(|j| !j.status().state.is_terminal()).count();
    ok(super::jobs::metric_values(&JOBMANAGER_METRICS, query.get("get"), |name| {
        Some(match name {
            "numRegisteredTaskManagers" => taskmanagers.len().to_string(),
            "numRunningJobs" => running.to_string(),
            "taskSlotsAvailable" => taskmanagers.iter().map(|t| t.free_slots).sum::<usize>().to_string(),
            "taskSlotsTotal" => taskmanagers.iter().map(|t| t.slots).sum::<usize>().to_string(),
            _ => return None,
        })
    }))
}

/// `GET /jobmanager/logs`: Rheo logs to standard error (a log collector's job, as on
/// Kubernetes), so there are no log files to list.
pub(super) async fn logs() -> Answer<api::LogListInfo> {
    ok(api::LogListInfo::default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_recognised_by_their_keys() {
        for key in [
            "s3.access-key",
            "s3.secret-key",
            "s3.access.key",
            "fs.azure.account.key.acc.blob.core.windows.net",
            "ssl.keystore-password",
            "metrics.reporter.dd.apikey",
            "security.kerberos.token",
            "gcs.credentials",
            "my.secret",
            "S3.ACCESS-KEY",
        ] {
            assert!(rheo_config::is_secret(key), "{key}");
        }
        for key in ["rest.port", "state.checkpoints.dir", "pipeline.max-parallelism", "execution.keyed-state"] {
            assert!(!rheo_config::is_secret(key), "{key}");
        }
    }
}
