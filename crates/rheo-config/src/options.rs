//! Every option Rheo reads, with Flink's key, type, default and meaning: the one registry
//! that drives parsing, validation, `/jobmanager/config`, `docs/configuration.md` and the
//! operator's ConfigMap.

use std::time::Duration;

use crate::option::{AnyOption, ConfigOption, PortRange, Section};

/// Flink's default ports.
pub const DEFAULT_REST_PORT: u16 = 8081;
pub const DEFAULT_RPC_PORT: u16 = 6123;
pub const DEFAULT_DATA_PORT: u16 = 6121;

// Pipeline

pub const PARALLELISM_DEFAULT: ConfigOption<usize> = ConfigOption::new(
    "parallelism.default",
    Section::Pipeline,
    1,
    "Parallelism of operators that do not set their own (`rheo run -p` overrides it).",
)
.at_least(1.0);

pub const MAX_PARALLELISM: ConfigOption<usize> = ConfigOption::new(
    "pipeline.max-parallelism",
    Section::Pipeline,
    128,
    "Number of key groups: the upper limit of rescaling for keyed state. Changing it makes existing checkpoints unusable.",
)
.at_least(1.0)
.at_most(32768.0);

pub const OPERATOR_CHAINING: ConfigOption<bool> = ConfigOption::new(
    "pipeline.operator-chaining.enabled",
    Section::Pipeline,
    true,
    "Whether operators with the same parallelism and a forward connection run chained in one task.",
);

pub const AUTO_WATERMARK_INTERVAL: ConfigOption<Duration> = ConfigOption::new(
    "pipeline.auto-watermark-interval",
    Section::Pipeline,
    Duration::from_millis(200),
    "How often periodic watermark generators emit a watermark.",
);

// Checkpoints and savepoints

pub const CHECKPOINT_INTERVAL: ConfigOption<Option<Duration>> = ConfigOption::new(
    "execution.checkpointing.interval",
    Section::Checkpointing,
    None,
    "Time between checkpoints; unset or 0 disables checkpointing. `rheo run` uses 10 s unless set.",
);

pub const CHECKPOINT_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
    "execution.checkpointing.timeout",
    Section::Checkpointing,
    Duration::from_secs(600),
    "A checkpoint not complete after this long is discarded.",
);

pub const CHECKPOINTS_DIR: ConfigOption<String> = ConfigOption::new(
    "state.checkpoints.dir",
    Section::Checkpointing,
    "file://./rheo-data",
    "Where checkpoints are written, one directory per job: `file:///path`, a plain path or `s3://bucket/prefix`.",
);

pub const SAVEPOINTS_DIR: ConfigOption<String> = ConfigOption::new(
    "state.savepoints.dir",
    Section::Checkpointing,
    "file://./rheo-data/savepoints",
    "The default target directory of savepoints.",
);

pub const CHECKPOINTS_RETAINED: ConfigOption<usize> = ConfigOption::new(
    "state.checkpoints.num-retained",
    Section::Checkpointing,
    1,
    "How many completed checkpoints are kept.",
)
.at_least(1.0);

pub const INCREMENTAL_CHECKPOINTS: ConfigOption<bool> = ConfigOption::new(
    "state.backend.incremental",
    Section::Checkpointing,
    true,
    "Whether checkpoints upload only the keyed state changed since the last completed checkpoint, sharing unchanged files with earlier checkpoints (Flink's default is false; Rheo's is true). Savepoints are always full.",
);

pub const STATE_BACKEND_TYPE: ConfigOption<String> = ConfigOption::new(
    "state.backend.type",
    Section::Checkpointing,
    "hashmap",
    "Where keyed state lives: `hashmap` keeps all of it in memory; `disk` keeps at most `state.backend.disk.cached-keys` keys per operator subtask in memory and the rest in an embedded database (redb) on local disk, so state can outgrow memory. Checkpoints, restore and rescaling are the same for both. Keys with timers stay in memory.",
)
.one_of(&["hashmap", "disk"]);

pub const STATE_BACKEND_DISK_DIR: ConfigOption<Option<String>> = ConfigOption::new(
    "state.backend.disk.localdir",
    Section::Checkpointing,
    None,
    "The local directory of the `disk` state backend's databases (one per operator subtask, deleted when it ends; not durable: checkpoints are). Default: the system's temporary directory.",
);

pub const STATE_BACKEND_DISK_CACHED_KEYS: ConfigOption<usize> = ConfigOption::new(
    "state.backend.disk.cached-keys",
    Section::Checkpointing,
    100_000,
    "With the `disk` state backend, how many keys an operator subtask keeps in memory; beyond it the least recently used keys without timers move to disk.",
)
.at_least(1.0);

pub const SAVEPOINT_PATH: ConfigOption<Option<String>> = ConfigOption::new(
    "execution.savepoint.path",
    Section::Checkpointing,
    None,
    "A savepoint or retained checkpoint to start the job from.",
);

pub const SAVEPOINT_IGNORE_UNCLAIMED_STATE: ConfigOption<bool> = ConfigOption::new(
    "execution.savepoint.ignore-unclaimed-state",
    Section::Checkpointing,
    false,
    "Start from `execution.savepoint.path` even if some of its state belongs to no operator of the job.",
);

pub const FRESH_START: ConfigOption<bool> = ConfigOption::new(
    "execution.fresh-start",
    Section::Checkpointing,
    false,
    "Start the job from nothing even though it has checkpoints: they are deleted and its exactly-once sinks roll back what they committed (`rheo run --fresh-start`). Without it, a job whose checkpoints exist but cannot be restored fails.",
);

// Restart strategy

pub const RESTART_STRATEGY: ConfigOption<Option<String>> = ConfigOption::new(
    "restart-strategy.type",
    Section::RestartStrategy,
    None,
    "How a failed job restarts: `none`, `fixed-delay` or `exponential-delay`. Unset: `exponential-delay` with checkpointing, `none` without.",
)
.one_of(&["none", "off", "disable", "fixed-delay", "fixeddelay", "exponential-delay", "exponentialdelay"]);

pub const FIXED_DELAY_ATTEMPTS: ConfigOption<u32> = ConfigOption::new(
    "restart-strategy.fixed-delay.attempts",
    Section::RestartStrategy,
    1,
    "`fixed-delay`: restarts before the job fails for good.",
);

pub const FIXED_DELAY_DELAY: ConfigOption<Duration> = ConfigOption::new(
    "restart-strategy.fixed-delay.delay",
    Section::RestartStrategy,
    Duration::from_secs(1),
    "`fixed-delay`: time between a failure and the restart.",
);

pub const EXPONENTIAL_INITIAL_BACKOFF: ConfigOption<Duration> = ConfigOption::new(
    "restart-strategy.exponential-delay.initial-backoff",
    Section::RestartStrategy,
    Duration::from_secs(1),
    "`exponential-delay`: the delay before the first restart.",
);

pub const EXPONENTIAL_MAX_BACKOFF: ConfigOption<Duration> = ConfigOption::new(
    "restart-strategy.exponential-delay.max-backoff",
    Section::RestartStrategy,
    Duration::from_secs(60),
    "`exponential-delay`: the longest delay between restarts.",
);

pub const EXPONENTIAL_BACKOFF_MULTIPLIER: ConfigOption<f64> = ConfigOption::new(
    "restart-strategy.exponential-delay.backoff-multiplier",
    Section::RestartStrategy,
    1.5,
    "`exponential-delay`: the factor the delay grows by after each failure.",
)
.at_least(1.0);

pub const EXPONENTIAL_ATTEMPTS_BEFORE_RESET: ConfigOption<u32> = ConfigOption::new(
    "restart-strategy.exponential-delay.attempts-before-reset-backoff",
    Section::RestartStrategy,
    u32::MAX,
    "`exponential-delay`: restarts allowed before the job fails for good (the count resets with the backoff).",
);

pub const EXPONENTIAL_RESET_BACKOFF_THRESHOLD: ConfigOption<Duration> = ConfigOption::new(
    "restart-strategy.exponential-delay.reset-backoff-threshold",
    Section::RestartStrategy,
    Duration::from_secs(3600),
    "`exponential-delay`: an attempt that ran this long resets the backoff to its initial value.",
);

// JobManager

pub const JOBMANAGER_ADDRESS: ConfigOption<String> = ConfigOption::new(
    "jobmanager.rpc.address",
    Section::JobManager,
    "localhost",
    "Host name or address of the JobManager, as TaskManagers reach it.",
);

pub const JOBMANAGER_PORT: ConfigOption<u16> =
    ConfigOption::new("jobmanager.rpc.port", Section::JobManager, DEFAULT_RPC_PORT, "The JobManager's RPC port.");

pub const JOBMANAGER_BIND_ADDRESS: ConfigOption<String> = ConfigOption::new(
    "jobmanager.rpc.bind-address",
    Section::JobManager,
    "0.0.0.0",
    "The local address the JobManager's RPC server listens on.",
);

pub const HEARTBEAT_INTERVAL: ConfigOption<Duration> = ConfigOption::new(
    "heartbeat.interval",
    Section::JobManager,
    Duration::from_secs(10),
    "How often TaskManagers send heartbeats to the JobManager.",
);

pub const HEARTBEAT_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
    "heartbeat.timeout",
    Section::JobManager,
    Duration::from_secs(50),
    "A TaskManager silent for this long is considered lost.",
);

pub const SLOT_REQUEST_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
    "slot.request.timeout",
    Section::Scheduler,
    Duration::from_secs(300),
    "How long a job waits for enough task slots before it fails.",
);

pub const SCHEDULER_MODE: ConfigOption<Option<String>> = ConfigOption::new(
    "scheduler-mode",
    Section::Scheduler,
    None,
    "`reactive`: run every job at the parallelism the available slots allow, rescaling as TaskManagers come and go.",
)
.one_of(&["reactive"]);

// TaskManager

pub const TASK_SLOTS: ConfigOption<usize> = ConfigOption::new(
    "taskmanager.numberOfTaskSlots",
    Section::TaskManager,
    1,
    "Task slots a TaskManager offers: how many parallel pipelines it runs.",
)
.at_least(1.0);

pub const TASKMANAGER_HOST: ConfigOption<Option<String>> = ConfigOption::new(
    "taskmanager.host",
    Section::TaskManager,
    None,
    "The address other TaskManagers reach this one at; unset: the address it reaches the JobManager from.",
);

pub const DATA_PORT: ConfigOption<u16> = ConfigOption::new(
    "taskmanager.data.port",
    Section::TaskManager,
    DEFAULT_DATA_PORT,
    "The TaskManager's port for records exchanged between TaskManagers (0: any free port).",
);

// REST

pub const REST_PORT: ConfigOption<PortRange> = ConfigOption::new(
    "rest.port",
    Section::Rest,
    PortRange::single(DEFAULT_REST_PORT),
    "The REST and web dashboard port, or a range of ports to try (`50100-50200`).",
);

pub const REST_ADDRESS: ConfigOption<Option<String>> = ConfigOption::new(
    "rest.address",
    Section::Rest,
    None,
    "The address clients reach the REST endpoint at; also the default bind address.",
);

pub const REST_BIND_ADDRESS: ConfigOption<Option<String>> = ConfigOption::new(
    "rest.bind-address",
    Section::Rest,
    None,
    "The local address the REST server listens on; unset: `rest.address`, else all interfaces for a cluster and 127.0.0.1 for `rheo run`.",
);

// File systems

pub const OVERWRITE_FILES: ConfigOption<bool> = ConfigOption::new(
    "fs.overwrite-files",
    Section::FileSystems,
    false,
    "Let an exactly-once file sink take over an output location another job owns, deleting that job's part files; without it such a sink fails at start.",
);

// S3

pub const S3_ENDPOINT: ConfigOption<Option<String>> = ConfigOption::new(
    "s3.endpoint",
    Section::S3,
    None,
    "Endpoint of an S3-compatible store (`http://seaweedfs:8333`); unset: `AWS_ENDPOINT`, else AWS.",
);

pub const S3_ACCESS_KEY: ConfigOption<Option<String>> = ConfigOption::new(
    "s3.access-key",
    Section::S3,
    None,
    "S3 access key id; unset: `AWS_ACCESS_KEY_ID` and the rest of the AWS credential chain.",
)
.secret();

pub const S3_SECRET_KEY: ConfigOption<Option<String>> =
    ConfigOption::new("s3.secret-key", Section::S3, None, "S3 secret access key; unset: `AWS_SECRET_ACCESS_KEY`.")
        .secret();

pub const S3_PATH_STYLE_ACCESS: ConfigOption<Option<bool>> = ConfigOption::new(
    "s3.path-style-access",
    Section::S3,
    None,
    "Address buckets as `endpoint/bucket` rather than `bucket.endpoint`. Unset: path style unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` is set.",
);

pub const S3_RETRY_MAX_RETRIES: ConfigOption<usize> = ConfigOption::new(
    "s3.retry.max-retries",
    Section::S3,
    10,
    "Retries of a failed S3 request (connection refused, 5xx, timeout) with exponential backoff before the operation fails: a checkpoint is then declined, a restart goes through the restart strategy.",
);

pub const S3_RETRY_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
    "s3.retry.timeout",
    Section::S3,
    Duration::from_secs(180),
    "How long an S3 request is retried at most, whatever `s3.retry.max-retries` allows.",
);

/// Every option, in the order of the reference.
pub static ALL: &[&dyn AnyOption] = &[
    &PARALLELISM_DEFAULT,
    &MAX_PARALLELISM,
    &OPERATOR_CHAINING,
    &AUTO_WATERMARK_INTERVAL,
    &CHECKPOINT_INTERVAL,
    &CHECKPOINT_TIMEOUT,
    &CHECKPOINTS_DIR,
    &SAVEPOINTS_DIR,
    &CHECKPOINTS_RETAINED,
    &INCREMENTAL_CHECKPOINTS,
    &STATE_BACKEND_TYPE,
    &STATE_BACKEND_DISK_DIR,
    &STATE_BACKEND_DISK_CACHED_KEYS,
    &SAVEPOINT_PATH,
    &SAVEPOINT_IGNORE_UNCLAIMED_STATE,
    &FRESH_START,
    &RESTART_STRATEGY,
    &FIXED_DELAY_ATTEMPTS,
    &FIXED_DELAY_DELAY,
    &EXPONENTIAL_INITIAL_BACKOFF,
    &EXPONENTIAL_MAX_BACKOFF,
    &EXPONENTIAL_BACKOFF_MULTIPLIER,
    &EXPONENTIAL_ATTEMPTS_BEFORE_RESET,
    &EXPONENTIAL_RESET_BACKOFF_THRESHOLD,
    &JOBMANAGER_ADDRESS,
    &JOBMANAGER_PORT,
    &JOBMANAGER_BIND_ADDRESS,
    &HEARTBEAT_INTERVAL,
    &HEARTBEAT_TIMEOUT,
    &SLOT_REQUEST_TIMEOUT,
    &SCHEDULER_MODE,
    &TASK_SLOTS,
    &TASKMANAGER_HOST,
    &DATA_PORT,
    &REST_PORT,
    &REST_ADDRESS,
    &REST_BIND_ADDRESS,
    &OVERWRITE_FILES,
    &S3_ENDPOINT,
    &S3_ACCESS_KEY,
    &S3_SECRET_KEY,
    &S3_PATH_STYLE_ACCESS,
    &S3_RETRY_MAX_RETRIES,
    &S3_RETRY_TIMEOUT,
];

/// The option with this key.
pub fn find(key: &str) -> Option<&'static dyn AnyOption> {
    ALL.iter().copied().find(|o| o.key() == key)
}

/// The known key closest to `key` by edit distance, when it is close enough to be a misspelling.
pub fn closest(key: &str) -> Option<&'static str> {
    let (best, distance) = ALL
        .iter()
        .map(|o| (o.key(), strsim::damerau_levenshtein(&key.to_ascii_lowercase(), &o.key().to_ascii_lowercase())))
        .min_by_key(|&(_, d)| d)?;
    // A third of the key may differ: `paralelism.default`, `rest.prot`, `taskmanager.numberoftaskslots`.
    (distance <= key.len().max(best.len()) / 3).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_defaults_valid() {
        let mut keys: Vec<&str> = ALL.iter().map(|o| o.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), ALL.len(), "a key is registered twice");
        for option in ALL {
            if let Some(default) = option.default_text() {
                option.check(&default).unwrap_or_else(|e| panic!("default of {}: {e}", option.key()));
            }
            assert!(!option.description().is_empty(), "{} has no description", option.key());
        }
    }

    #[test]
    fn misspelt_keys_get_the_closest_known_key() {
        assert_eq!(closest("paralelism.default"), Some("parallelism.default"));
        assert_eq!(closest("taskmanager.numberoftaskslots"), Some("taskmanager.numberOfTaskSlots"));
        assert_eq!(closest("rest.prot"), Some("rest.port"));
        assert_eq!(closest("state.checkpoint.dir"), Some("state.checkpoints.dir"));
        assert_eq!(closest("metrics.reporter.prom.factory.class"), None);
    }
}
