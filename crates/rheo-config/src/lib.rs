//! Configuration with Flink's keys. Sources, in rising precedence: the YAML file
//! `$RHEO_CONF_DIR/rheo.yaml` (flat `a.b: v` keys or nested maps, as Flink's `config.yaml`),
//! `RHEO_*` environment variables, and `-D key=value` flags.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Keys Rheo reads, with their defaults (Flink's defaults where Flink has the key).
pub mod keys {
    pub const PARALLELISM_DEFAULT: &str = "parallelism.default";
    pub const MAX_PARALLELISM: &str = "pipeline.max-parallelism";
    pub const OPERATOR_CHAINING: &str = "pipeline.operator-chaining.enabled";
    pub const AUTO_WATERMARK_INTERVAL: &str = "pipeline.auto-watermark-interval";
    pub const TASK_SLOTS: &str = "taskmanager.numberOfTaskSlots";
    pub const CHECKPOINT_INTERVAL: &str = "execution.checkpointing.interval";
    pub const CHECKPOINTS_DIR: &str = "state.checkpoints.dir";
    pub const SAVEPOINTS_DIR: &str = "state.savepoints.dir";
    pub const CHECKPOINTS_RETAINED: &str = "state.checkpoints.num-retained";
    pub const RESTART_STRATEGY: &str = "restart-strategy.type";
    pub const JOBMANAGER_ADDRESS: &str = "jobmanager.rpc.address";
    pub const JOBMANAGER_PORT: &str = "jobmanager.rpc.port";
    pub const REST_PORT: &str = "rest.port";
    pub const TASKMANAGER_HOST: &str = "taskmanager.host";
    pub const DATA_PORT: &str = "taskmanager.data.port";
    pub const HEARTBEAT_INTERVAL: &str = "heartbeat.interval";
    pub const HEARTBEAT_TIMEOUT: &str = "heartbeat.timeout";
    pub const SCHEDULER_MODE: &str = "scheduler-mode";
    pub const SLOT_REQUEST_TIMEOUT: &str = "slot.request.timeout";

    /// Every key Rheo knows, used to map `RHEO_*` variables back to keys.
    pub const ALL: &[&str] = &[
        PARALLELISM_DEFAULT,
        MAX_PARALLELISM,
        OPERATOR_CHAINING,
        AUTO_WATERMARK_INTERVAL,
        TASK_SLOTS,
        CHECKPOINT_INTERVAL,
        CHECKPOINTS_DIR,
        SAVEPOINTS_DIR,
        CHECKPOINTS_RETAINED,
        RESTART_STRATEGY,
        JOBMANAGER_ADDRESS,
        JOBMANAGER_PORT,
        REST_PORT,
        TASKMANAGER_HOST,
        DATA_PORT,
        HEARTBEAT_INTERVAL,
        HEARTBEAT_TIMEOUT,
        SCHEDULER_MODE,
        SLOT_REQUEST_TIMEOUT,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {message}")]
    File { path: String, message: String },
    #[error("-D {0}: expected key=value")]
    Flag(String),
    #[error("configuration key '{key}': '{value}' is not {expected}")]
    Invalid { key: String, value: String, expected: &'static str },
}

/// A flat map of Flink configuration keys to string values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Configuration {
    values: BTreeMap<String, String>,
}

/// The environment variable prefix for configuration keys.
const ENV_PREFIX: &str = "RHEO_";
/// Variables with the prefix that are not configuration keys.
const ENV_NOT_KEYS: &[&str] = &["RHEO_CONF_DIR", "RHEO_LOG", "RHEO_CACHE"];

impl Configuration {
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration of a process: file, then environment, then `-D` flags.
    pub fn load(conf_dir: Option<&Path>, dynamic: &[String]) -> Result<Self, ConfigError> {
        let mut config = Self::new();
        if let Some(dir) = conf_dir {
            let path = dir.join("rheo.yaml");
            if path.exists() {
                config.merge_yaml_file(&path)?;
            }
        }
        config.merge_env(std::env::vars());
        for flag in dynamic {
            let (key, value) = flag.split_once('=').ok_or_else(|| ConfigError::Flag(flag.clone()))?;
            config.set(key.trim(), value.trim());
        }
        Ok(config)
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.values.insert(key.into(), value.into());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A value parsed with `FromStr`, or `default` when the key is unset.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T, expected: &'static str) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => {
                v.trim().parse().map_err(|_| ConfigError::Invalid { key: key.into(), value: v.into(), expected })
            }
        }
    }

    /// A duration in Flink's notation: `500 ms`, `10s`, `1 min`, `2h`, or plain milliseconds.
    pub fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.get(key)
            .map(|v| {
                parse_duration(v).ok_or_else(|| ConfigError::Invalid {
                    key: key.into(),
                    value: v.into(),
                    expected: "a duration such as '500 ms', '10 s' or '1 min'",
                })
            })
            .transpose()
    }

    pub fn default_parallelism(&self) -> Result<usize, ConfigError> {
        self.parse_or(keys::PARALLELISM_DEFAULT, 1, "a positive integer")
    }

    pub fn max_parallelism(&self) -> Result<usize, ConfigError> {
        self.parse_or(keys::MAX_PARALLELISM, 128, "a positive integer")
    }

    fn merge_yaml_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let file_error = |message: String| ConfigError::File { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        match doc {
            serde_yaml::Value::Null => Ok(()),
            serde_yaml::Value::Mapping(map) => flatten_into(&mut self.values, "", &map).map_err(file_error),
            _ => Err(file_error("expected a mapping of configuration keys".into())),
        }
    }

    fn merge_env(&mut self, vars: impl Iterator<Item = (String, String)>) {
        for (name, value) in vars {
            if !name.starts_with(ENV_PREFIX) || ENV_NOT_KEYS.contains(&name.as_str()) {
                continue;
            }
            self.set(env_name_to_key(&name), value);
        }
    }
}

/// `RHEO_PARALLELISM_DEFAULT` → `parallelism.default`. Known keys are matched exactly (so
/// `RHEO_RESTART_STRATEGY_TYPE` → `restart-strategy.type`); others turn `_` into `.`.
fn env_name_to_key(name: &str) -> String {
    let rest = &name[ENV_PREFIX.len()..];
    let as_env = |key: &str| key.to_uppercase().replace(['.', '-'], "_");
    keys::ALL
        .iter()
        .find(|key| as_env(key) == rest)
        .map(|key| key.to_string())
        .unwrap_or_else(|| rest.to_lowercase().replace('_', "."))
}

fn flatten_into(out: &mut BTreeMap<String, String>, prefix: &str, map: &serde_yaml::Mapping) -> Result<(), String> {
    for (k, v) in map {
        let key = match k {
            serde_yaml::Value::String(s) => s.clone(),
            other => return Err(format!("key {other:?} is not a string")),
        };
        let full = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
        match v {
            serde_yaml::Value::Mapping(inner) => flatten_into(out, &full, inner)?,
            serde_yaml::Value::String(s) => {
                out.insert(full, s.clone());
            }
            serde_yaml::Value::Number(n) => {
                out.insert(full, n.to_string());
            }
            serde_yaml::Value::Bool(b) => {
                out.insert(full, b.to_string());
            }
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Sequence(items) => {
                let parts: Result<Vec<String>, String> = items
                    .iter()
                    .map(|i| match i {
                        serde_yaml::Value::String(s) => Ok(s.clone()),
                        serde_yaml::Value::Number(n) => Ok(n.to_string()),
                        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
                        _ => Err(format!("'{full}': list items must be plain values")),
                    })
                    .collect();
                out.insert(full, parts?.join(";"));
            }
            serde_yaml::Value::Tagged(_) => return Err(format!("'{full}': tagged values are not supported")),
        }
    }
    Ok(())
}

/// Parses Flink's duration notation.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit.trim().to_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => n,
        "s" | "sec" | "secs" | "second" | "seconds" => n * 1000,
        "min" | "m" | "minute" | "minutes" => n * 60_000,
        "h" | "hour" | "hours" => n * 3_600_000,
        "d" | "day" | "days" => n * 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_flink_notation() {
        assert_eq!(parse_duration("500 ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1 min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("ten s"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
    }

    #[test]
    fn env_names_map_to_known_keys() {
        assert_eq!(env_name_to_key("RHEO_PARALLELISM_DEFAULT"), "parallelism.default");
        assert_eq!(env_name_to_key("RHEO_RESTART_STRATEGY_TYPE"), "restart-strategy.type");
        assert_eq!(env_name_to_key("RHEO_STATE_CHECKPOINTS_NUM_RETAINED"), "state.checkpoints.num-retained");
        assert_eq!(env_name_to_key("RHEO_SOME_NEW_KEY"), "some.new.key");
    }

    #[test]
    fn precedence_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rheo.yaml"),
            "parallelism.default: 2\nstate:\n  checkpoints:\n    dir: file:///tmp/x\n",
        )
        .unwrap();
        let mut config = Configuration::new();
        config.merge_yaml_file(&dir.path().join("rheo.yaml")).unwrap();
        assert_eq!(config.get("state.checkpoints.dir"), Some("file:///tmp/x"));
        config.merge_env([("RHEO_PARALLELISM_DEFAULT".to_string(), "3".to_string())].into_iter());
        assert_eq!(config.default_parallelism().unwrap(), 3);
        config.set("parallelism.default", "x");
        let err = config.default_parallelism().unwrap_err().to_string();
        assert!(err.contains("parallelism.default") && err.contains("'x'"), "{err}");
    }

    #[test]
    fn bad_yaml_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rheo.yaml");
        std::fs::write(&path, "parallelism.default: [1\n").unwrap();
        let err = Configuration::new().merge_yaml_file(&path).unwrap_err().to_string();
        assert!(err.contains("rheo.yaml"), "{err}");
    }
}
